"""An in-sample value for IRIS's goal selector: V(s) by expectile regression on the critics'
Q at the *recorded* actions (IQL's value learner, Kostrikov et al. 2022), with no action model.

Why beside ``BCQCritic``: BCQ scores a candidate subgoal g as the max over M actions sampled
from an action cVAE of Q(g, a). That max is biased upwards, more so where the critic has seen
little data, and IRIS then takes a second max over N candidates, so it favours the candidates
whose values are over-estimated. An upper expectile of Q over the data's own actions is a soft
maximum that never asks the critic about an action the demonstrations do not contain, and
scoring a candidate is one small MLP pass instead of M critic passes (N x M rows per re-plan).

The learners, on the same transitions and targets as ``BCQCritic`` (``critic_batch``):

- V(s): expectile ``expectile`` of the target critics' min Q(s, a_data);
- Q(s, a): TD regression to r + gamma * (1 - done) * V(s'), floored at the demo's return-to-go
  and clipped to the return bounds when the config asks, as BCQ's target is;
- the target critics follow Q by Polyak averaging (``tau``) and only feed V's regression target.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from robolearn.algos.base import adam, step_optimizer
from robolearn.algos.bcq import BCQCriticConfig, bounded_target, critic_batch, td_update
from robolearn.algos.iql import expectile_loss
from robolearn.models.nets import QEnsemble, mlp


class ExpectileValue(nn.Module):
    """``cfg``: the critic settings BCQ's selector has (its action cVAE and sampling settings are
    unused); ``expectile``: the level V fits, towards 1 the best recorded action's value."""

    def __init__(self, cfg: BCQCriticConfig, obs_dim: int, action_dim: int, expectile: float):
        super().__init__()
        self.cfg = cfg
        self.expectile = float(expectile)
        self.critic = QEnsemble(obs_dim, action_dim, cfg.critic_hidden, cfg.num_critics)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.v = mlp(obs_dim, cfg.critic_hidden, 1)
        self.critic_opt = adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.v_opt = adam(self.v.parameters(), lr=cfg.critic_lr)

    def optimizers(self):
        return {"critic": self.critic_opt, "state_value": self.v_opt}

    @torch.no_grad()
    def state_value(self, obs: torch.Tensor, n: int = 0, gen: torch.Generator | None = None) -> torch.Tensor:
        """V(s) of features (B, D) -> (B,). ``n`` and ``gen`` are the sampled-action selector's
        arguments (``BCQCritic.state_value``); V is in-sample and samples nothing."""
        return self.v(obs).squeeze(-1)

    def sample(self, data, batch_size: int, gen: torch.Generator, encode: Callable) -> dict[str, torch.Tensor]:
        return critic_batch(self.cfg, data, batch_size, gen, encode)

    def update(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, float]:
        s, a = batch["obs"].detach(), batch["action"]
        with torch.no_grad():
            q_data = self.target(s, a).min(0).values
        v = self.v(s).squeeze(-1)
        value_loss = expectile_loss(q_data - v, self.expectile)
        step_optimizer(self.v_opt, value_loss)
        with torch.no_grad():
            next_v = self.v(batch["next_obs"]).squeeze(-1)
            y = bounded_target(batch["reward"] + self.cfg.gamma * (1.0 - batch["done"]) * next_v, batch)
        q, critic_loss = td_update(self.critic, self.target, self.critic_opt, s, a, y, self.cfg.tau)
        return {
            "loss/critic": critic_loss.item(),
            "loss/state_value": value_loss.item(),
            "value/v_mean": v.mean().item(),
            "value/q_mean": q.mean().item(),
            "value/target_mean": y.mean().item(),
        }
