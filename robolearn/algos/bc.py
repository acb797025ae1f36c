"""Behaviour cloning with an MLP: the simplest baseline, state -> action, L2 loss.

Image keys' encoders train end to end with the policy: their weights are in the policy's optimiser."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from robolearn.algos.base import Algo, AlgoConfig, adam, register, step_optimizer
from robolearn.config import positive
from robolearn.models.nets import mlp


@dataclass
class BCConfig(AlgoConfig):
    hidden: list[int] = positive(default_factory=lambda: [1024, 1024])


@register("bc")
class BC(Algo):
    Config = BCConfig

    def __init__(self, cfg: BCConfig, obs_spec, normalizers, action_dim: int):
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        self.net = mlp(self.obs_dim, cfg.hidden, action_dim)
        self.opt = adam([*self.net.parameters(), *self.encoder.parameters()], lr=cfg.lr)

    def optimizers(self):
        return {"policy": self.opt}

    def train_step(self, data, gen):
        b = data.transitions(self.cfg.batch_size, gen)
        loss = F.mse_loss(torch.tanh(self.net(self.encode(b["obs"], gen))), b["action"], reduction="none").sum(-1).mean()
        step_optimizer(self.opt, loss)
        return {"loss/policy": loss.item()}

    @torch.no_grad()
    def act(self, obs):
        return torch.tanh(self.net(obs[None]))[0]
