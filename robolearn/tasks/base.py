"""Task environments and scripted operators, behind a small registry.

A ``TaskEnv`` is what training data is recorded from and what evaluation rolls out in:
a reset distribution, a success test and a reward on top of an arm (or, for Graph Reach,
a point). Operators implement the same ``reset``/``act`` interface as a policy, so a
scripted operator, a teleoperation device and a trained policy are interchangeable
command sources.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from robolearn.config import ConfigError, from_dict, load_yaml
from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.paths import ENVS_DIR


@dataclass
class StepResult:
    obs: dict[str, np.ndarray]
    reward: float
    done: bool
    success: bool
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TaskEnv(Protocol):
    name: str
    horizon: int
    control_hz: float
    obs_spec: dict[str, ObsFieldSpec]
    action_spec: ActionSpec

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]: ...

    def step(self, action: np.ndarray) -> StepResult: ...

    def render(self, width: int = 256, height: int = 256, goal: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
        """An RGB frame (H, W, 3) uint8, with the policy's current subgoal drawn in when given; None if unsupported."""
        ...

    def close(self) -> None: ...


class CommandSource(Protocol):
    """Anything that turns observations into commands: a policy, an operator, a device."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


_ENV_FACTORIES: dict[str, Callable[..., TaskEnv]] = {}
_ENV_CONFIGS: dict[str, type] = {}  # task -> its typed settings (a dataclass with control_hz)
_OPERATOR_FACTORIES: dict[str, Callable[..., CommandSource]] = {}
_TASK_MODULES = {
    "graph_reach": "robolearn.tasks.graph_reach",
    "lift": "robolearn.tasks.lift",
    "can": "robolearn.tasks.can",
    "pybullet_lift": "robolearn.tasks.pybullet_lift",
}


def register_env(name: str, config: type | None = None):
    """Register a task's factory and, as ``config``, the dataclass its settings are read into:
    ``task_control_hz`` reads the task's rate from it without building the scene."""

    def deco(fn):
        _ENV_FACTORIES[name] = fn
        if config is not None:
            _ENV_CONFIGS[name] = config
        return fn

    return deco


def register_operator(task: str):
    """Register ``factory(env, kind: str, rng: np.random.Generator) -> CommandSource`` for a task."""

    def deco(fn):
        _OPERATOR_FACTORIES[task] = fn
        return fn

    return deco


def _import_task(name: str) -> None:
    import importlib

    if name not in _ENV_FACTORIES and name in _TASK_MODULES:
        importlib.import_module(_TASK_MODULES[name])


def env_spec(name: str) -> dict[str, Any]:
    """The task spec from ``envs/<name>.yaml`` (empty when the task has none), without its
    ``defaults:`` block, which holds launch-file sections (robolearn/launch.py reads it)."""
    path = ENVS_DIR / f"{name}.yaml"
    spec = load_yaml(path) if path.exists() else {}
    spec.pop("defaults", None)
    return spec


def make_env(name: str, **overrides: Any) -> TaskEnv:
    _import_task(name)
    if name not in _ENV_FACTORIES:
        raise ConfigError("task", name, f"unknown task; known: {sorted(set(_TASK_MODULES) | set(_ENV_FACTORIES))}")
    return _ENV_FACTORIES[name](**task_settings(name, overrides))


def task_settings(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Task ``name``'s settings: ``envs/<name>.yaml`` with ``overrides`` (None values skipped) on top."""
    spec = env_spec(name)
    spec.update({k: v for k, v in overrides.items() if v is not None})
    return spec


def task_control_hz(name: str, overrides: dict[str, Any], source: str) -> float | None:
    """The control rate task ``name`` runs at with ``overrides`` over ``envs/<name>.yaml``, read
    from its settings alone (no scene is built); None for a task registered without settings."""
    _import_task(name)
    config = _ENV_CONFIGS.get(name)
    if config is None:
        return None
    return float(from_dict(config, task_settings(name, overrides), source).control_hz)


def make_operator(name: str, env: TaskEnv, kind: str, rng: np.random.Generator) -> CommandSource:
    _import_task(name)
    if name not in _OPERATOR_FACTORIES:
        raise ConfigError("task", name, "this task has no scripted operators")
    return _OPERATOR_FACTORIES[name](env, kind, rng)
