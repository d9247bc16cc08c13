#!/usr/bin/env bash
# The Latent Wavelet Diffusion claims with seeds (docs/results.md, "Latent Wavelet Diffusion",
# subsection "Three seeds"):
#   1. the paper's regime for the scale-consistent term: one plain autoencoder trained from
#      scratch (alpha 0), then fine-tuned from it with the term (alpha 0.25) or without it (the
#      control, alpha 0), 3 seeds each;
#   2. flow matching on the seed-0 fine-tuned latents, seeds FM_SEEDS (default 0 1: a third did
#      not fit the session) per cell, equal steps: the ell
#      sweep (0, 0.1, 0.3, 0.5, 0.7) and no mask on the scale-consistent codec, ell 0.3 and no
#      mask on the control codec (with ell 0.3 / no mask x both codecs = the 2x2 ablation);
#      checkpoints at a third and two thirds of training are kept for the convergence curves;
#   3. the evaluations (evaluate.py --mode lwd) and the report over seeds
#      (scripts/seed_study_report.py lwd).
#
#   bash scripts/lwd_seeds.sh [RUNS_DIR] [OUT_DIR] [FM_STEPS] [FINETUNE_STEPS]
#
# Budget on 2 CPU cores at the defaults (240 flow-matching steps, 40 fine-tune steps), measured
# while sharing the cores with the collapse study: 7 min for the base autoencoder, 11 min of
# fine-tunes, about 3 min per flow-matching run (16 runs; 74 s of it caching the latents), about
# 25 min of evaluation per seed (8 runs x 3 checkpoints).
# Rerunning skips finished runs (train.py resumes) and redoes the evaluations.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/lwd_seeds}
out=${2:-docs/results/lwd_seeds}
steps=${3:-240}
finetune=${4:-40}
python=${PYTHON:-python}
stage=${STAGE:-all}  # train, eval or all
ae=configs/autoencoder_lwd.py
fm=configs/latent_lwd.py
cells=(sc:ell=0.0 sc:ell=0.1 sc:ell=0.3 sc:ell=0.5 sc:ell=0.7 sc:nolwd plain:ell=0.3 plain:nolwd)
name() { local codec=${1%%:*} option=${1#*:}; echo "${codec}_${option/=/}"; }
if [[ $stage != eval ]]; then
  "$python" train.py --config "$ae:cpu,plain" --workdir "$runs/ae_base"
  for seed in 0 1 2; do
    for kind in sc plain; do
      option=cpu; [[ $kind == plain ]] && option=cpu,plain
      "$python" train.py --config "$ae:$option" --config.init_from="$runs/ae_base" \
          --config.seed="$seed" --config.train.num_steps="$finetune" \
          --config.optim.learning_rate=1e-4 --config.optim.warmup_steps=0 \
          --config.optim.ema_decay=0.9 --workdir "$runs/ae_ft_${kind}_s$seed"
    done
  done
  for seed in ${FM_SEEDS:-0 1}; do
    for cell in "${cells[@]}"; do
      "$python" train.py --config "$fm:cpu,${cell#*:}" --config.codec.workdir="$runs/ae_ft_${cell%%:*}_s0" \
          --config.seed="$seed" --config.train.num_steps="$steps" \
          --config.train.checkpoint_every=$((steps / 3)) --config.train.keep_checkpoints=4 \
          --config.sample.write_grids=False --workdir "$runs/$(name "$cell")_s$seed"
    done
  done
fi
if [[ $stage != train ]]; then
  aes="$runs/ae_base"
  for seed in 0 1 2; do aes+=",$runs/ae_ft_sc_s$seed,$runs/ae_ft_plain_s$seed"; done
  "$python" evaluate.py --mode lwd --autoencoders "$aes" --num 200 --out_dir "$out/autoencoders"
  for seed in ${FM_SEEDS:-0 1}; do
    dirs=""
    for cell in "${cells[@]}"; do dirs+="${dirs:+,}$runs/$(name "$cell")_s$seed"; done
    "$python" evaluate.py --mode lwd --workdirs "$dirs" --num 100 \
        --checkpoint_steps "$((steps / 3)),$((2 * steps / 3))" --out_dir "$out/s$seed"
  done
  "$python" scripts/seed_study_report.py lwd --runs_dir "$out" --out_dir "$out"
fi
