#!/usr/bin/env bash
# The spectral-collapse / OVG claims with 3 training seeds (docs/results.md, "Spectral collapse
# and OVG", subsection "Three seeds"): per seed, class-conditional two-domain runs that differ in one thing
# each (EDM; DDIM with the eps target; for the seeds in X0_SEEDS, default 0, DDIM with the x0
# target, everything else equal: its inversion diverges on the linspace grid, whose first step
# starts at sigma = 0, so one seed shows it), then per seed
#   * the OVG frontier on edge maps (evaluate.py --mode inversion: plain inversion and OVG of
#     every run, 100 held-out records), and
#   * the source sweep (evaluate.py --mode collapse: photo, x4, x8, x16 and edge-map sources
#     inverted, per-map noise diagnostics, Fig. 3 PCA ranks, Fig. 4 correlations),
# and the report over seeds (scripts/seed_study_report.py collapse).
#
#   bash scripts/collapse_seeds.sh [RUNS_DIR] [OUT_DIR] [STEPS]
#
# STEPS (default 1500) is each run's training budget: 5-6 min per run alone on 2 CPU cores, 7 runs;
# the evaluations about 10 min per seed.
# Rerunning skips finished runs (train.py resumes) and redoes the evaluations.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/collapse_seeds}
out=${2:-docs/results/collapse_seeds}
steps=${3:-1500}
python=${PYTHON:-python}
config=configs/edges2shoes_two_domain.py
stage=${STAGE:-all}  # train, eval or all
x0_seeds=" ${X0_SEEDS-0} "
if [[ $stage != eval ]]; then
  for seed in 0 1 2; do
    common=(--config.seed="$seed" --config.train.num_steps="$steps")
    "$python" train.py --config "$config:cpu" "${common[@]}" --workdir "$runs/edm_s$seed"
    "$python" train.py --config "$config:cpu,ddim" "${common[@]}" --workdir "$runs/ddim_eps_s$seed"
    if [[ $x0_seeds == *" $seed "* ]]; then
      "$python" train.py --config "$config:cpu,ddim" "${common[@]}" \
          --config.diffusion.prediction=x --workdir "$runs/ddim_x0_s$seed"
    fi
  done
fi
if [[ $stage != train ]]; then
  for seed in 0 1 2; do
    dirs="$runs/edm_s$seed,$runs/ddim_eps_s$seed"
    if [[ $x0_seeds == *" $seed "* ]]; then dirs+=",$runs/ddim_x0_s$seed"; fi
    "$python" evaluate.py --mode inversion --workdirs "$dirs" --tasks edges --strengths= \
        --nopca --num 100 --out_dir "$out/s$seed"
    "$python" evaluate.py --mode collapse --workdirs "$dirs" --num 200 --out_dir "$out/s$seed"
  done
  "$python" scripts/seed_study_report.py collapse --runs_dir "$out" --out_dir "$out"
fi
