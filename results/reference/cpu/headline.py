"""The headline tables of results/README.md, rebuilt from the committed CPU study records.

    python results/reference/cpu/headline.py          # rewrite the tables in results/README.md
    python results/reference/cpu/headline.py --check  # exit 1 when they are out of date

Writes between the ``<!-- headline:... -->`` markers of results/README.md: per dataset, image
AUROC, pixel AUROC and F1 (calibrated threshold) of every method's `cpu`-preset row, mean ±
std over seeds, with the report's significance markers and row marks (bench.reports: the same
tables as `bench report results/reference/cpu/study`); the same image AUROC and F1 with the
records' bootstrap intervals; F1 at each method's own decision; every RADAR variant of the
study a row. The prose around the markers is written by hand from these numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.reports import markdown
from bench.reports.load import load_run
from bench.reports.tables import main_table, variants_table

HERE = Path(__file__).parent
STUDY = HERE / "study"
README = HERE.parents[1] / "README.md"
HEADLINE = (("auroc", "AUROC"), ("pixel_auroc", "P-AUROC"), ("f1", "F1"))
INTERVALS = (("auroc", "AUROC"), ("f1", "F1"))
OWN_RULE = (("own_f1", "F1 (own)"),)
# name -> (caption, metrics, interval, significance markers)
TABLES = {
    "headline": (
        "Image AUROC (threshold-free), pixel AUROC and image F1 at a threshold calibrated on "
        "held-out normal training images (no test label)",
        HEADLINE,
        "std",
        True,
    ),
    "intervals": (
        "The headline's image AUROC and F1 with the uncertainty of a finite test set: the "
        "records' 95% bootstrap interval over the test images",
        INTERVALS,
        "bootstrap",
        False,
    ),
    "own rule": (
        "Image F1 at each method's own decision (IsolationForest's contamination, a control "
        "limit, anomalib's threshold on the training normals): the rule behind the RADAR "
        "paper's F1 (0.85 on its 3D prints, 0.67 on MVTec tile)",
        OWN_RULE,
        "std",
        False,
    ),
}

RADAR_CAPTION = (
    "RADAR's four study variants (the headline's radar row is the paper's: IsolationForest "
    "scorer; here whole-image or patch inference at stride 6, and the OSD-IRF-style Gaussian "
    "scorer), same U-Net per seed, same metrics as the headline"
)


def tables() -> str:
    data = load_run(STUDY)
    parts = []
    for name, (caption, metrics, interval, significance) in TABLES.items():
        table = main_table(
            data, metrics=metrics, significance=significance, interval=interval, caption=caption
        )
        if table is not None:
            table.name = name
            parts.append(markdown.to_markdown(table))
    radar = variants_table(data, "radar", HEADLINE, RADAR_CAPTION)
    if radar is not None:
        radar.name = "radar variants"
        parts.append(markdown.to_markdown(radar))
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- headline:start -->\n)(?:.*?\n)?(<!-- headline:end -->)", re.S)
    if not pattern.search(text):
        print(f"{README}: no <!-- headline:start/end --> markers", file=sys.stderr)
        return 2
    new = pattern.sub(lambda m: m.group(1) + tables() + "\n" + m.group(2), text)
    if args.check:
        return int(new != text)
    README.write_text(new, encoding="utf-8")
    print(f"{README}: headline tables rewritten from {STUDY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
