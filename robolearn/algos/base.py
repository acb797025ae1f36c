"""The algorithm contract and registry.

An algorithm is a typed config dataclass plus an ``nn.Module`` that owns its networks and
optimisers and implements two halves:

- training: ``train_step(data, gen) -> metrics`` samples what it needs from the
  in-memory ``DemoDataset`` (transitions, sequences or goal windows: observations as dicts of
  per-key tensors), turns the observations into features with its ``encoder`` and takes one step;
- acting: ``reset_policy()`` and ``act(features) -> action`` on the features of one
  observation (``encoder`` of the observation dict), with runtime state (RNN state, current
  subgoal) kept on the module.

Every algorithm is built from an observation spec (ordered keys with shape and dtype) and the
dataset's per-key normalisers; ``self.encoder`` (``robolearn.models.encoders``) maps observation
dicts to ``obs_dim`` features, and the networks are sized from ``obs_dim``.

Policies that think now and then and act every step (hierarchical ones re-planning a subgoal,
chunked ones predicting several actions at once) set ``plans`` and split acting into the
planning interface: ``needs_plan(step)`` (a pure schedule: does the policy think before acting
at episode step ``step``?), ``plan(obs)`` (the expensive thinking; returns a plan and changes no
acting state), ``adopt(plan)`` and ``act_on_plan(obs)`` (the cheap step, every step). Their
``act`` is ``act_planned``, the synchronous composition; a runner that plans elsewhere (in a
background thread: ``robolearn.hal.pipelined``) keeps the same schedule by asking ``needs_plan``.

The runtime ``Policy`` in ``robolearn/policy.py`` feeds any algorithm observation dicts through
its encoder, so checkpoints store weights, config, the observation spec and the normalisers.
"""
from __future__ import annotations

import contextlib
import importlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping

import torch
from torch import nn

from robolearn.config import ConfigError, from_dict, positive
from robolearn.models.encoders import Normalizer, ObservationEncoder, ObsSpec
from robolearn.models.vision import ImageEncoderConfig

_MODULES = {
    "bc": "robolearn.algos.bc",
    "bc_rnn": "robolearn.algos.bc_rnn",
    "bcq": "robolearn.algos.bcq",
    "diffusion_policy": "robolearn.algos.diffusion_policy",
    "hbc": "robolearn.algos.hbc",
    "iql": "robolearn.algos.iql",
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


#: Sources of the errors an algorithm's constructor raises (its encoder, its own key checks);
#: ``build`` names its caller's source instead.
BUILD_SOURCES = ("algo", "observation encoder")


@dataclass
class AlgoConfig:
    """Fields every algorithm has. Every number of every algorithm config declares what it may be
    (``positive``, ``non_negative``, ...); ``from_dict`` refuses the rest, since a batch size of 0
    or a negative learning rate trains to NaN rather than failing."""

    batch_size: int = positive(100)
    lr: float = positive(1e-3)
    #: how image keys are encoded (unused without them); its weights train with the policy's loss.
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)


class Algo(nn.Module):
    name: ClassVar[str]
    Config: ClassVar[type[AlgoConfig]]
    #: True for algorithms with the planning interface (``needs_plan``/``plan``/``adopt``/``act_on_plan``).
    plans: ClassVar[bool] = False
    #: Settings this algorithm no longer has: key -> the value that meant what the algorithm
    #: does today. Checkpoints and launch files that state that value still load (the key is
    #: dropped); any other value is refused, since the behaviour it asked for is gone.
    retired: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: AlgoConfig, obs_spec: ObsSpec, normalizers: Mapping[str, Normalizer], action_dim: int):
        super().__init__()
        self.cfg = cfg
        training_only = set(self.training_only_keys(cfg))
        #: the keys the policy reads when acting, and those only training reads (``training_only_keys``).
        self.encoder = ObservationEncoder({k: s for k, s in obs_spec.items() if k not in training_only}, normalizers,
                                          cfg.image_encoder)
        self.training_only_spec: ObsSpec = {k: s for k, s in obs_spec.items() if k in training_only}
        self.training_only_normalizers = {k: normalizers[k] for k in self.training_only_spec if k in normalizers}
        self.obs_dim = self.encoder.out_dim
        self.action_dim = action_dim

    @classmethod
    def training_only_keys(cls, cfg: AlgoConfig) -> list[str]:
        """Recorded keys this algorithm reads in training but never when acting (none by default):
        the demo folder must hold them, a cell running the policy need not observe them."""
        return []

    @classmethod
    def build(cls, cfg_dict: dict[str, Any], obs_spec: ObsSpec, normalizers: Mapping[str, Normalizer], action_dim: int,
              source: str = "algo") -> "Algo":
        cfg = from_dict(cls.Config, cls.without_retired(cfg_dict, source), source)
        try:
            return cls(cfg, obs_spec, normalizers, action_dim)
        except ConfigError as exc:
            if exc.source not in BUILD_SOURCES:
                raise
            raise ConfigError(source, exc.field, exc.problem) from None

    @classmethod
    def without_retired(cls, cfg_dict: Mapping[str, Any], source: str) -> dict[str, Any]:
        out = dict(cfg_dict or {})
        for key, today in cls.retired.items():
            if key in out:
                if out[key] != today:
                    raise ConfigError(source, key, f"was removed ({out[key]!r} is no longer built; only {today!r}, "
                                                   "the default, remains): drop the key, and retrain a checkpoint that used it")
                del out[key]
        return out

    def encode(self, obs: Mapping[str, torch.Tensor], gen: torch.Generator | None = None) -> torch.Tensor:
        """Observation dict (per-key tensors with any leading dimensions) -> features (..., obs_dim);
        ``gen`` draws the training augmentation (random crops of image keys)."""
        return self.encoder(obs, gen)

    # --- training -----------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, data, gen: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    # --- acting -----------------------------------------------------------------------------
    def reset_policy(self, gen: torch.Generator | None = None) -> None:
        """Clear runtime state at the start of an episode."""

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The features of one observation (obs_dim,) -> one action (A,) in [-1, 1]."""
        raise NotImplementedError

    def current_goal(self) -> torch.Tensor | None:
        """The subgoal being pursued (features of the goal keys), for hierarchical policies."""
        return None

    # --- planning: think now and then, act every step ---------------------------------------
    #: Actions taken since ``reset_policy``: the step ``needs_plan`` is asked about next.
    steps: int = 0

    def needs_plan(self, step: int) -> bool:
        """Whether the policy plans before acting at episode step ``step``. A function of ``step``
        alone, so a runner can look ahead and start a plan early."""
        return False

    def plan(self, obs: torch.Tensor) -> Any:
        """Think: a new plan from one observation's features. Draws from the policy's generator but
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


class OptimizerStep:
    """One update of one optimiser from a loss: backward, the gradients made ready, clip, step.

    Every algorithm updates its networks through ``step_optimizer`` and so through this one
    path, which training fills in (``optimizer_steps``): ``average_gradients`` (data-parallel
    training: ``robolearn.distributed.GradientAverage``) runs between ``backward()`` and
    ``step()`` on the parameters that have gradients, and ``scalers`` (float16 mixed
    precision: a GradScaler per optimiser) scale the loss and unscale the gradients before
    clipping. Without either it is the plain zero_grad / backward / clip / step."""

    def __init__(self, average_gradients: Callable[[list[torch.Tensor]], None] | None = None,
                 scalers: Mapping[torch.optim.Optimizer, Any] | None = None):
        self.average_gradients = average_gradients
        self.scalers = dict(scalers or {})

    def __call__(self, opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(opt)
        # Backward outside autocast (training steps run inside it): its ops follow the forward's dtypes.
        with torch.autocast(loss.device.type, enabled=False):
            (scaler.scale(loss) if scaler is not None else loss).backward()
        if self.average_gradients is not None:
            self.average_gradients([p for g in opt.param_groups for p in g["params"] if p.grad is not None])
        if scaler is not None:
            scaler.unscale_(opt)
        if clip:
            for group in opt.param_groups:
                nn.utils.clip_grad_norm_(group["params"], clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()


_OPTIMIZER_STEP: ContextVar[OptimizerStep] = ContextVar("optimizer_step", default=OptimizerStep())


@contextlib.contextmanager
def optimizer_steps(step: OptimizerStep) -> Iterator[None]:
    """``step_optimizer`` takes its updates through ``step`` inside this block."""
    token = _OPTIMIZER_STEP.set(step)
    try:
        yield
    finally:
        _OPTIMIZER_STEP.reset(token)


def step_optimizer(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
    """The one way an algorithm updates a network: through the training's ``OptimizerStep``."""
    _OPTIMIZER_STEP.get()(opt, loss, clip)


_ACTING_ONLY: ContextVar[bool] = ContextVar("acting_only", default=False)


@contextlib.contextmanager
def acting_only() -> Iterator[None]:
    """Algorithms built inside this block defer their optimisers (``adam`` returns a
    ``DeferredOptimizer``): a checkpoint loaded to act never steps one."""
    token = _ACTING_ONLY.set(True)
    try:
        yield
    finally:
        _ACTING_ONLY.reset(token)


def _build_adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    # foreach: the multi-tensor update computes the per-tensor loop's numbers bit for bit
    # (tests/test_algos.py) in about 30 % less CPU time (docs/decisions.md, Training).
    return torch.optim.Adam(params, lr=lr, foreach=True)


def adam(params, lr: float) -> torch.optim.Optimizer:
    """The Adam every algorithm trains its networks with; a ``DeferredOptimizer`` inside ``acting_only()``."""
    return optimizer(params, lambda built: _build_adam(built, lr))


def optimizer(params, build: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """``build(params)``, or inside ``acting_only()`` a ``DeferredOptimizer`` that builds it on first use
    (for algorithms whose optimiser is not ``adam``'s, e.g. AdamW with weight decay)."""
    params = list(params)
    if _ACTING_ONLY.get():
        return DeferredOptimizer(params, build)  # type: ignore[return-value]
    return build(params)


class DeferredOptimizer:
    """An Adam built on first use. The first optimiser a process builds imports ``torch._dynamo``
    (2-4 s on the reference machine), which every loaded policy and every evaluation worker paid
    for an optimiser it never steps. Anything that does use one (a checkpoint saved from a loaded
    policy, a resumed optimiser state) builds the real optimiser then, and every attribute reads
    through to it."""

    _OWN = ("_params", "_build", "_optimizer")

    def __init__(self, params: list[torch.Tensor], build: Callable[[list[torch.Tensor]], torch.optim.Optimizer]):
        self._params, self._build = params, build
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def built(self) -> bool:
        return self._optimizer is not None

    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = self._build(self._params)
        return self._optimizer

    def __getattr__(self, name: str) -> Any:
        if name in DeferredOptimizer._OWN:  # not yet set (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer(), name)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the unmasked steps of (B, T, A) sequences."""
    err = ((pred - target) ** 2).sum(-1) * mask
    return err.sum() / mask.sum().clamp(min=1.0)
