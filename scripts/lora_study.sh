#!/usr/bin/env bash
# LoRA vs full fine-tuning into phi-PD (docs/results.md, "LoRA into phi-PD"; configs/lora_study.py):
# the Gaussian base, then per seed LoRA at RANKS x RATES, the full fine-tune and FSS from scratch
# (same total steps), shorter fine-tunes (how many steps the structure dial needs), then the
# translation evaluation of every run and the report (tables, the frontier plot, each
# variant's step time, step memory and trainable parameters). About 80 min on 2 CPU cores.
#
#   bash scripts/lora_study.sh [RUNS_DIR] [OUT_NAME]
#
# SEEDS, RANKS, RATES (environment) pick a subset; BUDGETS, SWEEP_RANK, SWEEP_LR the shorter
# fine-tunes. Rerunning skips finished runs (train.py resumes, a finished run is a no-op) and
# existing evaluations.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/lora_study}
name=${2:-lora_study}
python=${PYTHON:-python}
config=configs/lora_study.py
seeds=${SEEDS:-0 1 2}
ranks=${RANKS:-4 16 64}
rates=${RATES:-1e-3 4e-3}
train() {  # train <workdir> <config option> [flags...]
  local workdir=$1 option=$2
  shift 2
  echo "=== $option -> $workdir"
  "$python" train.py --config "$config:$option" --workdir "$workdir" "$@"
}
train "$runs/base" base
workdirs=$runs/base
for seed in $seeds; do
  for rank in $ranks; do
    for lr in $rates; do
      dir=$runs/lora_r${rank}_lr${lr}_s$seed
      train "$dir" "lora,rank=$rank,lr=$lr" --config.init_from="$runs/base" --config.seed="$seed"
      workdirs+=,$dir
    done
  done
  train "$runs/full_s$seed" full --config.init_from="$runs/base" --config.seed="$seed"
  train "$runs/scratch_s$seed" scratch --config.seed="$seed"
  workdirs+=,$runs/full_s$seed,$runs/scratch_s$seed
done
# How many fine-tune steps until the structure dial works: shorter fine-tunes (BUDGETS steps) of
# one LoRA setting (SWEEP_RANK, SWEEP_LR) and of the full fine-tune, per seed, evaluated at r = 8.
budgets=${BUDGETS:-25 50 100}
sweep_rank=${SWEEP_RANK:-16}
sweep_lr=${SWEEP_LR:-4e-3}
steps_dirs=
for seed in $seeds; do
  for n in $budgets; do
    dir=$runs/lora_r${sweep_rank}_lr${sweep_lr}_n${n}_s$seed
    train "$dir" "lora,rank=$sweep_rank,lr=$sweep_lr" --config.init_from="$runs/base" \
        --config.seed="$seed" --config.train.num_steps="$n" --config.train.checkpoint_every="$n"
    train "$runs/full_n${n}_s$seed" full --config.init_from="$runs/base" --config.seed="$seed" \
        --config.train.num_steps="$n" --config.train.checkpoint_every="$n"
    steps_dirs+=${steps_dirs:+,}$dir,$runs/full_n${n}_s$seed
  done
done
# The evaluations (skipped when their JSON exists: delete it to evaluate again).
[ -f "$runs/eval.json" ] || "$python" evaluate.py --mode translate --workdirs "$workdirs" \
    --tasks photo,edges --num 50 --radii 2,4,8,16 --structured_radii= --strengths 0.6 \
    --json "$runs/eval.json"
[ -f "$runs/eval_steps.json" ] || "$python" evaluate.py --mode translate \
    --workdirs "$steps_dirs" --tasks photo,edges --num 50 --radii 8 --structured_radii= \
    --strengths 0.6 --json "$runs/eval_steps.json"
# The sample grids of docs/results.md (the base and one LoRA run, 16 inputs, r = 2 and 8).
"$python" evaluate.py --mode translate --workdirs "$runs/base,$runs/lora_r16_lr4e-3_s0" \
    --tasks edges,photo --num 16 --radii 2,8 --structured_radii= --strengths 0.6 \
    --json "$runs/eval_grids.json" --grids docs/results/lora_study
"$python" scripts/lora_study_report.py --eval "$runs/eval.json,$runs/eval_steps.json" \
    --runs "$runs" --name "$name"
