"""Launch files: one YAML composes task (env), dataset, algorithm, training and evaluation.

```yaml
task: graph_reach            # envs/graph_reach.yaml
env: {horizon: 150}          # overrides of the task spec (optional)
data: {path: runs/data/graph_reach_suboptimal}
algo: {name: iris, subgoal_horizon: 10, ...}   # the algorithm's typed config
train: {steps: 4000, checkpoint_every: 1000}
eval: {episodes: 50}
deploy: {arm: franka, controller: controllers/franka.yaml, max_steps: 400}
```
What every launch file of a task would repeat (its observation keys, evaluation horizon, its own
arm and controller) is stated once, in the ``defaults:`` block of ``envs/<task>.yaml``, and
``load_launch`` merges it under the launch file: the launch file wins over the defaults and
``--set`` wins over both. So a launch file is the task, the data and what differs in the
algorithm. The task's ``control_hz`` is its one control rate: ``deploy.hz`` follows it, and a
launch file stating another rate is refused.

Unknown keys are errors that name the file and key, so a misspelt setting never silently
falls back to a default; every number says what it may be (``positive`` ...), so ``steps: -100``,
``batch_size: 0`` or ``checkpoint_every: true`` are errors naming the field, not a crash or a
silently empty run.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from robolearn.config import ConfigError, apply_overrides, checked, from_dict, load_yaml, non_negative, positive
from robolearn.paths import ENVS_DIR, REPO_ROOT


@dataclass
class DataConfig:
    path: str = ""
    #: observation keys fed to the networks, in order; default: every key in meta.json.
    obs_keys: list[str] | None = None
    #: which split of meta.json to train on (all episodes when the folder has none).
    split: str = "train"
    #: train on the successful episodes alone (imitating what worked). The default keeps every
    #: episode: offline RL (BCQ, IRIS) learns its value from the failures' zero rewards too.
    success_only: bool = False


LR_SCHEDULES = ("constant", "cosine")
AMP_DTYPES = ("bfloat16", "float16")
#: ``train.device`` spellings: a kind, optionally ``:index`` for CUDA.
DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")
_DEVICE = re.compile(rf"({'|'.join(DEVICE_KINDS)})(?::(\d+))?")


def parse_device(text: object, source: str | os.PathLike, field_name: str = "train.device") -> tuple[str, int | None]:
    """``train.device`` as (kind, CUDA index or None); anything else is a ConfigError naming the field.
    Whether the device exists is decided where training starts (``robolearn.distributed``)."""
    match = _DEVICE.fullmatch(text) if isinstance(text, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ConfigError(source, field_name, f"expected auto, cpu, cuda, cuda:N or mps; got {text!r}")
    index = match.group(2)
    return match.group(1), None if index is None else int(index)


@dataclass
class TrainConfig:
    steps: int = positive(5000)
    log_every: int = positive(50)
    checkpoint_every: int = positive(1000)
    #: torch intra-op threads per process (None: the cores this process may run on,
    #: ``os.sched_getaffinity``, divided between the local ranks). CPU reductions split their
    #: work by thread count, so the same seed and the same thread count give the same weights;
    #: a different count may differ in the last bits.
    threads: int | None = positive(None)
    #: where training runs: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``,
    #: ``cuda``, ``cuda:N`` or ``mps``. With several ranks, ``cuda`` gives each rank the GPU of
    #: its local rank. Checkpoints hold CPU tensors and load on any device.
    device: str = "auto"
    #: mixed precision (CUDA only: refused on any other device rather than silently ignored):
    #: autocast in ``amp_dtype``; float16 also scales the losses (GradScaler) against underflow.
    amp: bool = False
    amp_dtype: str = checked("bfloat16", choices=AMP_DTYPES)
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
class DeployPerception:
    """``deploy.perception``: the policy's ``object`` estimated from a camera's frames
    (robolearn/perceived.py) instead of read from a simulator. ``marker`` is typed as
    ``robolearn.perception.config.MarkerConfig`` and the calibration file by
    ``robolearn.hal.cameras.calibration_file`` when deploy loads the launch file (both sit above this module)."""

    #: the camera view (a key of ``deploy.cameras.views`` or of the controller file's views) it reads.
    view: str = checked()
    #: marker: ArUco markers on the object; ground_truth: the simulator's own pose (simulated
    #: tasks only: the control that runs the same loop on exact poses).
    estimator: str = checked("marker", choices=("marker", "ground_truth"))
    #: the object's markers (``MarkerConfig``: markers, size_m, dictionary, ...); None: the
    #: simulated task's own (the markers its scene carries).
    marker: dict[str, Any] | None = None
    #: the view's calibration file (``robolearn calibrate``): its intrinsics, and its extrinsic
    #: (``frame: base``) as the camera's pose in the arm's base frame (None: the file the view's
    #: own ``calibration:`` names). Needed by ``marker``.
    calibration: str | None = None
    #: how long the last estimate may stand in for an unseen marker; past it the arm holds and
    #: the episode fails (0: fail at the first frame without an estimate).
    hold_s: float = non_negative(0.5)
    #: a calibration file (or its extrinsic) older than this is refused (None: no age limit,
    #: for a simulated camera, which nothing can knock).
    max_calibration_age_days: float | None = positive(30.0)


@dataclass
class DeployConfig:
    """``robolearn deploy``'s settings (robolearn/deploy.py). ``arm`` is checked there against the
    backend registry (robolearn/hal/factory.py), which sits above this module."""

    #: the arm backend: noop | pybullet | robosuite | remote | ur | franka.
    arm: str = ""
    #: controller YAML (None: the arm's own file).
    controller: str | None = None
    #: the control loop's rate. A task's rate is its ``control_hz`` (envs/<task>.yaml), which
    #: ``load_launch`` fills in here; None without a task: the controller's rate.
    hz: float | None = positive(None)
    max_steps: int = positive(400)
    episodes: int = positive(1)
    #: the arm server (remote only; default: the controller's params).
    host: str | None = None
    port: int | None = positive(None)
    #: simulated scenes: reset seed of the first episode.
    seed: int = non_negative(0)
    #: end an episode when the arm or task can tell success.
    stop_on_success: bool = True
    #: SCHED_FIFO priority of the control loop (0: normal scheduling). Real arms: e.g. 50.
    rt_priority: int = non_negative(0)
    #: IRIS/HBC: plan subgoals in a background thread a few steps early (no overruns at
    #: re-plans; the goal comes from a slightly older observation). See robolearn/hal/pipelined.py.
    pipelined_replan: bool = False
    #: cameras of this deployment, a ``cameras:`` section as in controller files
    #: (robolearn/hal/cameras/config.py; typed when deploy loads the file), built with the
    #: controller file's views inside the shield. Calibration paths: from the working directory,
    #: then the repository root, like every path of a launch file.
    cameras: dict[str, Any] | None = None
    #: estimate the policy's ``object`` from a camera (None: the arm's own observation).
    perception: DeployPerception | None = None
    #: keep the camera frames in the recorded demo folder (false: a simulated run keeps its
    #: states, from which ``robolearn replay --video`` renders it again).
    record_images: bool = True


@dataclass
class LaunchConfig:
    task: str
    data: DataConfig = field(default_factory=DataConfig)
    algo: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    env: dict[str, Any] = field(default_factory=dict)
    #: None when neither the launch file nor the task's defaults have a deploy section.
    deploy: DeployConfig | None = None
    #: the launch file this came from, for error messages (set by load_launch, never by the YAML).
    source: str = field(default="", metadata={"config_key": False})

    @property
    def algo_name(self) -> str:
        if "name" not in self.algo:
            raise ConfigError(self.source, "algo.name", "missing; expected one of bc, bc_rnn, bcq, hbc, iql, iris")
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


def task_file(task: str) -> Path:
    return ENVS_DIR / f"{task}.yaml"


def task_defaults(task: str) -> dict[str, Any]:
    """The ``defaults:`` block of ``envs/<task>.yaml``: launch-file sections every launch file of
    the task shares (empty when the task has no file or no block)."""
    path = task_file(task)
    if not path.is_file():
        return {}
    block = load_yaml(path).get("defaults") or {}
    if not isinstance(block, Mapping):
        raise ConfigError(path, "defaults", f"expected a mapping of launch-file sections, got {block!r}")
    if "task" in block:
        raise ConfigError(path, "defaults.task", "a task's defaults cannot name another task")
    # Typed on its own first, so a bad default is named in the file that states it.
    from_dict(LaunchConfig, {"task": task, **block}, str(path), field_prefix="defaults.")
    return dict(block)


def task_control_hz(task: str, env: Mapping[str, Any], source: str) -> float | None:
    """The task's control rate: ``control_hz`` in the launch file's ``env:`` or else in
    ``envs/<task>.yaml``; None when neither states one (a task without a file, e.g. ``noop``)."""
    path = task_file(task)
    if "control_hz" in env:
        rate, where = env["control_hz"], (source, "env.control_hz")
    else:
        rate, where = (load_yaml(path) if path.is_file() else {}).get("control_hz"), (path, "control_hz")
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(*where, f"expected a rate in Hz greater than 0, got {rate!r}")
    return float(rate)


def merged(defaults: Mapping[str, Any], launch: Mapping[str, Any]) -> dict[str, Any]:
    """``launch`` over ``defaults``, mapping by mapping (a list or a value replaces the default).

    A launch file naming another ``deploy.arm`` than the task's takes none of the task's deploy
    defaults: a controller file and its settings belong to one arm."""
    out = copy.deepcopy(dict(defaults))
    if _names_another_arm(launch.get("deploy"), out.get("deploy")):
        del out["deploy"]
    for key, value in launch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _names_another_arm(own: Any, default: Any) -> bool:
    if not isinstance(own, Mapping) or not isinstance(default, Mapping):
        return False
    return "arm" in own and own["arm"] != default.get("arm")


def _deploy_at_task_rate(cfg: LaunchConfig) -> None:
    """``deploy.hz`` follows the task's rate; a launch file stating another one is refused."""
    rate = task_control_hz(cfg.task, cfg.env, cfg.source)
    if cfg.deploy is None or rate is None:
        return
    if cfg.deploy.hz is None:
        cfg.deploy.hz = rate
    elif abs(cfg.deploy.hz - rate) > 1e-9:
        raise ConfigError(cfg.source, "deploy.hz", f"{cfg.deploy.hz:g} differs from task {cfg.task!r}'s control_hz "
                          f"{rate:g} ({task_file(cfg.task)}); the task states its rate once (leave deploy.hz out)")


def load_launch(path: str | os.PathLike, overrides: list[str] | None = None) -> LaunchConfig:
    """The launch file over its task's defaults, with ``overrides`` (``--set``) over both."""
    own = apply_overrides(load_yaml(path), overrides or [])
    if "task" not in own:
        raise ConfigError(path, "task", "missing; name the task (e.g. graph_reach, lift, can)")
    defaults = task_defaults(own["task"]) if isinstance(own["task"], str) else {}
    cfg = from_dict(LaunchConfig, merged(defaults, own), str(path))
    cfg.source = str(path)
    parse_device(cfg.train.device, cfg.source)
    _deploy_at_task_rate(cfg)
    return cfg
