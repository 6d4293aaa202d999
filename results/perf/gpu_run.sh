#!/usr/bin/env bash
# The GPU half of issue #8 in ONE device call (results/perf/README.md says what it measures).
#
# Before the call, on the CPU machine, from the repository root (both folders are git-ignored):
#   mkdir -p .whl && cp ../shared/gpu-wheels/*.whl .whl/   # diffusers, anomalib, kornia, ...
#   python results/perf/pack_data.py                       # .gpu-data/{mtd,fdm}, about 25 MB
# The call (device tool):
#   run(command="bash results/perf/gpu_run.sh", carry=[".whl", ".gpu-data"], timeout_s=600)
# Back on the CPU machine (the report needs no GPU):
#   tar xzf <files_at>/perf.tar.gz -C results/runs
#   bench report results/runs/gpu-speed --out reports/gpu-speed    # tables/speed.md etc.
#
# What comes back under $OUT: log.txt (everything printed), gpu.txt (nvidia-smi, versions),
# perf.tar.gz (the run folder gpu-speed: one record per job), pytest.txt (CUDA-only tests).
# Every step runs under a deadline (BUDGET seconds in all, the device call allows 600): a step
# cut short keeps the records it finished (bench speed saves each job as it ends and stops
# cleanly on SIGTERM), and the packing at the end always runs.
#
# SMOKE=1 bash results/perf/gpu_run.sh runs the same steps on the CPU, tiny and on synthetic
# data, to check the script itself (about 5 minutes on 2 cores).
set -u
OUT=${OUT:-/tmp/perf-out}
BUDGET=${BUDGET:-570}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1

RUNS=/tmp/perf-runs
if [ "${SMOKE:-0}" = 1 ]; then
    PY=${PY:-python}
    COMMON=(--device cpu --preset quick --datasets synthetic --threads 1 --seed 0)
    RADAR=(--set radar.image_size=32 --set radar.patch_size=16 --set radar.block_out_channels=8,16
           --set radar.norm_num_groups=8 --set radar.train_steps=20 --set radar.batch_size=16
           --set radar.infer_stride=8 --set radar.scorer_images=10)
    OTHERS=(iforest pca)
    OTHER_SETS=()
    LADDER=ladder
    REPEATS=3
    EVAL=12
else
    PY=python3
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
    COMMON=(--device cuda --preset paper --datasets mvtec:magnetic_tile --data-root .gpu-data/mtd
            --calibration-fraction 0.05 --seed 0)
    # RADAR: the paper's U-Net and inference (100 px, 28 px patches at stride 1 = 5329 patches
    # per image), trained shorter than the paper's 10,000 x 512 (1,024 x 600 patches, bf16).
    RADAR=(--set radar.train_steps=600 --set radar.batch_size=1024 --set radar.precision=bf16
           --set radar.lr=1e-3 --set radar.scorer_images=30)
    # Baselines at their paper settings, trained briefly: their speed is what is measured.
    # PatchCore: no pretrained weights offline (flagged weights:random; the speed is the same);
    # a 4% coreset of MTD's 720 x 1024 patches is a bank the size of a 10% one on MVTec.
    OTHERS=(diffusionad patchcore)
    OTHER_SETS=(--set diffusionad.epochs=2 --set patchcore.weights=random
                --set patchcore.coreset_sampling_ratio=0.04)
    # No tf32 rung (issue #8 measured it: 120 ms); every other rung of the CUDA ladder.
    LADDER=ladder:bf16,channels_last,auto_batch,compile,cuda_graphs,full
    REPEATS=50
    EVAL=100
fi
export PYTHONUNBUFFERED=1
rm -rf "$RUNS/gpu-speed"
RUN=(--results-dir "$RUNS" --run-id gpu-speed --name gpu-speed)

step() {  # step NAME RESERVE CMD...: run CMD with the time left minus RESERVE seconds
    local name=$1 reserve=$2 limit
    shift 2
    limit=$(($(left) - reserve))
    if [ "$limit" -lt 30 ]; then
        echo "== $name: skipped, ${limit}s left"
        return
    fi
    echo "== $name: up to ${limit}s"
    timeout -s TERM -k 20 "$limit" "$@"
    echo "== $name: exit $?, $(left)s left"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
        --format=csv 2>/dev/null || echo "no nvidia-smi"
    $PY - <<'EOF'
import torch, diffusers, kornia, sklearn
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("diffusers", diffusers.__version__, "kornia", kornia.__version__, "sklearn", sklearn.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, p.multi_processor_count, "SMs", round(p.total_memory / 2**30, 1), "GiB")
EOF
} | tee "$OUT/gpu.txt"

# A. Side by side, one process, one GPU: RADAR on its safe fast path (bf16 autocast, automatic
#    batch; no compilation) against DiffusionAD and PatchCore. RADAR trains here once; B reuses
#    the trained U-Net from the run's cache (same run folder, same training parameters).
step side-by-side 330 $PY -m bench.cli speed --methods "radar,$(IFS=,; echo "${OTHERS[*]}")" \
    "${COMMON[@]}" "${RUN[@]}" "${RADAR[@]}" "${OTHER_SETS[@]}" \
    --set radar.infer_precision=bf16 --set radar.infer_batch=0 \
    --repeats "$REPEATS" --warmup 3 --batches 1,8,64,auto --budget-s 4 --eval-images "$EVAL"

# B. RADAR's fast-path ladder: plain fp32 eager, then each rung on the fastest so far.
step ladder 40 $PY -m bench.cli speed --methods radar --variants "$LADDER" \
    "${COMMON[@]}" "${RUN[@]}" "${RADAR[@]}" --set radar.infer_precision=fp32 \
    --repeats "$REPEATS" --warmup 3 --batches 1,8,64 --budget-s 3 --eval-images "$EVAL"

# C. The CUDA-only checks (tests marked cuda: torch.compile and CUDA graphs give the eager map,
#    bf16, the automatic batch, the out-of-memory fallback, peak memory), if time is left.
if [ "${SMOKE:-0}" != 1 ] && [ "$(left)" -gt 120 ]; then
    step cuda-tests 30 $PY -m pytest -q -p no:cacheprovider -m cuda tests \
        >"$OUT/pytest.txt" 2>&1
    tail -3 "$OUT/pytest.txt"
fi

# D. Pack the run folder (records, scores, maps; not the U-Net cache) for the trip back.
tar czf "$OUT/perf.tar.gz" -C "$RUNS" --exclude=gpu-speed/cache --exclude=gpu-speed/work \
    --exclude=gpu-speed/locks gpu-speed && ls -l "$OUT"
echo "done in $((SECONDS - START))s"
