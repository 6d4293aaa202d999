#!/usr/bin/env bash
# The GPU half of issue #8 (results/perf/README.md) is the first chunk of the GPU study now
# (issue #22): the CUDA-only tests (pytest -m cuda) and the speed table (bench speed side by
# side, then RADAR's ladder), in one device call, defined once in results/gpu/plan.py.
#
#   run(command="bash results/perf/gpu_run.sh", carry=[".whl", ".gpu-data"], timeout_s=600)
#
# is `bash results/gpu/next.sh cuda-check`; SMOKE=1 runs it on the CPU. What comes back and how
# it is kept: results/reference/gpu/README.md.
exec bash "$(dirname "$0")/../gpu/next.sh" cuda-check "$@"
