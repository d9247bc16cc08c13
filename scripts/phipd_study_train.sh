#!/usr/bin/env bash
# Trains the five checkpoints of the phi-PD vs SDEdit study (configs/phipd_study.py):
# gaussian, fss0, fss4, fss8, then finetune (the gaussian checkpoint + FSS noise), and the
# BSDS500 pair bsds_gaussian, bsds_fss0 (CELLS="..." picks a subset).
#
#   bash scripts/phipd_study_train.sh [RUNS_DIR] [extra train.py flags...]
#
# Rerunning skips finished runs (train.py resumes; a finished run is a no-op).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/study}
shift || true
python=${PYTHON:-python}
for cell in ${CELLS:-gaussian fss0 fss4 fss8 finetune bsds_gaussian bsds_fss0}; do
  extra=()
  if [[ $cell == finetune ]]; then extra=(--config.init_from="$runs/gaussian"); fi
  echo "=== $cell -> $runs/$cell"
  /usr/bin/time -f "$cell wall %e s" "$python" train.py --config "configs/phipd_study.py:$cell" \
      --workdir "$runs/$cell" "${extra[@]}" "$@"
done
