#!/usr/bin/env bash
# The video phi-PD study with 3 training seeds (docs/results.md, "Video phi-PD"): per seed a clip
# run (configs/clips_phipd.py: tiny spatio-temporal DiT, per-frame FSS training noise, 8-frame
# 32-px camera-motion clips of BSDS500 train photos), then evaluate.py --mode clips on the first
# NUM held-out clips (BSDS500 test photos; pan / zoom / rotate / mixed): phi-PD at r = 4 with
# each clip noise option and SDEdit at s = 0.75 with i.i.d. and flow-warped Gaussian noise; and
# the report over seeds (scripts/seed_study_report.py clips).
#
#   bash scripts/clip_study.sh [RUNS_DIR] [OUT_DIR] [STEPS]
#
# STEPS (default 1500): ~15 min per run alone on 2 CPU cores; each evaluation ~5 min (NUM=64).
# Rerunning skips finished runs (train.py resumes) and redoes the evaluations.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/clip_study}
out=${2:-docs/results/clip_study}
steps=${3:-1500}
num=${NUM:-64}
python=${PYTHON:-python}
stage=${STAGE:-all}  # train, eval or all
seeds=${SEEDS:-0 1 2}
if [[ $stage != eval ]]; then
  for seed in $seeds; do
    "$python" train.py --config configs/clips_phipd.py --config.seed="$seed" \
        --config.train.num_steps="$steps" --workdir "$runs/clips_s$seed"
  done
fi
if [[ $stage != train ]]; then
  for seed in $seeds; do
    "$python" evaluate.py --mode clips --workdirs "$runs/clips_s$seed" --num "$num" --radii 4 \
        --strengths 0.75 --batch_size 16 --out_dir "$out/s$seed"
  done
  "$python" scripts/seed_study_report.py clips --runs_dir "$out" --out_dir "$out"
fi
