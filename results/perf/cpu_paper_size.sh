#!/bin/bash
# Paper-size inference cost on the CPU, every method in ONE `bench speed` process (issue #22):
# speed does not depend on how long a network was trained, and ratios between methods hold
# across devices far better than times, so this measures the ratios before any GPU does.
#
#   bash results/perf/cpu_paper_size.sh             # ~30 min on one free core
#   SMOKE=1 bash results/perf/cpu_paper_size.sh     # the same command at the quick preset
#                                                   # (seconds; tests/test_speed.py runs it)
#   python results/perf/paper_ratios.py             # the table of results/perf/README.md
#
# Every network at its paper size and resolution (--preset paper), trained for a handful of
# steps (flagged by the records' params: train_steps, epochs), on a tiny MVTec-layout set cut
# from ../shared/data/mtd (3 normal training images, 2 normal + 2 defective test images): the
# images only feed the timing, the quality columns mean nothing here. Calls: no warm-up, one
# timed call at batch 1 (RADAR patch mode is minutes per image on one core), no calibration
# hold-out. The 250-step DDPM reconstruction runs 2 of its steps and is extrapolated per step
# (paper_ratios.py marks it so). RADAR whole image is the ladder's `full` rung on the same U-Net.
set -eu
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/data/mtd/magnetic_tile}
if [ "${SMOKE:-0}" = 1 ]; then OUT=${OUT:-$(mktemp -d)/cpu-paper-size}; fi
OUT=${OUT:-results/perf/cpu-paper-size}
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
tile=$DATA/magnetic_tile
mkdir -p "$tile/train/good" "$tile/test/good" "$tile/test/crack" "$tile/ground_truth/crack"
for i in 000 001 002; do ln -s "$(realpath "$SHARED/train/good/$i.jpg")" "$tile/train/good/"; done
for i in 000 001; do
  ln -s "$(realpath "$SHARED/test/good/$i.jpg")" "$tile/test/good/"
  ln -s "$(realpath "$SHARED/test/crack/$i.jpg")" "$tile/test/crack/"
  ln -s "$(realpath "$SHARED/ground_truth/crack/${i}_mask.png")" "$tile/ground_truth/crack/"
done

PRESET=paper
TRAIN=(--set radar.train_steps=2 --set radar.batch_size=64 --set radar.scorer_images=2
       --set diffusionad.epochs=1 --set diffusionad.seg_warmup_epochs=0
       --set ddpm_recon.epochs=1 --set ddpm_recon.steps=2)
if [ "${SMOKE:-0}" = 1 ]; then PRESET=quick; fi
python -m bench.cli speed \
  --methods radar,diffusionad,ddpm_recon,patchcore,padim \
  --variants ladder:full \
  --datasets mvtec:magnetic_tile --data-root "$DATA" \
  --preset "$PRESET" --device cpu --threads "${THREADS:-1}" \
  --calibration-fraction 0 --eval-images 2 --warmup 0 --repeats 1 --batches 1 \
  "${TRAIN[@]}" --set patchcore.weights=random --set padim.weights=random \
  --results-dir "$(dirname "$OUT")" --run-id "$(basename "$OUT")"
