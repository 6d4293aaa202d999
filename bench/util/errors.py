"""Errors a user can fix. The CLI prints each as one line and exits with code 2.

Everything else is a bug or a crash and keeps its traceback (``--debug`` shows it for these too).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A problem with the user's input: names the flag or file and says what was expected."""

    exit_code = 2


class ConfigError(BenchError):
    """An unknown name, a bad flag value, a parameter of the wrong type or out of range."""


class DataError(BenchError):
    """A missing folder, an empty split, an unreadable image, a mask that does not fit."""


class DeviceError(BenchError):
    """A device that was asked for but is not there (``--device cuda`` without CUDA)."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """``unknown method 'radr' (did you mean 'radar'?); valid: radar, ...``"""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown {kind} '{name}'{hint}; valid: {', '.join(valid)}")
