#!/usr/bin/env bash
# The Latent Wavelet Diffusion ablation (docs/results.md, "Latent Wavelet Diffusion"): two
# autoencoders (scale-consistent and plain, configs/autoencoder_lwd.py), then flow matching on
# each one's latents with and without the LWD mask (configs/latent_lwd.py), equal steps per
# cell, the ell sweep on the scale-consistent autoencoder, and phi-PD on latents (FSS noise);
# then the evaluation of every cell on the held-out photos.
#
#   bash scripts/lwd_study.sh [RUNS_DIR] [OUT_DIR] [CONFIG_OPTION]
#
# CONFIG_OPTION: cpu (default: 64-px photos, f=4 -> 16x16x4 latents, 2 CPU cores) or '' (the
# accelerator variant: 256 px, f=8 -> 32x32x4). Rerunning skips finished runs (train.py resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/lwd}
out=${2:-docs/results/lwd_study}
option=${3-cpu}
python=${PYTHON:-python}
sep=${option:+,}
ae=configs/autoencoder_lwd.py${option:+:$option}
latent=configs/latent_lwd.py${option:+:$option}
"$python" train.py --config "$ae" --workdir "$runs/ae_sc"
"$python" train.py --config "configs/autoencoder_lwd.py:${option}${sep}plain" --workdir "$runs/ae_plain"
for codec in sc plain; do
  "$python" train.py --config "configs/latent_lwd.py:${option}${sep}nolwd" \
      --config.codec.workdir="$runs/ae_$codec" --workdir "$runs/${codec}_fm"
  "$python" train.py --config "$latent" --config.codec.workdir="$runs/ae_$codec" \
      --workdir "$runs/${codec}_lwd"
done
for ell in 0.0 0.7; do
  "$python" train.py --config "configs/latent_lwd.py:${option}${sep}ell=$ell" \
      --config.codec.workdir="$runs/ae_sc" --workdir "$runs/sc_lwd_ell$ell"
done
"$python" train.py --config "configs/latent_lwd.py:${option}${sep}nolwd,fss" \
    --config.codec.workdir="$runs/ae_sc" --workdir "$runs/sc_fss"
"$python" evaluate.py --mode lwd --autoencoders "$runs/ae_sc,$runs/ae_plain" \
    --workdirs "$runs/sc_fm,$runs/sc_lwd,$runs/plain_fm,$runs/plain_lwd" --num 200 \
    --out_dir "$out"
