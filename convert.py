r"""Converts a pretrained PyTorch checkpoint into a run directory (phipd_jax.convert.runs).

  # A diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors) ->
  # a codec run (scaling_factor and shift_factor from its config.json)
  python convert.py --from diffusers_vae --checkpoint sd-vae-ft-ema/ --workdir runs/sd_vae

  # facebookresearch/DiT (a bare state dict or a training checkpoint: EMA weights first),
  # paired with the codec run for a latent model
  python convert.py --from dit --checkpoint DiT-XL-2-256x256.pt --model DiT-XL/2 \
      --codec runs/sd_vae --workdir runs/dit_xl2_256

  # A diffusers DiTTransformer2DModel folder (heads from its config.json)
  python convert.py --from diffusers_dit --checkpoint DiT-XL-2-256/transformer \
      --codec runs/sd_vae --workdir runs/dit_xl2_256_diffusers

  # JiT / Spectral Forcing training checkpoints (EMA weights when present)
  python convert.py --from jit --checkpoint checkpoint-last.pth --model JiT-B/16 \
      --workdir runs/jit_b16

  # A LoRA run's adapters merged into its base: a plain run that no longer needs the base
  python convert.py --from lora --checkpoint runs/e2s_lora16 --workdir runs/e2s_lora16_merged

The run directory loads like a trained run: sample.py, evaluate.py, benchmark.py,
phipd_jax.load(), and train.py --config.init_from=<workdir> (fine-tuning into a new workdir).
.pt / .pth / .bin files need torch (pip install -e .[convert]); .safetensors do not. A wrong
file, a missing or unexpected key, or a shape mismatch stops with one line naming the key and
both shapes, and nothing is written.
"""

import phipd_jax

if __name__ == '__main__':  # First: re-executes once, before JAX loads.
  phipd_jax.use_huge_page_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position

import time

from absl import flags

from phipd_jax import console
from phipd_jax.convert import runs

_FROM = flags.DEFINE_enum('from', None, list(runs.SOURCES), 'Checkpoint source.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'The checkpoint file (dit, jit), '
                                  'diffusers model folder (diffusers_dit, diffusers_vae) or '
                                  'LoRA run directory (lora).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory to create (new or empty).')
_MODEL = flags.DEFINE_string('model', None, 'dit: DiT-{S,B,L,XL}/{2,4,8}; jit: JiT-{B,L,H}/'
                             '{16,32}. What the state dict does not hold (attention heads); '
                             'checked against what it does.')
_CODEC = flags.DEFINE_string('codec', None, 'dit / diffusers_dit: the codec run of a latent '
                             'model (a --from diffusers_vae output).')
_GUIDANCE_CHANNELS = flags.DEFINE_integer(
    'guidance_channels', 3, 'dit: classifier-free guidance on the first N latent channels, as '
    'DiT\'s forward_with_cfg (3); 0 = all channels.', lower_bound=0)
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs (orbax, absl, JAX).')
flags.mark_flags_as_required(['from', 'checkpoint', 'workdir'])


def main(argv):
  del argv
  console.configure(_VERBOSE.value)
  started = time.perf_counter()
  # A ConversionError (a ValueError) exits 1 with one line (console.run), nothing written.
  note = runs.convert(_FROM.value, _CHECKPOINT.value, _WORKDIR.value, model_name=_MODEL.value,
                      codec=_CODEC.value, guidance_channels=_GUIDANCE_CHANNELS.value)
  model = {k: v for k, v in note['model'].items()
           if k not in ('dtype', 'param_dtype', 'attention_impl', 'remat')}
  print(f'converted {note["checkpoint"]} ({note["parameters"] / 1e6:.1f} M parameters) -> '
        f'{_WORKDIR.value} in {time.perf_counter() - started:.1f} s; model {model}', flush=True)


if __name__ == '__main__':
  console.run(main)
