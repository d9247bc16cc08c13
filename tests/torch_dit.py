"""A PyTorch DiT written for the tests from the DiT paper (Peebles & Xie, arXiv:2212.09748,
Sec. 3.2 and Fig. 3) with the parameter names of facebookresearch/DiT's checkpoints, so that a
state dict of this module has the released layout. Not the upstream code: written here, in the
paper's terms, as the reference the converter is checked against.

Also the reference of DiT's sampling math (the improved-DDPM code DiT ships): the learned-range
variance, the posterior mean, and timestep respacing.
"""

import math

import numpy as np
import torch
from torch import nn


def sincos_table(dim: int, grid: int) -> np.ndarray:
  """The fixed 2-D sin-cos table (MAE), first half of the channels from the column index."""
  def axis(positions, size):
    omega = 1.0 / 10000 ** (np.arange(size // 2, dtype=np.float64) / (size / 2.0))
    out = positions.reshape(-1)[:, None] * omega[None]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
  rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                           indexing='ij')
  return np.concatenate([axis(cols, dim // 2), axis(rows, dim // 2)], axis=1).astype(np.float32)


def timestep_features(t: torch.Tensor, dim: int = 256, shift: int = 0) -> torch.Tensor:
  half = dim // 2
  freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - shift))
  args = t.float()[:, None] * freqs[None]
  return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class PatchEmbed(nn.Module):
  def __init__(self, channels, hidden, patch):
    super().__init__()
    self.proj = nn.Conv2d(channels, hidden, patch, stride=patch)

  def forward(self, x):  # [B, C, H, W] -> [B, T, D]
    return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
  def __init__(self, hidden):
    super().__init__()
    self.mlp = nn.Sequential(nn.Linear(256, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

  def forward(self, t):
    return self.mlp(timestep_features(t))


class LabelEmbedder(nn.Module):
  def __init__(self, num_classes, hidden):
    super().__init__()
    self.embedding_table = nn.Embedding(num_classes + 1, hidden)  # The last row: no label.

  def forward(self, y):
    return self.embedding_table(y)


class Attention(nn.Module):
  def __init__(self, hidden, heads):
    super().__init__()
    self.heads = heads
    self.qkv = nn.Linear(hidden, 3 * hidden)
    self.proj = nn.Linear(hidden, hidden)

  def forward(self, x):
    b, n, d = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
    return self.proj((weights @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
  def __init__(self, hidden):
    super().__init__()
    self.fc1 = nn.Linear(hidden, 4 * hidden)
    self.fc2 = nn.Linear(4 * hidden, hidden)

  def forward(self, x):
    return self.fc2(nn.functional.gelu(self.fc1(x), approximate='tanh'))


def modulate(x, shift, scale):
  return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
  def __init__(self, hidden, heads):
    super().__init__()
    self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
    self.attn = Attention(hidden, heads)
    self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
    self.mlp = Mlp(hidden)
    self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

  def forward(self, x, c):
    s1, g1, gate1, s2, g2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
    x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), s1, g1))
    return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), s2, g2))


class FinalLayer(nn.Module):
  def __init__(self, hidden, patch, out_channels):
    super().__init__()
    self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
    self.linear = nn.Linear(hidden, patch * patch * out_channels)
    self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

  def forward(self, x, c):
    shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
    return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
  """``forward(x [B, C, H, W], t [B] integer steps, y [B]) -> [B, C_out, H, W]``."""

  def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=384, depth=12,
               num_heads=6, num_classes=10, learn_sigma=True):
    super().__init__()
    self.patch, self.in_channels = patch_size, in_channels
    self.out_channels = 2 * in_channels if learn_sigma else in_channels
    self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
    self.t_embedder = TimestepEmbedder(hidden_size)
    self.y_embedder = LabelEmbedder(num_classes, hidden_size)
    grid = input_size // patch_size
    self.pos_embed = nn.Parameter(torch.from_numpy(sincos_table(hidden_size, grid))[None],
                                  requires_grad=False)
    self.blocks = nn.ModuleList([Block(hidden_size, num_heads) for _ in range(depth)])
    self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

  def unpatchify(self, x, grid):
    p, c = self.patch, self.out_channels
    x = x.reshape(x.shape[0], grid, grid, p, p, c)
    return torch.einsum('nhwpqc->nchpwq', x).reshape(x.shape[0], c, grid * p, grid * p)

  def forward(self, x, t, y):
    grid = x.shape[-1] // self.patch
    x = self.x_embedder(x) + self.pos_embed
    c = self.t_embedder(t) + self.y_embedder(y)
    for block in self.blocks:
      x = block(x, c)
    return self.unpatchify(self.final_layer(x, c), grid)

  def forward_with_cfg(self, x, t, y, cfg_scale):
    """DiT's guided forward: the batch holds [cond; uncond] halves; the first 3 channels are
    guided, the rest (4th latent channel and the variance) come from each half's own pass."""
    half = x[: len(x) // 2]
    out = self.forward(torch.cat([half, half]), t, y)
    eps, rest = out[:, :3], out[:, 3:]
    cond, uncond = torch.split(eps, len(eps) // 2, dim=0)
    guided = uncond + cfg_scale * (cond - uncond)
    return torch.cat([torch.cat([guided, guided]), rest], dim=1)


def randomize_(module: nn.Module, std: float = 0.05, seed: int = 0):
  """Random values in every parameter (DiT zero-initialises adaLN and the output layer, which
  would make the comparison trivial); the fixed positional table is kept."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in module.named_parameters():
      if name != 'pos_embed':
        param.copy_(torch.randn(param.shape, generator=generator) * std)


# -- DiT's sampling math (improved DDPM, as DiT's diffusion package computes it) ---------------


def linear_betas(num_steps: int = 1000) -> np.ndarray:
  scale = 1000 / num_steps
  return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)


def respaced_steps(num_steps: int, count: int) -> list[int]:
  """DiT's ``space_timesteps(1000, [count])``: ``round(i (K - 1) / (count - 1))``."""
  if count == 1:
    return [0]
  stride = (num_steps - 1) / (count - 1)
  return sorted({round(i * stride) for i in range(count)})


def respaced_betas(betas: np.ndarray, kept: list[int]) -> np.ndarray:
  alphas_cumprod = np.cumprod(1.0 - betas)
  last, out = 1.0, []
  for k in kept:
    out.append(1 - alphas_cumprod[k] / last)
    last = alphas_cumprod[k]
  return np.array(out)


def p_sample_reference(betas: np.ndarray, index: int, x: np.ndarray, model_out: np.ndarray,
                       noise: np.ndarray) -> np.ndarray:
  """One ancestral step at chain index ``index`` of a chain with ``betas`` (learned range,
  eps prediction, no clipping), as improved-DDPM's ``p_sample`` computes it."""
  alphas_cumprod = np.cumprod(1.0 - betas)
  prev = np.append(1.0, alphas_cumprod[:-1])
  posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
  posterior_log_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
  coef1 = betas * np.sqrt(prev) / (1.0 - alphas_cumprod)
  coef2 = (1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)
  channels = x.shape[1]
  eps, v = model_out[:, :channels], model_out[:, channels:]
  min_log, max_log = posterior_log_clipped[index], np.log(betas[index])
  fraction = (v + 1) / 2
  log_variance = fraction * max_log + (1 - fraction) * min_log
  x0 = np.sqrt(1.0 / alphas_cumprod[index]) * x - np.sqrt(1.0 / alphas_cumprod[index] - 1) * eps
  mean = coef1[index] * x0 + coef2[index] * x
  return mean + (index != 0) * np.exp(0.5 * log_variance) * noise
