"""The conditional 1-D temporal U-Net of Diffusion Policy (Chi et al., RSS 2023).

It maps a noisy action sequence (B, T, A) to the noise it contains, convolving over time:
neighbouring actions of a chunk are denoised together, which is what keeps a sampled chunk
smooth and inside one mode instead of hopping between modes step by step.

Conditioning is FiLM (Perez et al. 2018): the diffusion step's sinusoidal embedding (through a
small MLP) and the flattened observation history form one vector, from which every residual
block predicts a per-channel scale and bias for its first convolution's output. Conditioning
every block, rather than feeding the observation once at the input, is the reference
design's choice and lets the observation steer the denoising at every resolution.

Layout: ``len(channels)`` resolutions; each has two residual blocks, and every one but the
deepest halves the time axis (strided convolution); two residual blocks in the middle; each
level of the way up concatenates the skip connection of its resolution, runs two residual
blocks and doubles the time axis back (transposed convolution). The sequence length must therefore be divisible by
``2 ** (len(channels) - 1)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """A diffusion step (B,) as ``dim`` sines and cosines of geometrically spaced frequencies."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1)))
        args = t.float()[:, None] * freqs[None, :]
        return torch.cat([args.sin(), args.cos()], -1)


class ConvBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, keeping the sequence length."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int):
        super().__init__(nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2), nn.GroupNorm(groups, out_ch), nn.Mish())


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the first one's output is scaled and shifted per channel by the condition."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel: int, groups: int):
        super().__init__()
        self.first = ConvBlock(in_ch, out_ch, kernel, groups)
        self.second = ConvBlock(out_ch, out_ch, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, 1)
        h = self.first(x) * scale + bias
        return self.second(h) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """eps(x_t, t | cond): (B, T, A) noisy actions, (B,) steps, (B, C) condition -> (B, T, A)."""

    def __init__(self, action_dim: int, cond_dim: int, channels: Sequence[int], step_embed_dim: int,
                 kernel: int = 5, groups: int = 8):
        super().__init__()
        self.levels = len(channels)
        self.step_encoder = nn.Sequential(SinusoidalEmbedding(step_embed_dim), nn.Linear(step_embed_dim, 4 * step_embed_dim),
                                          nn.Mish(), nn.Linear(4 * step_embed_dim, step_embed_dim))
        film = step_embed_dim + cond_dim
        dims = [action_dim, *channels]

        def block(i: int, o: int) -> FiLMResidualBlock:
            return FiLMResidualBlock(i, o, film, kernel, groups)

        self.down = nn.ModuleList()
        for level, (i, o) in enumerate(zip(dims[:-1], dims[1:])):
            last = level == self.levels - 1
            self.down.append(nn.ModuleList([block(i, o), block(o, o),
                                            nn.Identity() if last else nn.Conv1d(o, o, 3, stride=2, padding=1)]))
        mid = channels[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        # Every level of the way up doubles the time axis: the deepest skip joins the middle's
        # output, and the finest resolution's skip goes unused, as in the reference network.
        for i, o in reversed(list(zip(dims[1:-1], dims[2:]))):
            self.up.append(nn.ModuleList([block(2 * o, i), block(i, i), nn.ConvTranspose1d(i, i, 4, stride=2, padding=1)]))
        self.head = nn.Sequential(ConvBlock(channels[0], channels[0], kernel, groups), nn.Conv1d(channels[0], action_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([self.step_encoder(t), cond], -1)
        h = x.transpose(1, 2)  # (B, A, T): channels are the action dimensions, convolved over time
        skips = []
        for first, second, downsample in self.down:
            h = second(first(h, c), c)
            skips.append(h)
            h = downsample(h)
        for blk in self.mid:
            h = blk(h, c)
        for first, second, upsample in self.up:
            h = torch.cat([h, skips.pop()], 1)
            h = upsample(second(first(h, c), c))
        return self.head(h).transpose(1, 2)
