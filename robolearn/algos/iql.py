"""Implicit Q-Learning (Kostrikov et al., ICLR 2022): offline RL that never asks a critic about an
action the demonstrations do not contain.

Three learners on dataset transitions (s, a, r, s', done):

- V(s) by expectile regression on the target twin critic's min Q(s, a) at the *recorded* action:
  with expectile ``expectile`` > 0.5 the loss weighs under-estimates more than over-estimates,
  so V approaches an upper expectile of Q over the actions the data took in s. That in-sample
  soft maximum stands in for BCQ's max over sampled actions: no action model, no extrapolation.
- Q(s, a) (twin critics) by TD regression to r + gamma * (1 - done) * V(s'); the target critic
  follows Q by Polyak averaging and only feeds V's regression target.
- the policy by advantage-weighted regression: the recorded action, weighted by
  exp(beta * (Q_target(s, a) - V(s))) clipped at ``max_weight``, so actions better than the
  state's usual ones are imitated more and the policy stays on the data's support.

The policy is deterministic (a tanh MLP; acting is its output): AWR with a fixed-variance
Gaussian is exactly this weighted mean-squared error, and the L2 head is what every other
flat policy here uses (``BC``; docs/decisions.md on the L2 against the GMM head). The noise a
learned variance would add is dropped at evaluation anyway.

With image keys, the observation encoder trains with the policy's weighted action loss (its
weights join the policy optimiser): every sample carries a dense action target there, while
the TD loss of a sparse success reward is near zero until values have propagated. Q and V read
the same features without shaping them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from robolearn.algos.base import Algo, AlgoConfig, adam, register, step_optimizer
from robolearn.config import checked, positive
from robolearn.models.nets import QEnsemble, mlp


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean of |expectile - 1(diff < 0)| * diff^2, with diff = target - prediction: a positive diff
    (the prediction below its target) weighs ``expectile``, a negative one ``1 - expectile``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def advantage_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """exp(beta * advantage), clipped at ``max_weight``: without the clip one over-estimated
    advantage would dominate the batch (exp overflows to inf at beta * adv > 88 in float32)."""
    return torch.exp(beta * advantage).clamp(max=max_weight)


@dataclass
class IQLConfig(AlgoConfig):
    #: the policy MLP's hidden layers (``lr``: the policy's learning rate).
    hidden: list[int] = positive(default_factory=lambda: [256, 256])
    #: hidden layers of each Q critic and of V.
    critic_hidden: list[int] = positive(default_factory=lambda: [256, 256])
    num_critics: int = positive(2)
    #: learning rate of the Q critics and of V.
    critic_lr: float = positive(3e-4)
    gamma: float = checked(0.99, check="discount")
    #: the expectile V fits of Q(s, a_data): 0.5 is the mean (SARSA, the behaviour's value);
    #: towards 1 the best recorded action's value. 0 and 1 leave V unbounded on one side.
    expectile: float = checked(0.7, check="open_unit")
    #: inverse temperature of the advantage weights: 0 would be plain BC.
    beta: float = positive(3.0)
    #: the largest advantage weight one sample may get.
    max_weight: float = positive(100.0)
    #: share of the way the target critic moves towards the critic per update.
    target_tau: float = checked(5e-3, check="fraction")
    #: added to every recorded reward in the TD target (the paper's AntMaze recipe is -1). With a
    #: sparse 0/1 success reward an action that saves one step gains only about (1 - gamma) * V
    #: in Q, so advantages are ~0.01 and exp(beta * A) ~ 1 for any beta of the paper's range; a
    #: cost of 1 per step makes Q count steps to success and an advantage of ~1 mean one step saved.
    reward_shift: float = checked(0.0)


@register("iql")
class IQL(Algo):
    Config = IQLConfig

    def __init__(self, cfg: IQLConfig, obs_spec, normalizers, action_dim: int):
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        self.policy = mlp(self.obs_dim, cfg.hidden, action_dim)
        self.critic = QEnsemble(self.obs_dim, action_dim, cfg.critic_hidden, cfg.num_critics)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.v = mlp(self.obs_dim, cfg.critic_hidden, 1)
        self.policy_opt = adam([*self.policy.parameters(), *self.encoder.parameters()], lr=cfg.lr)
        self.critic_opt = adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.v_opt = adam(self.v.parameters(), lr=cfg.critic_lr)

    def optimizers(self):
        return {"policy": self.policy_opt, "critic": self.critic_opt, "value": self.v_opt}

    def state_value(self, obs: torch.Tensor, n: int = 0, gen: torch.Generator | None = None) -> torch.Tensor:
        """V(s) of features (B, D) -> (B,). ``n`` and ``gen`` are the sampled-action critics'
        arguments (``BCQCritic.state_value``); V is in-sample and samples nothing."""
        with torch.no_grad():
            return self.v(obs).squeeze(-1)

    def train_step(self, data, gen):
        cfg = self.cfg
        b = data.transitions(cfg.batch_size, gen)
        obs = self.encode(b["obs"], gen)
        s = obs.detach()
        with torch.no_grad():
            next_s = self.encode(b["next_obs"], gen)
            q_target = self.target(s, b["action"]).min(0).values

        v = self.v(s).squeeze(-1)
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        step_optimizer(self.v_opt, value_loss)

        with torch.no_grad():
            y = b["reward"] + cfg.reward_shift + cfg.gamma * (1.0 - b["done"]) * self.v(next_s).squeeze(-1)
        q = self.critic(s, b["action"])
        critic_loss = sum(F.mse_loss(qi, y) for qi in q)
        step_optimizer(self.critic_opt, critic_loss)

        advantage = q_target - v.detach()
        weights = advantage_weights(advantage, cfg.beta, cfg.max_weight)
        err = F.mse_loss(torch.tanh(self.policy(obs)), b["action"], reduction="none").sum(-1)
        policy_loss = (weights * err).mean()
        step_optimizer(self.policy_opt, policy_loss)

        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target.parameters()):
                tp.lerp_(p, cfg.target_tau)
        return {
            "loss/policy": policy_loss.item(),
            "loss/critic": critic_loss.item(),
            "loss/value": value_loss.item(),
            "value/v_mean": v.mean().item(),
            "value/q_mean": q.mean().item(),
            "value/target_mean": y.mean().item(),
            "policy/advantage_mean": advantage.mean().item(),
            "policy/weight_mean": weights.mean().item(),
            "policy/weight_clipped": (weights >= cfg.max_weight).float().mean().item(),
        }

    @torch.no_grad()
    def act(self, obs):
        return torch.tanh(self.policy(obs[None]))[0]
