#!/usr/bin/env bash
# The Spectral Forcing patch-size ablation at CPU scale (docs/results.md, "Spectral Forcing").
# Trains configs/jit_spectral_forcing.py at patch 16, 8 and 4, each without and with Spectral
# Forcing (equal budgets: the config's `cpu` variant), then evaluates every final EMA checkpoint
# with evaluate.py (256 samples, SWD and spectra against the held-out photos) and plots.
#
#   bash scripts/spectral_forcing_ablation.sh [RUNS_DIR] [extra train.py flags...]
#   CELLS="p16 p16,sf" bash scripts/spectral_forcing_ablation.sh runs/jit_sf_seed1 --config.seed=1
#
# Outputs: RUNS_DIR/<cell>/ (train.py run folders), docs/results/<basename RUNS_DIR>.{json,md,png}
# and docs/results/<basename RUNS_DIR>/<cell>.png sample grids. Rerunning skips finished runs
# (train.py resumes from the last checkpoint; a finished run is a no-op).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/jit_sf}
shift || true
python=${PYTHON:-python}
cells=${CELLS:-"p16 p16,sf p8 p8,sf p4 p4,sf"}
name=$(basename "$runs")
workdirs=()
for cell in $cells; do
  workdir="$runs/${cell/,/_}"
  workdirs+=(--workdirs "$workdir")
  echo "=== $cell -> $workdir"
  /usr/bin/time -f "$cell wall %e s" "$python" train.py \
      --config "configs/jit_spectral_forcing.py:$cell,cpu" --workdir "$workdir" "$@"
done
mkdir -p docs/results
"$python" evaluate.py "${workdirs[@]}" --num 256 --json "docs/results/$name.json" \
    --markdown "docs/results/$name.md" --grids "docs/results/$name"
"$python" scripts/plot_spectral_forcing.py "docs/results/$name.json" "docs/results/$name.png"
