#!/usr/bin/env bash
# The Spectral Forcing patch-size ablation at CPU scale (docs/results.md, "Spectral Forcing").
# Six runs of configs/jit_spectral_forcing.py (patch 16, 8, 4; without and with Spectral Forcing;
# equal budgets), then evaluate.py over their final EMA checkpoints. Rerunning resumes/skips
# finished runs (train.py resumes from the last checkpoint).
#   bash scripts/spectral_forcing_ablation.sh [RUNS_DIR] [extra train.py flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/jit_sf}
shift || true
python=${PYTHON:-python}
for cell in p16 p16,sf p8 p8,sf p4 p4,sf; do
  workdir="$runs/${cell/,/_}"
  echo "=== $cell -> $workdir"
  /usr/bin/time -f "$cell wall %e s" "$python" train.py \
      --config "configs/jit_spectral_forcing.py:$cell,cpu" --workdir "$workdir" "$@"
done
"$python" evaluate.py --workdirs "$runs"/p16 --workdirs "$runs"/p16_sf --workdirs "$runs"/p8 \
    --workdirs "$runs"/p8_sf --workdirs "$runs"/p4 --workdirs "$runs"/p4_sf --num 256 \
    --json docs/results/jit_sf.json --markdown docs/results/jit_sf.md --grids docs/results/jit_sf
