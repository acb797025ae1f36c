"""The algorithm contract and registry.

An algorithm is a typed config dataclass plus an ``nn.Module`` that owns its networks and
optimisers and implements two halves:

- training: ``train_step(data, gen) -> metrics`` samples what it needs from the
  in-memory ``DemoDataset`` (transitions, sequences or goal windows) and takes one step;
- acting: ``reset_policy()`` and ``act(obs) -> action`` on one *normalised* observation
  vector, with runtime state (RNN state, current subgoal) kept on the module.

Policies that think now and then and act every step (hierarchical ones re-planning a subgoal,
chunked ones predicting several actions at once) set ``plans`` and split acting into the
planning interface: ``needs_plan(step)`` (a pure schedule: does the policy think before acting
at episode step ``step``?), ``plan(obs)`` (the expensive thinking; returns a plan and changes no
acting state), ``adopt(plan)`` and ``act_on_plan(obs)`` (the cheap step, every step). Their
``act`` is ``act_planned``, the synchronous composition; a runner that plans elsewhere (in a
background thread: ``robolearn.hal.pipelined``) keeps the same schedule by asking ``needs_plan``.

The runtime ``Policy`` in ``robolearn/policy.py`` wraps any algorithm with the observation
flattening and normalisation, so checkpoints only store weights, config and normalisers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robolearn.config import ConfigError, from_dict, positive

_MODULES = {
    "bc": "robolearn.algos.bc",
    "bc_rnn": "robolearn.algos.bc_rnn",
    "bcq": "robolearn.algos.bcq",
    "hbc": "robolearn.algos.hbc",
    "iris": "robolearn.algos.iris",
}
_REGISTRY: dict[str, type["Algo"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def algo_class(name: str, source: str = "algo") -> type["Algo"]:
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        raise ConfigError(source, "algo.name", f"unknown algorithm {name!r}; known: {sorted(_MODULES)}")
    return _REGISTRY[name]


def algo_names() -> list[str]:
    return sorted(_MODULES)


@dataclass
class AlgoConfig:
    """Fields every algorithm has. Every number of every algorithm config declares what it may be
    (``positive``, ``non_negative``, ...); ``from_dict`` refuses the rest, since a batch size of 0
    or a negative learning rate trains to NaN rather than failing."""

    batch_size: int = positive(100)
    lr: float = positive(1e-3)


class Algo(nn.Module):
    name: ClassVar[str]
    Config: ClassVar[type[AlgoConfig]]
    #: True for algorithms with the planning interface (``needs_plan``/``plan``/``adopt``/``act_on_plan``).
    plans: ClassVar[bool] = False

    def __init__(self, cfg: AlgoConfig, obs_dim: int, action_dim: int):
        super().__init__()
        self.cfg = cfg
        self.obs_dim = obs_dim
        self.action_dim = action_dim

    @classmethod
    def build(cls, cfg_dict: dict[str, Any], obs_dim: int, action_dim: int, source: str = "algo") -> "Algo":
        cfg = from_dict(cls.Config, cfg_dict, source)
        return cls(cfg, obs_dim, action_dim)

    # --- training -----------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, data, gen: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    # --- acting -----------------------------------------------------------------------------
    def reset_policy(self, gen: torch.Generator | None = None) -> None:
        """Clear runtime state at the start of an episode."""

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """One normalised observation vector (D,) -> one action (A,) in [-1, 1]."""
        raise NotImplementedError

    def current_goal(self) -> torch.Tensor | None:
        """The normalised subgoal being pursued, for hierarchical policies."""
        return None

    # --- planning: think now and then, act every step ---------------------------------------
    #: Actions taken since ``reset_policy``: the step ``needs_plan`` is asked about next.
    steps: int = 0

    def needs_plan(self, step: int) -> bool:
        """Whether the policy plans before acting at episode step ``step``. A function of ``step``
        alone, so a runner can look ahead and start a plan early."""
        return False

    def plan(self, obs: torch.Tensor) -> Any:
        """Think: a new plan from one normalised observation. Draws from the policy's generator but
        leaves the acting state alone, so it may run while the policy acts on its current plan."""
        raise NotImplementedError(f"{type(self).__name__} does not plan")

    def adopt(self, plan: Any) -> None:
        """Make ``plan`` the one ``act_on_plan`` follows from this step on."""
        raise NotImplementedError(f"{type(self).__name__} does not plan")

    def act_on_plan(self, obs: torch.Tensor) -> torch.Tensor:
        """Act: one cheap step on the adopted plan; advances ``steps``."""
        return self.act(obs)

    def act_planned(self, obs: torch.Tensor) -> torch.Tensor:
        """Plan when the schedule says so, then act: what ``act`` is for planning algorithms."""
        if self.needs_plan(self.steps):
            self.adopt(self.plan(obs))
        return self.act_on_plan(obs)


def step_optimizer(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        for group in opt.param_groups:
            nn.utils.clip_grad_norm_(group["params"], clip)
    opt.step()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the unmasked steps of (B, T, A) sequences."""
    err = ((pred - target) ** 2).sum(-1) * mask
    return err.sum() / mask.sum().clamp(min=1.0)
