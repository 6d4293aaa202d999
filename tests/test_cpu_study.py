"""The committed CPU reference study (results/reference/cpu/, issue #21): results/README.md's
headline tables are the committed records' (a record added without rebuilding them fails
here), and study.sh runs only commands the CLI accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
CPU = ROOT / "results" / "reference" / "cpu"


def test_the_results_readme_shows_the_committed_records() -> None:
    proc = subprocess.run(
        [sys.executable, str(CPU / "headline.py"), "--check"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, (
        "results/README.md is out of date: run python results/reference/cpu/headline.py "
        f"({proc.stderr.strip()})"
    )


def test_the_study_script_names_known_groups_only(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(CPU / "study.sh"), "nosuchgroup"], capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "unknown group 'nosuchgroup'" in proc.stderr


def test_the_results_readme_links_files_that_are_committed() -> None:
    """Its links (the study script, the report, the compute figure) name files in the checkout."""
    import re

    readme = ROOT / "results" / "README.md"
    links = re.findall(r"\]\(([^)#:]+)\)", readme.read_text(encoding="utf-8"))
    assert links, "results/README.md links nothing"
    missing = [link for link in links if not (readme.parent / link).exists()]
    assert not missing, f"results/README.md links missing files: {missing}"
