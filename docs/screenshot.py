"""Screenshot a report page with headless Chromium, as a person would first see it.

    python docs/screenshot.py [RUN_FOLDER] [--out docs/report.png] [--width 1280 --height 1800]

Renders ``bench report RUN_FOLDER`` (default: the committed CPU smoke reference) into a
temporary folder and photographs its index.html. Needs Debian's chromium (``apt-get install
chromium``); not part of the default test run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Without these, Chromium keeps dialling Google's hosts, which this network refuses.
QUIET = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "results/reference/cpu-smoke"))
    parser.add_argument("--out", default=str(ROOT / "docs/report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        subprocess.run(
            [sys.executable, "-m", "bench.cli", "report", args.run, "--out", str(report)],
            check=True,
        )
        subprocess.run(
            [
                browser,
                *QUIET,
                f"--user-data-dir={Path(tmp) / 'profile'}",
                f"--window-size={args.width},{args.height}",
                f"--screenshot={Path(args.out).resolve()}",
                (report / "index.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
