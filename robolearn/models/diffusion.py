"""Denoising diffusion maths: the squared-cosine noise schedule, DDPM training targets and
deterministic DDIM sampling, for epsilon-predicting models.

Why these three: Diffusion Policy (Chi et al., RSS 2023) trains with DDPM's forward process
over 100 steps of the squared-cosine schedule (Nichol & Dhariwal 2021), whose signal decays
gently at both ends where the linear schedule wastes steps on near-pure noise, and samples
with DDIM (Song et al. 2021), which reuses the same trained model with far fewer denoising
steps (10 instead of 100): what makes a re-plan affordable on a CPU.

Conventions (those of the reference implementations): step ``t`` in ``0 .. T-1`` has
cumulative signal ``alpha_bar[t]``; a noisy sample is ``sqrt(alpha_bar[t]) x0 +
sqrt(1 - alpha_bar[t]) eps``; DDIM's last step goes to ``alpha_bar = 1`` (the clean sample),
and predicted clean samples are clipped to the data range [-1, 1] at every step.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

#: Offset ``s`` of the squared-cosine schedule: keeps the first betas from being vanishingly small.
COSINE_OFFSET = 0.008
#: Cap on each beta: the schedule's last step would otherwise destroy all signal at once (beta = 1).
MAX_BETA = 0.999


def cosine_alpha_bar(u: torch.Tensor) -> torch.Tensor:
    """The squared-cosine cumulative signal at diffusion time ``u`` in [0, 1]."""
    return torch.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def squared_cosine_betas(steps: int) -> torch.Tensor:
    """beta_i = 1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), capped at ``MAX_BETA`` (float64)."""
    u = torch.arange(steps + 1, dtype=torch.float64) / steps
    a = cosine_alpha_bar(u)
    return (1 - a[1:] / a[:-1]).clamp(max=MAX_BETA)


class NoiseSchedule(nn.Module):
    """The forward process over ``steps`` training steps; ``alphas_cumprod`` is a buffer so it
    follows the model to its device (it is recomputed from ``steps``, never loaded as data)."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = int(steps)
        alphas_cumprod = torch.cumprod(1 - squared_cosine_betas(self.steps), 0)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for clean samples ``x0`` (B, ...), their noise and their steps ``t`` (B,)."""
        a = self.alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def ddim_timesteps(self, inference_steps: int) -> list[int]:
        """The training steps DDIM visits, from the noisiest down: T/n apart, ending at 0."""
        ratio = self.steps // inference_steps
        return [i * ratio for i in reversed(range(inference_steps))]

    def ddim_sample(self, eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                    inference_steps: int, clip: float | None = 1.0) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from pure noise ``x`` (B, ...): at each visited step, the
        clean sample implied by the model's epsilon (clipped to [-clip, clip]), moved to the next
        visited step's noise level along the same epsilon."""
        ratio = self.steps // inference_steps
        for t in self.ddim_timesteps(inference_steps):
            a_t = self.alphas_cumprod[t]
            a_prev = self.alphas_cumprod[t - ratio] if t - ratio >= 0 else torch.ones_like(a_t)
            steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            eps = eps_model(x, steps)
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return x


class EMA:
    """Exponential moving average of a module's weights with Diffusion Policy's warm-up: the
    decay at update ``k`` is ``1 - (1 + k) ** -power``, capped at ``max_decay``, so early
    averages follow the fast-changing weights and late ones smooth over thousands of steps
    (a fixed 0.9999 would still be mostly the random initialisation after a CPU-sized run).

    The averaged copy lives in the algorithm's own module tree (it is saved in checkpoints and
    moves with ``.to``); this object only holds the arithmetic."""

    def __init__(self, power: float, max_decay: float):
        self.power, self.max_decay = float(power), float(max_decay)

    def decay(self, updates: int) -> float:
        return min(self.max_decay, 1.0 - (1.0 + updates) ** -self.power)

    @torch.no_grad()
    def update(self, average: nn.Module, live: nn.Module, updates: int) -> None:
        d = self.decay(updates)
        for a, p in zip(average.parameters(), live.parameters()):
            a.lerp_(p.detach(), 1.0 - d)
        for a, b in zip(average.buffers(), live.buffers()):
            a.copy_(b)
