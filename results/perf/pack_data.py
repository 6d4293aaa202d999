"""Pack the real datasets small enough to travel to the GPU machine (results/perf/gpu_run.sh).

The device tool sends the checkout and at most 64 MiB with it; ``../shared/data`` stays behind.
This writes resized copies of MTD (magnetic_tile) and prints3d/fdm into ``.gpu-data/`` (ignored
by git, carried by the device call): every image scaled so that its longer side is at most
``--max-side`` pixels (aspect kept, Lanczos; masks nearest-neighbour, so they stay 0/255),
photos re-encoded as JPEG quality 95, names and folder layout unchanged. The benchmark resizes
again to each method's input size (RADAR 100 px, PatchCore and DiffusionAD 256 px), so 256
loses nothing for them.

    python results/perf/pack_data.py                 # -> .gpu-data/{mtd,fdm}, about 20 MB
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SOURCES = {"mtd": SHARED / "mtd", "fdm": SHARED / "prints3d" / "fdm"}


def shrink(src: Path, dst: Path, max_side: int) -> None:
    with Image.open(src) as img:
        mask = "ground_truth" in src.parts
        scale = max_side / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.NEAREST if mask else Image.Resampling.LANCZOS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.suffix.lower() in (".jpg", ".jpeg"):
            img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(dst, quality=95)
        else:
            img.save(dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu-data"))
    parser.add_argument("--max-side", type=int, default=256)
    args = parser.parse_args()
    for name, root in SOURCES.items():
        if not root.is_dir():
            print(f"error: {root} not found (the shared real data)", file=sys.stderr)
            return 2
        files = [p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        for src in files:
            shrink(src, args.out / name / src.relative_to(root), args.max_side)
        size = sum(p.stat().st_size for p in (args.out / name).rglob("*") if p.is_file())
        print(f"{name}: {len(files)} images -> {args.out / name} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
