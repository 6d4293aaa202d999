#!/bin/bash
# The CPU reference study (issue #21): every method the suite runs offline, on the synthetic
# default, magnetic_tile and the FDM prints, seeds 0, 1, 2, the calibrated rule, at the `cpu`
# preset, 2 threads. One run folder per (dataset, group) under results/reference/cpu/study/.
#
#   bash results/reference/cpu/study.sh                 # every group, in the order below
#   bash results/reference/cpu/study.sh radar lite      # some groups only
#   THREADS=1 bash results/reference/cpu/study.sh       # leave a core free
#   OUT=/path/to/checkout/results/reference/cpu/study bash ...  # run from a pinned worktree,
#                                                       # write where the records are committed
#
# Resumable: each command skips the jobs its run folder already holds, so a session that ends
# mid-way loses only the job that was running; commit results/reference/cpu/study/ as it accrues
# (trained-model caches and lock files are ignored). Groups, cheapest and most telling first:
#   classical  iforest, ocsvm, lof, pca, bui_apley (seconds to a minute a job)
#   radar      RADAR: scorer iforest | irf x inference full | patches (one U-Net per seed,
#              shared through the run's cache)
#   lite       patchcore, padim on ImageNet EfficientNet-Lite0 weights (rows marked §)
#   recon      diffusionad, ddpm_recon
#   random     patchcore, padim, fastflow with random-init backbones (rows marked †; fastflow
#              has no Lite backbone in anomalib, so this is its only offline row)
#   draem      DRAEM (anomalib; synthetic anomalies from its own Perlin noise, no DTD images)
set -u
cd "$(dirname "$0")/../../.."
THREADS=${THREADS:-2}
OUT=${OUT:-results/reference/cpu/study}
GROUPS_WANTED=${*:-classical radar lite recon random draem}
COMMON=(--seeds 0,1,2 --preset cpu --threads "$THREADS" --results-dir "$OUT")
bench() { python -m bench.cli "$@"; }

# dataset key -> bench's dataset flags
declare -A DATA=(
  [mtd]="--datasets mvtec:magnetic_tile --data-root ../shared/data/mtd"
  [fdm]="--datasets prints3d --data-root ../shared/data/prints3d/fdm"
  [syn]="--datasets synthetic"
)
LITE=imagenet:lite0
status=0
for group in $GROUPS_WANTED; do
  for ds in mtd fdm syn; do
    # shellcheck disable=SC2086  # the dataset flags are words
    case $group in
      classical) bench run --methods iforest,ocsvm,lof,pca,bui_apley ${DATA[$ds]} "${COMMON[@]}" \
                   --run-id "$ds-classical" ;;
      radar) bench ablate --method radar ${DATA[$ds]} "${COMMON[@]}" \
               --grid scorer=iforest,irf --grid inference=full,patches --run-id "$ds-radar" ;;
      lite) bench run --methods patchcore,padim ${DATA[$ds]} "${COMMON[@]}" \
              --set patchcore.weights=$LITE --set padim.weights=$LITE --run-id "$ds-lite" ;;
      recon) bench run --methods diffusionad,ddpm_recon ${DATA[$ds]} "${COMMON[@]}" \
               --run-id "$ds-recon" ;;
      random) bench run --methods patchcore,padim,fastflow ${DATA[$ds]} "${COMMON[@]}" \
                --set patchcore.weights=random --set padim.weights=random \
                --set fastflow.weights=random --run-id "$ds-random" ;;
      draem) bench run --methods draem ${DATA[$ds]} "${COMMON[@]}" --run-id "$ds-draem" ;;
      *) echo "study.sh: unknown group '$group' (classical radar lite recon random draem)" >&2
         exit 2 ;;
    esac || status=1  # a failed job is recorded; go on with the next folder
  done
done
exit $status
