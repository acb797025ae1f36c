"""Batch-constrained Q-learning (Fujimoto et al. 2019), discrete-sample form, no perturbation actor.

The max over next actions in the Bellman target only ranges over actions sampled from an
action cVAE fit to the data: Q is never asked about actions the demonstrations do not
support, which is what keeps offline Q-learning from chasing its own extrapolation errors.

``BCQCritic`` is the reusable part: IRIS uses it as its value selector, scoring a subgoal g
as max over sampled actions of Q(g, a).

With image keys, the observation encoder trains with the critic's TD loss (its weights join the
critic's optimiser); the action cVAE conditions on the same features without shaping them, and
the Bellman target reads the next observation's features through the same encoder, unshaped.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from robolearn.algos.base import Algo, AlgoConfig, adam, register, step_optimizer
from robolearn.config import checked, non_negative, positive, probability
from robolearn.models.nets import ConditionalVAE, QEnsemble


@dataclass
class BCQCriticConfig:
    critic_hidden: list[int] = positive(default_factory=lambda: [300, 400])
    num_critics: int = positive(2)
    critic_lr: float = positive(1e-3)
    #: target = lam * min + (1 - lam) * max over critics (clipped double-Q, softened).
    target_lambda: float = probability(0.75)
    gamma: float = checked(0.99, check="discount")
    #: share of the way the target network moves towards the critic per update.
    tau: float = checked(5e-4, check="fraction")
    #: next-action samples for the Bellman max.
    target_action_samples: int = positive(10)
    action_vae_latent: int = positive(16)
    action_vae_hidden: list[int] = positive(default_factory=lambda: [300, 400])
    action_vae_kl: float = non_negative(0.5)
    action_vae_lr: float = positive(1e-3)
    #: clip of the latent when sampling actions: keeps samples near the data's support.
    latent_clip: float = positive(0.5)
    #: floor the Bellman target at the demo's own discounted return-to-go. Every recorded
    #: action is known to achieve at least that return, so the floor is never wrong, and it
    #: carries a sparse success reward back over a 200-step demo in one update instead of
    #: the hundreds of slow target-network sweeps that a tau of 5e-4 needs. The batch-
    #: constrained max still lifts values above the floor where demos can be stitched.
    mc_return_floor: bool = True
    #: clip the Bellman target to the range any return can take (``DemoDataset.return_bounds``:
    #: [0, 1] for a sparse success reward). The max over sampled next actions is biased upwards,
    #: and bootstrapping compounds the bias on states near success, where the true values differ
    #: least; on Lift the critics scored held-cube states up to 1.24. With clipped targets the
    #: critic is never trained towards more than is achievable (off the data its outputs can
    #: still overshoot, so this narrows the over-estimation rather than removing it).
    clip_target_to_return_bounds: bool = False


def critic_batch(cfg: BCQCriticConfig, data, batch_size: int, gen: torch.Generator, encode: Callable) -> dict[str, torch.Tensor]:
    """A batch of transitions whose states are ``encode(obs_dict, gen)`` of their observation dicts:
    the critic's input features (the next states' without gradients: they only feed the target),
    with the demo's return-to-go (``mc_return_floor``) and the return bounds
    (``clip_target_to_return_bounds``) when ``cfg`` asks for them."""
    batch = data.transitions(batch_size, gen, gamma=cfg.gamma if cfg.mc_return_floor else None)
    batch["obs"] = encode(batch["obs"], gen)
    with torch.no_grad():
        batch["next_obs"] = encode(batch["next_obs"], gen)
    if cfg.clip_target_to_return_bounds:
        lo, hi = data.return_bounds(cfg.gamma)
        batch["return_bounds"] = torch.tensor([lo, hi])
    return batch


def bounded_target(y: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Bellman target floored at the demo's return-to-go and clipped to the return bounds,
    where the batch carries them (``critic_batch``)."""
    if "return" in batch:
        y = torch.maximum(y, batch["return"])
    if "return_bounds" in batch:
        y = y.clamp(float(batch["return_bounds"][0]), float(batch["return_bounds"][1]))
    return y


def td_update(critic: nn.Module, target: nn.Module, opt: torch.optim.Optimizer, obs: torch.Tensor, action: torch.Tensor,
              y: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One regression step of every critic of the ensemble towards ``y``, then the target critics
    a share ``tau`` of the way towards them; the critics' Q (N, B) and the summed loss."""
    q = critic(obs, action)
    loss = sum(F.mse_loss(qi, y) for qi in q)
    step_optimizer(opt, loss)
    with torch.no_grad():
        for p, tp in zip(critic.parameters(), target.parameters()):
            tp.lerp_(p, tau)
    return q, loss


class BCQCritic(nn.Module):
    def __init__(self, cfg: BCQCriticConfig, obs_dim: int, action_dim: int, encoder_params: Iterable[nn.Parameter] = ()):
        super().__init__()
        self.cfg = cfg
        self.critic = QEnsemble(obs_dim, action_dim, cfg.critic_hidden, cfg.num_critics)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.action_vae = ConditionalVAE(action_dim, obs_dim, cfg.action_vae_latent, cfg.action_vae_hidden)
        # ``encoder_params``: the weights of whoever computes the critic's input features, trained by the TD loss.
        self.critic_opt = adam([*self.critic.parameters(), *encoder_params], lr=cfg.critic_lr)
        self.vae_opt = adam(self.action_vae.parameters(), lr=cfg.action_vae_lr)

    def optimizers(self):
        return {"critic": self.critic_opt, "action_vae": self.vae_opt}

    def _combine(self, q: torch.Tensor) -> torch.Tensor:
        lam = self.cfg.target_lambda
        return lam * q.min(0).values + (1 - lam) * q.max(0).values

    def sample_actions(self, obs: torch.Tensor, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        return self.action_vae.sample(obs, n, gen, clip_z=self.cfg.latent_clip).clamp(-1.0, 1.0)

    @torch.no_grad()
    def state_value(self, obs: torch.Tensor, n: int, gen: torch.Generator | None = None, net: nn.Module | None = None):
        """V(s) = max over ``n`` data-supported actions of the combined critics' Q(s, a); obs (B, D) -> (B,)."""
        net = net or self.critic
        B = obs.shape[0]
        a = self.sample_actions(obs, n, gen)  # (B, n, A)
        s = obs.unsqueeze(1).expand(B, n, obs.shape[-1])
        q = net(s.reshape(B * n, -1), a.reshape(B * n, -1)).reshape(-1, B, n)
        return self._combine(q).max(-1).values

    def sample(self, data, batch_size: int, gen: torch.Generator, encode: Callable) -> dict[str, torch.Tensor]:
        return critic_batch(self.cfg, data, batch_size, gen, encode)

    def update(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, float]:
        vae_loss, vae_info = self.action_vae.loss(batch["action"], batch["obs"].detach(), self.cfg.action_vae_kl, gen)
        step_optimizer(self.vae_opt, vae_loss)
        with torch.no_grad():
            next_v = self.state_value(batch["next_obs"], self.cfg.target_action_samples, gen, net=self.target)
            y = bounded_target(batch["reward"] + self.cfg.gamma * (1.0 - batch["done"]) * next_v, batch)
        q, critic_loss = td_update(self.critic, self.target, self.critic_opt, batch["obs"], batch["action"], y, self.cfg.tau)
        return {
            "loss/critic": critic_loss.item(),
            "loss/action_vae": vae_loss.item(),
            "action_vae/kl": vae_info["kl"].item(),
            "value/q_mean": q.mean().item(),
            "value/target_mean": y.mean().item(),
        }


@dataclass
class BCQConfig(AlgoConfig, BCQCriticConfig):
    #: actions sampled from the action cVAE when acting; the highest-Q one is taken.
    policy_action_samples: int = positive(100)


@register("bcq")
class BCQ(Algo):
    Config = BCQConfig

    def __init__(self, cfg: BCQConfig, obs_spec, normalizers, action_dim: int):
        super().__init__(cfg, obs_spec, normalizers, action_dim)
        self.bcq = BCQCritic(cfg, self.obs_dim, action_dim, self.encoder.parameters())
        self._gen = torch.Generator().manual_seed(0)

    def optimizers(self):
        return self.bcq.optimizers()

    def train_step(self, data, gen):
        return self.bcq.update(self.bcq.sample(data, self.cfg.batch_size, gen, self.encode), gen)

    def reset_policy(self, gen=None):
        if gen is not None:
            self._gen = gen

    @torch.no_grad()
    def act(self, obs):
        n = self.cfg.policy_action_samples
        a = self.bcq.sample_actions(obs[None], n, self._gen)[0]  # (n, A)
        q = self.bcq._combine(self.bcq.critic(obs[None].expand(n, -1), a))
        return a[q.argmax()]
