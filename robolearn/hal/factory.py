"""make_arm: build any Arm backend from a controller YAML, wrapped in the SafetyShield.

Why one factory: ``robolearn deploy``, ``robolearn serve-arm`` and the benchmarks name an
arm by a word (noop, pybullet, robosuite, remote, ur, franka) and a controller file, and
must all get the same shield from the same file. Backends are imported lazily by name, so
a missing optional dependency (robosuite, ur_rtde, franky) only affects the arm that needs
it, with an error that says what to install.

Controller YAML (``controllers/<arm>.yaml``)::

    arm: noop                 # backend; must match the name asked for, when both are given
    control_hz: 20
    pos_scale: 0.05           # metres per command unit (delta position)
    rot_scale: 0.5            # radians per command unit (delta axis-angle)
    params: {...}             # backend constructor arguments
    shield: {...}             # ShieldConfig; on unless `enabled: false`
    server: {heartbeat_ms: 300}   # read by `robolearn serve-arm`

The robosuite controller file (``controllers/robosuite_panda_osc.yaml``) has its own
layout (``control_freq``, ``controller``) and shares ``pos_scale``, ``rot_scale`` and
``shield`` with this one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.config import ConfigError, load_yaml
from robolearn.hal.arm import Arm, ArmSpec, Observation
from robolearn.paths import CONTROLLERS_DIR

log = logging.getLogger(__name__)

BACKENDS = ("noop", "pybullet", "robosuite", "remote", "ur", "franka")
_OWN_KEYS = {"arm", "control_hz", "pos_scale", "rot_scale", "params", "shield", "server", "description"}
DEFAULT_CONTROLLERS = {
    "noop": "noop.yaml",
    "pybullet": "pybullet_panda.yaml",
    "robosuite": "robosuite_panda_osc.yaml",
    "remote": "remote.yaml",
    "ur": "ur5e.yaml",
    "franka": "franka.yaml",
}


class TaskBoundArm:
    """An arm that belongs to a simulated task: ``home()`` starts a new episode through the
    task's reset distribution and ``success()`` asks the task. Everything else goes to the arm.

    Why: in simulation the cube's placement and the success test live in the TaskEnv, but
    deployment drives Arms; this joins the two without the loop knowing about tasks."""

    def __init__(self, env: Any, seed: int | None = None):
        self.env = env
        self.arm = env.arm
        self.spec: ArmSpec = self.arm.spec
        self._seed = seed
        self._episode = 0
        # Unseeded runs still draw each episode's seed themselves, so that it can be recorded
        # (teleop stores it with the episode) and the episode replayed exactly later.
        self._entropy = np.random.default_rng()
        #: The seed of the current episode's reset (object placement, joint noise).
        self.last_reset_seed: int | None = None

    @property
    def connected(self) -> bool:
        return self.arm.connected

    def connect(self) -> None:
        self.arm.connect()

    def observe(self) -> Observation:
        return self.arm.observe()

    def eef_position(self) -> np.ndarray:
        from robolearn.hal.shield import measure_eef

        return measure_eef(self.arm)

    def send(self, command: np.ndarray) -> np.ndarray:
        return self.arm.send(command)

    def home(self) -> Observation:
        if self._seed is None:
            seed = int(self._entropy.integers(0, 2**31 - 1))
        else:
            seed = self._seed + self._episode
        self._episode += 1
        self.env.reset(seed=seed)
        self.last_reset_seed = seed
        return self.arm.observe()

    def stop(self) -> None:
        self.arm.stop()

    def close(self) -> None:
        self.env.close()

    def success(self) -> bool:
        return bool(self.env.success())

    def get_state(self) -> np.ndarray:
        return self.env.get_state()

    def reward(self) -> float:
        """The task's reward for the step just taken: shaped when the task is configured so
        (robosuite's ``reward_shaping``), else sparse success as the task's own ``step`` gives."""
        if getattr(getattr(self.env, "config", None), "reward_shaping", False):
            return float(getattr(self.arm, "last_reward", 0.0))
        return float(self.env.success())


def controller_file(backend: str, controller: str | Path | None) -> Path:
    if controller is None:
        return CONTROLLERS_DIR / DEFAULT_CONTROLLERS[backend]
    p = Path(controller)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return CONTROLLERS_DIR / f"{controller}.yaml"


def load_controller(path: str | Path) -> dict[str, Any]:
    return load_yaml(path)


def _scales(cfg: dict[str, Any], path: Path) -> tuple[float, float]:
    """The controller file's metres and radians per command unit: positive and finite, since
    the backend and its shield both multiply every command by them."""
    from robolearn.hal.shield import require_number

    return (require_number(path, "pos_scale", cfg.get("pos_scale", 0.05), positive=True),
            require_number(path, "rot_scale", cfg.get("rot_scale", 0.5), positive=True))


def shield_arm(arm: Arm, cfg: dict[str, Any], path: Path) -> Arm:
    """Wrap ``arm`` in the shield that ``cfg['shield']`` describes (on unless ``enabled: false``)."""
    from robolearn.hal.shield import SafetyShield, ShieldConfig

    section = cfg.get("shield")
    if section is None:
        raise ConfigError(path, "shield", "missing: every arm needs a shield section (workspace box, limits); "
                          "set `shield: {enabled: false}` to run without one, knowingly")
    if not isinstance(section, dict):
        raise ConfigError(path, "shield", f"expected a mapping, got {type(section).__name__}")
    scfg = ShieldConfig.from_mapping(section, f"{path}: shield")
    if not scfg.enabled:
        log.warning("%s: workspace box and step limits DISABLED for arm %s (shield.enabled: false); "
                    "NaN rejection, e-stop and watchdog stay on", path, arm.spec.name)
    pos, rot = _scales(cfg, path)
    return SafetyShield(arm, scfg, pos_scale=pos, rot_scale=rot, source=str(path))


def make_arm(
    name: str | None = None,
    controller_yaml: str | Path | None = None,
    *,
    shield: bool = True,
    task: str | None = None,
    env_overrides: dict[str, Any] | None = None,
    seed: int | None = None,
    **params: Any,
) -> Arm:
    """Build an Arm.

    name: backend (noop, pybullet, robosuite, remote, ur, franka); defaults to the YAML's ``arm``.
    controller_yaml: path or name under ``controllers/``; defaults to the backend's file.
    shield: wrap in the SafetyShield from the YAML (the default; tests of raw backends pass False).
    task: for simulated arms, the TaskEnv whose scene and success test to use (robosuite needs one).
    params: override entries of the YAML's ``params`` (e.g. host/port for remote).
    """
    if name is None and controller_yaml is None:
        raise ConfigError("make_arm", "arm", f"name an arm backend ({', '.join(BACKENDS)}) or a controller YAML")
    if controller_yaml is None and name not in BACKENDS:
        raise ConfigError("make_arm", "arm", f"unknown arm backend {name!r}; known: {', '.join(BACKENDS)}")
    path = controller_file(name or "noop", controller_yaml)
    cfg = load_controller(path)
    backend = name or cfg.get("arm")
    if backend is None and "controller" in cfg and "control_freq" in cfg:
        backend = "robosuite"  # robosuite's controller file layout
    if backend not in BACKENDS:
        raise ConfigError(path, "arm", f"unknown arm backend {backend!r}; known: {', '.join(BACKENDS)}")
    if cfg.get("arm") not in (None, backend):
        raise ConfigError(path, "arm", f"this file configures arm {cfg.get('arm')!r}, but {backend!r} was asked for")
    if backend != "robosuite":
        unknown = sorted(set(cfg) - _OWN_KEYS)
        if unknown:
            raise ConfigError(path, unknown[0], f"unknown key; controller files accept {sorted(_OWN_KEYS)}")
    p = dict(cfg.get("params") or {})
    if not isinstance(p, dict):
        raise ConfigError(path, "params", "expected a mapping of backend constructor arguments")
    p.update({k: v for k, v in params.items() if v is not None})
    hz = cfg.get("control_hz")
    arm = _build(backend, p, hz, cfg, path, task, env_overrides, seed)
    return shield_arm(arm, cfg, path) if shield else arm


def _build(backend: str, p: dict[str, Any], hz, cfg: dict[str, Any], path: Path, task, env_overrides, seed) -> Arm:
    pos, rot = _scales(cfg, path)
    try:
        if backend == "noop":
            from robolearn.hal.noop_arm import NoopArm

            return NoopArm(control_hz=hz or 20.0, pos_scale=pos, rot_scale=rot, **p)
        if backend == "pybullet":
            if task:
                from robolearn.tasks.base import make_env

                return TaskBoundArm(make_env(task, **(env_overrides or {})), seed=seed)
            from robolearn.hal.pybullet_arm import PyBulletArm

            return PyBulletArm(control_hz=hz or 20.0, pos_scale=pos, rot_scale=rot, **p)
        if backend == "robosuite":
            if not task:
                raise ConfigError(path, "task", "the robosuite arm lives in a task scene: name the task (e.g. lift)")
            from robolearn.tasks.base import make_env

            overrides = dict(env_overrides or {})
            overrides.setdefault("controller", str(path))
            return TaskBoundArm(make_env(task, **overrides), seed=seed)
        if backend == "remote":
            from robolearn.hal.remote import RemoteArm

            return RemoteArm(**p)
        if backend == "ur":
            from robolearn.hal.drivers.ur_rtde import URRtdeArm

            return URRtdeArm(control_hz=hz or 125.0, pos_scale=pos, rot_scale=rot, **p)
        if backend == "franka":
            from robolearn.hal.drivers.franka import FrankaArm

            return FrankaArm(control_hz=hz or 20.0, pos_scale=pos, rot_scale=rot, **p)
    except TypeError as exc:
        raise ConfigError(path, "params", f"bad constructor arguments for the {backend} arm: {exc}") from None
    except ConfigError as exc:  # a backend refused one of its settings: name the file it came from
        if task or backend == "robosuite" or exc.source == str(path):
            raise  # a task's own settings, already named where they came from
        raise ConfigError(path, f"params.{exc.field}", exc.problem) from None
    raise ConfigError(path, "arm", f"unknown arm backend {backend!r}")
