"""Launch files: one YAML composes task (env), dataset, algorithm, training and evaluation.

```yaml
task: graph_reach            # envs/graph_reach.yaml
env: {horizon: 150}          # overrides of the task spec (optional)
data: {path: runs/data/graph_reach_suboptimal, obs_keys: [pos]}
algo: {name: iris, subgoal_horizon: 10, ...}   # the algorithm's typed config
train: {steps: 4000, checkpoint_every: 1000}
eval: {episodes: 50}
deploy: {arm: robosuite, controller: controllers/robosuite_panda_osc.yaml, hz: 20}
```
Unknown keys are errors that name the file and key, so a misspelt setting never silently
falls back to a default; every number says what it may be (``positive`` ...), so ``steps: -100``,
``batch_size: 0`` or ``checkpoint_every: true`` are errors naming the field, not a crash or a
silently empty run.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robolearn.config import ConfigError, apply_overrides, checked, from_dict, load_yaml, positive
from robolearn.paths import REPO_ROOT


@dataclass
class DataConfig:
    path: str = ""
    #: observation keys fed to the networks, in order; default: every key in meta.json.
    obs_keys: list[str] | None = None
    #: which split of meta.json to train on (all episodes when the folder has none).
    split: str = "train"


LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    steps: int = positive(5000)
    log_every: int = positive(50)
    checkpoint_every: int = positive(1000)
    #: torch intra-op threads; fixed so the same seed gives the same weights.
    threads: int = positive(1)
    #: learning-rate schedule over ``steps``: ``constant``, or ``cosine`` (every optimiser's lr
    #: falls from its configured value to 0 at the last step). At a constant 1e-3 a policy's final
    #: checkpoint is wherever the last noisy updates left it; annealed, the last updates settle.
    #: On Lift that raised BC-RNN's, BC's and BCQ's mean success and lowered IRIS's (BENCHMARKS.md).
    #: A function of the step alone, so resuming reproduces it.
    lr_schedule: str = checked("constant", choices=LR_SCHEDULES)
    #: which of the algorithm's optimisers follow ``lr_schedule`` (None: all of them), e.g.
    #: ``[low]`` for IRIS's low-level policy alone; the rest keep their configured rate.
    lr_schedule_optimizers: list[str] | None = None


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier on the configured learning rates for the update that follows ``step`` updates."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
    raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {list(LR_SCHEDULES)}")


@dataclass
class EvalConfig:
    episodes: int = positive(50)
    #: steps per evaluation episode (None: the task's own horizon).
    horizon: int | None = positive(None)
    workers: int = positive(1)


@dataclass
class LaunchConfig:
    task: str
    data: DataConfig = field(default_factory=DataConfig)
    algo: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    env: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)
    #: the launch file this came from, for error messages (set by load_launch, never by the YAML).
    source: str = field(default="", metadata={"config_key": False})

    @property
    def algo_name(self) -> str:
        if "name" not in self.algo:
            raise ConfigError(self.source, "algo.name", "missing; expected one of bc, bc_rnn, bcq, hbc, iris")
        return str(self.algo["name"])

    @property
    def algo_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.algo.items() if k != "name"}

    def data_path(self) -> Path:
        if not self.data.path:
            raise ConfigError(self.source, "data.path", "missing; name the demo folder to train on")
        return resolve_path(self.data.path)


def resolve_path(p: str | os.PathLike) -> Path:
    """Relative paths are taken from the working directory, then from the repository root."""
    path = Path(p)
    if path.is_absolute() or path.exists():
        return path
    alt = REPO_ROOT / path
    return alt if alt.exists() else path


def load_launch(path: str | os.PathLike, overrides: list[str] | None = None) -> LaunchConfig:
    raw = apply_overrides(load_yaml(path), overrides or [])
    if "task" not in raw:
        raise ConfigError(path, "task", "missing; name the task (e.g. graph_reach, lift, can)")
    cfg = from_dict(LaunchConfig, raw, str(path))
    cfg.source = str(path)
    return cfg
