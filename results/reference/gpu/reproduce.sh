#!/usr/bin/env bash
# The reference run of issue #10 on ONE GPU, as resumable chunks of one device call each.
# For the device tool's short windows use results/gpu/next.sh (issue #22): it picks the next
# chunk from the committed records. This script stays for a machine with a GPU of its own.
# results/reference/gpu/README.md says what each chunk runs, how long it should take, and why
# its settings are what they are.
#
#   bash results/reference/gpu/reproduce.sh CHUNK [CHUNK ...]
#
# CHUNKs: probe | radar-mtd | radar-fdm | recon-mtd | recon-fdm | others-mtd | others-fdm |
#         ablation | all (every chunk but probe, in that order)
#
# Resuming: every chunk is a `bench run` / `bench ablate` into a fixed run folder, and the store
# skips jobs that already have a record. The run folders (records, scores, maps; not RADAR's
# cached U-Nets, 6.5 MB each, over what a call can carry back) travel between calls as
# .ref-state/runs.tar.gz: restored at the start, packed again at the end (also when the deadline
# stopped a chunk), so the next call with the same chunk goes on where this one stopped. A job
# cut off mid-way is recomputed; a RADAR seed cut off between its four variants trains again, so
# the RADAR chunks run one seed per call: SEEDS=0 bash ... radar-mtd, then SEEDS=1, SEEDS=2.
#
# On the CPU machine, before the first call (both folders are git-ignored):
#   mkdir -p .whl && cp ../shared/gpu-wheels/*.whl .whl/ && python results/perf/pack_data.py
# Each call (device tool; .ref-state once it exists):
#   run(command="bash results/reference/gpu/reproduce.sh radar-mtd",
#       carry=[".whl", ".gpu-data", ".ref-state"], timeout_s=600)
# After each call, on the CPU machine:
#   mkdir -p .ref-state && cp <files_at>/runs.tar.gz .ref-state/
# When all chunks are done:
#   see README.md beside this script: the records into results/reference/h100/, the reports
#
# SMOKE=1 runs every step on the CPU, tiny and on the synthetic set, to check this script.
set -u
OUT=${OUT:-/tmp/ref-out}
BUDGET=${BUDGET:-560}  # seconds for the chunks; the device call allows 600 in all
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

STATE=${STATE:-.ref-state/runs.tar.gz}
RUNS=${RUNS:-/tmp/ref-runs}
mkdir -p "$RUNS"
if [ -f "$STATE" ]; then
    tar xzf "$STATE" -C "$RUNS" && echo "restored $(find "$RUNS" -name '*.json' -path '*/jobs/*' | wc -l) records from $STATE"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

SEEDS=${SEEDS:-0,1,2}
if [ "${SMOKE:-0}" = 1 ]; then
    # The command form of the GPU machine, where the suite is not pip-installed: no `bench`
    # script on PATH (a venv's would hide a call that only works through it).
    PY=$(command -v "${PY:-python}") || { echo "error: PY not found" >&2; exit 2; }
    clean=""
    IFS=: read -ra dirs <<<"$PATH"
    for d in "${dirs[@]}"; do
        [ -x "$d/bench" ] || clean="${clean:+$clean:}$d"
    done
    export PATH=$clean PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    MTD=(--datasets synthetic:brick)
    FDM=(--datasets synthetic:gravel)
    COMMON=(--device cpu --preset quick --threads 1 --timing-repeats 2)
    SEEDS=0
    RADAR=(--set radar.image_size=32 --set radar.patch_size=16 --set radar.block_out_channels=8,16
           --set radar.norm_num_groups=8 --set radar.train_steps=20 --set radar.batch_size=16
           --set radar.infer_stride=8 --set radar.scorer_images=10)
    RECON=(--set diffusionad.epochs=2 --set diffusionad.seg_warmup_epochs=0
           --set diffusionad.image_size=32 --set ddpm_recon.epochs=1 --set ddpm_recon.image_size=32
           --set ddpm_recon.steps=2 --set ddpm_recon.t_start=20)
    ANOMALIB=patchcore,padim
    OTHERS=(--set patchcore.weights=random --set padim.weights=random
            --set patchcore.image_size=64 --set padim.image_size=64)
    ABLATION=(--grid patch_size=8,16 --grid t=1,5 --grid scorer=iforest,irf)
    PROBE=(--methods radar,diffusionad,ddpm_recon)
else
    PY=${PY:-python3}
    if [ -d .whl ]; then  # the lent GPU machine lacks diffusers and anomalib (../shared/gpu-wheels)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
            .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site:$PWD
    fi
    MTD=(--datasets mvtec:magnetic_tile --data-root .gpu-data/mtd)
    FDM=(--datasets prints3d --data-root .gpu-data/fdm)
    COMMON=(--device cuda --preset paper --timing-repeats 20)
    # RADAR: the paper's U-Net, patches and inference (100 px, 28 px patches, stride 1, t = 1);
    # training sees the paper preset's 5.1 M patches (10,000 x 512) as 2,500 steps of 2,048 in
    # bf16 (about 5 minutes instead of about 20 at batch 512), lr scaled by sqrt(4).
    RADAR=(--set radar.train_steps=${RADAR_STEPS:-2500} --set radar.batch_size=2048
           --set radar.lr=2e-4 --set radar.precision=bf16 --set radar.infer_batch=0)
    # The reconstruction baselines at their paper architecture (256 px, U-Net 128-256-256-512),
    # trained for what fits one call (paper: 3,000 epochs); ddpm_recon samples with 50 DDIM
    # steps from t_start = 250 instead of 250 DDPM steps (5x fewer U-Net passes).
    RECON=(--set diffusionad.epochs=${DAD_EPOCHS:-20} --set ddpm_recon.epochs=${DDPM_EPOCHS:-20}
           --set ddpm_recon.sampler=ddim --set ddpm_recon.steps=50)
    # EfficientAD and STFPM are left out: anomalib builds both with a pretrained teacher and no
    # random-init switch, and no weights can be downloaded on the GPU machine (with the files in
    # the caches, `bench prepare --methods efficientad,stfpm`, add them back).
    ANOMALIB=patchcore,padim,draem,fastflow
    # No pretrained backbone can be downloaded there: random-init, flagged weights:random in
    # every table. Epochs capped so that a job fits one call (anomalib's configs: DRAEM 700,
    # FastFlow 500).
    OTHERS=(--set patchcore.weights=random --set padim.weights=random
            --set fastflow.weights=random --set draem.max_epochs=${DRAEM_EPOCHS:-30}
            --set fastflow.max_epochs=30)
    # One parameter at a time around the paper configuration, on magnetic_tile, seed 0.
    ABLATION=(--grid patch_size=14,28,42 --grid t=0,1,5,10,50 --grid scorer=iforest,gaussian,irf)
    PROBE=(--methods radar,diffusionad,ddpm_recon,draem --set draem.max_epochs=1)
fi

# The suite as a module: `timeout` runs programs, not shell functions, and the GPU machine has
# no `bench` script (the project is not installed there).
BENCH=("$PY" -m bench.cli)
RESULTS=(--results-dir "$RUNS")

step() {  # step NAME CMD...: run CMD with the time left, stopping it cleanly at the deadline
    local name=$1 limit
    shift
    limit=$(left)
    if [ "$limit" -lt 45 ]; then
        echo "== $name: not started, ${limit}s left (run the same chunk again)"
        return
    fi
    echo "== $name: up to ${limit}s"
    timeout -s INT -k 20 "$limit" "$@"
    echo "== $name: exit $?, $(left)s left"
}

chunk() {
    case $1 in
    probe)  # one short job per slow method, to extrapolate the others (README: "Plan")
        step probe "${BENCH[@]}" run "${PROBE[@]}" "${MTD[@]}" "${COMMON[@]}" "${RESULTS[@]}" \
            --run-id ref-probe --seeds 0 "${RADAR[@]}" "${RECON[@]}" --set radar.train_steps=100 \
            --set diffusionad.epochs=1 --set ddpm_recon.epochs=1 ;;
    radar-mtd | radar-fdm)  # RADAR: scorers iforest and irf x patch and whole-image inference
        local data=("${MTD[@]}")
        [ "$1" = radar-fdm ] && data=("${FDM[@]}")
        step "$1" "${BENCH[@]}" ablate --method radar "${data[@]}" "${COMMON[@]}" "${RESULTS[@]}" \
            --run-id "ref-$1" --seeds "$SEEDS" "${RADAR[@]}" \
            --grid scorer=iforest,irf --grid inference=patches,full ;;
    recon-mtd | recon-fdm)
        local data=("${MTD[@]}")
        [ "$1" = recon-fdm ] && data=("${FDM[@]}")
        step "$1" "${BENCH[@]}" run --methods diffusionad,ddpm_recon "${data[@]}" "${COMMON[@]}" \
            "${RESULTS[@]}" --run-id "ref-$1" --seeds "$SEEDS" "${RECON[@]}" ;;
    others-mtd | others-fdm)  # anomalib's models and the classical baselines
        local data=("${MTD[@]}")
        [ "$1" = others-fdm ] && data=("${FDM[@]}")
        step "$1" "${BENCH[@]}" run --methods "$ANOMALIB,iforest,ocsvm,pca" "${data[@]}" "${COMMON[@]}" \
            "${RESULTS[@]}" --run-id "ref-$1" --seeds "$SEEDS" "${OTHERS[@]}" ;;
    ablation)
        step ablation "${BENCH[@]}" ablate --method radar "${MTD[@]}" "${COMMON[@]}" "${RESULTS[@]}" \
            --run-id ref-ablation --seeds 0 "${RADAR[@]}" --one-at-a-time "${ABLATION[@]}" ;;
    *)
        echo "unknown chunk $1: expected probe, radar-mtd, radar-fdm, recon-mtd, recon-fdm," \
            "others-mtd, others-fdm, ablation or all" >&2
        return 2 ;;
    esac
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
        || echo "no nvidia-smi"
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

[ $# -ge 1 ] || set -- all
for name in "$@"; do
    if [ "$name" = all ]; then
        for c in radar-mtd radar-fdm recon-mtd recon-fdm others-mtd others-fdm ablation; do
            chunk "$c"
        done
    else
        chunk "$name" || exit 2
    fi
done

# The state for the next call and for the repo: every run folder without caches and scratch.
tar czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude='*/work' --exclude='*/locks' --exclude='*/cache' .
ls -l "$OUT"
echo "done in $((SECONDS - START))s"
