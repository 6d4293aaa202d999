"""Content hashes that name things (jobs, trained-model caches): the same content gives the same
name on every machine, whatever module computes it."""

from __future__ import annotations

import hashlib
import json


def stable_hash(obj: object, length: int = 12) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), truncated."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
