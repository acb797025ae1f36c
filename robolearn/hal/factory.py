"""make_arm: build any Arm backend from a controller YAML, wrapped in the SafetyShield.

Why one factory: ``robolearn deploy``, ``robolearn serve-arm`` and the benchmarks name an
arm by a word (noop, pybullet, robosuite, remote, ur, franka) and a controller file, and
must all get the same shield from the same file. ``BACKENDS`` is the registry: a name maps
to a lazy constructor, so a missing optional dependency (robosuite, ur_rtde, franky) only
affects the arm that needs it, with an error that says what to install; a new backend is
one ``register_backend`` call.

The factory knows no tasks. A simulated arm inside a task's scene (the cube, its reset
distribution, the success test) is built by ``robolearn.tasks.task_arm.make_task_arm``,
which reads the controller file through ``resolve_controller`` here and shields the arm
with ``shield_arm``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from robolearn.config import ConfigError, load_yaml, require_number
from robolearn.hal.arm import Arm
from robolearn.paths import CONTROLLERS_DIR

log = logging.getLogger(__name__)

_OWN_KEYS = {"arm", "control_hz", "pos_scale", "rot_scale", "params", "shield", "server", "cameras", "description"}


@dataclass(frozen=True)
class ControllerChoice:
    """A controller file read and checked for one backend: what every constructor needs."""

    backend: str
    path: Path
    cfg: dict[str, Any]
    #: The YAML's ``params`` with the caller's overrides applied: the constructor's arguments.
    params: dict[str, Any]
    #: ``control_hz`` from the file, None when it has none (each backend has its own default).
    hz: float | None
    pos_scale: float
    rot_scale: float


@dataclass(frozen=True)
class Backend:
    """One entry of the registry: how to build the raw (unshielded) arm, lazily."""

    build: Callable[[ControllerChoice], Arm]
    #: Controller file under ``controllers/`` when none is named.
    default_controller: str
    #: A simulator whose scene a task supplies: ``make_task_arm`` builds it inside the task.
    task_scene: bool = False
    #: The controller file has this backend's own layout, not the keys ``_OWN_KEYS`` lists.
    own_layout: bool = False


def _noop(c: ControllerChoice) -> Arm:
    from robolearn.hal.noop_arm import NoopArm

    return NoopArm(control_hz=c.hz or 20.0, pos_scale=c.pos_scale, rot_scale=c.rot_scale, **c.params)


def _pybullet(c: ControllerChoice) -> Arm:
    from robolearn.hal.pybullet_arm import PyBulletArm

    return PyBulletArm(control_hz=c.hz or 20.0, pos_scale=c.pos_scale, rot_scale=c.rot_scale, **c.params)


def _robosuite(c: ControllerChoice) -> Arm:
    raise ConfigError(c.path, "task", "the robosuite arm lives in a task scene: name the task (e.g. lift)")


def _remote(c: ControllerChoice) -> Arm:
    from robolearn.hal.remote import RemoteArm

    return RemoteArm(**c.params)


def _ur(c: ControllerChoice) -> Arm:
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    return URRtdeArm(control_hz=c.hz or 125.0, pos_scale=c.pos_scale, rot_scale=c.rot_scale, **c.params)


def _franka(c: ControllerChoice) -> Arm:
    from robolearn.hal.drivers.franka import FrankaArm

    return FrankaArm(control_hz=c.hz or 20.0, pos_scale=c.pos_scale, rot_scale=c.rot_scale, **c.params)


#: The arm backends by name, in the order error messages list them.
BACKENDS: dict[str, Backend] = {
    "noop": Backend(_noop, "noop.yaml"),
    "pybullet": Backend(_pybullet, "pybullet_panda.yaml", task_scene=True),
    "robosuite": Backend(_robosuite, "robosuite_panda_osc.yaml", task_scene=True, own_layout=True),
    "remote": Backend(_remote, "remote.yaml"),
    "ur": Backend(_ur, "ur5e.yaml"),
    "franka": Backend(_franka, "franka.yaml"),
}


def register_backend(name: str, backend: Backend) -> None:
    """Add (or replace) a backend, e.g. a vendor driver that lives outside this package."""
    BACKENDS[name] = backend


def _known() -> str:
    return ", ".join(BACKENDS)


def controller_file(backend: str, controller: str | Path | None) -> Path:
    if controller is None:
        return CONTROLLERS_DIR / BACKENDS[backend].default_controller
    p = Path(controller)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return CONTROLLERS_DIR / f"{controller}.yaml"


def load_controller(path: str | Path) -> dict[str, Any]:
    return load_yaml(path)


def controller_scales(cfg: dict[str, Any], path: Path) -> tuple[float, float]:
    """The controller file's metres and radians per command unit: positive and finite, since
    the backend and its shield both multiply every command by them."""
    return (require_number(path, "pos_scale", cfg.get("pos_scale", 0.05), positive=True),
            require_number(path, "rot_scale", cfg.get("rot_scale", 0.5), positive=True))


def with_cameras(arm: Arm, choice: "ControllerChoice") -> Arm:
    """``CameraArm(arm)`` with the controller file's ``cameras:`` views (the arm unchanged when
    it names none). Built inside the shield, ``SafetyShield(CameraArm(arm))``: the shield stays
    the outermost layer, and its watchdog's stop reaches a simulator under the lock its
    cameras render under."""
    section = choice.cfg.get("cameras")
    if not section:
        return arm
    from robolearn.hal.cameras.config import wrap_with_cameras

    return wrap_with_cameras(arm, section, source=str(choice.path), sim=BACKENDS[choice.backend].task_scene)


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
    pos, rot = controller_scales(cfg, path)
    return SafetyShield(arm, scfg, pos_scale=pos, rot_scale=rot, source=str(path))


def resolve_controller(name: str | None, controller_yaml: str | Path | None, params: dict[str, Any]) -> ControllerChoice:
    """Which backend, read from which controller file, with which constructor arguments:
    every check of the file before anything is built."""
    if name is None and controller_yaml is None:
        raise ConfigError("make_arm", "arm", f"name an arm backend ({_known()}) or a controller YAML")
    if controller_yaml is None and name not in BACKENDS:
        raise ConfigError("make_arm", "arm", f"unknown arm backend {name!r}; known: {_known()}")
    path = controller_file(name or "noop", controller_yaml)
    cfg = load_controller(path)
    backend = name or cfg.get("arm")
    if backend is None and "controller" in cfg and "control_freq" in cfg:
        backend = "robosuite"  # robosuite's controller file layout
    if backend not in BACKENDS:
        raise ConfigError(path, "arm", f"unknown arm backend {backend!r}; known: {_known()}")
    if cfg.get("arm") not in (None, backend):
        raise ConfigError(path, "arm", f"this file configures arm {cfg.get('arm')!r}, but {backend!r} was asked for")
    if not BACKENDS[backend].own_layout:
        unknown = sorted(set(cfg) - _OWN_KEYS)
        if unknown:
            raise ConfigError(path, unknown[0], f"unknown key; controller files accept {sorted(_OWN_KEYS)}")
    p = dict(cfg.get("params") or {})
    if not isinstance(p, dict):
        raise ConfigError(path, "params", "expected a mapping of backend constructor arguments")
    p.update({k: v for k, v in params.items() if v is not None})
    pos, rot = controller_scales(cfg, path)
    return ControllerChoice(backend, path, cfg, p, cfg.get("control_hz"), pos, rot)


def build_backend(choice: ControllerChoice) -> Arm:
    """The raw arm of ``choice.backend``; a constructor's refusal names the controller file."""
    try:
        return BACKENDS[choice.backend].build(choice)
    except TypeError as exc:
        raise ConfigError(choice.path, "params", f"bad constructor arguments for the {choice.backend} arm: {exc}") from None
    except ConfigError as exc:  # a backend refused one of its settings: name the file it came from
        if exc.source == str(choice.path):
            raise
        raise ConfigError(choice.path, f"params.{exc.field}", exc.problem) from None


def make_arm(
    name: str | None = None,
    controller_yaml: str | Path | None = None,
    *,
    shield: bool = True,
    **params: Any,
) -> Arm:
    """Build an Arm.

    name: backend (a key of ``BACKENDS``); defaults to the YAML's ``arm``.
    controller_yaml: path or name under ``controllers/``; defaults to the backend's file.
    shield: wrap in the SafetyShield from the YAML (the default; tests of raw backends pass False).
    params: override entries of the YAML's ``params`` (e.g. host/port for remote).
    """
    choice = resolve_controller(name, controller_yaml, params)
    arm = with_cameras(build_backend(choice), choice)
    return shield_arm(arm, choice.cfg, choice.path) if shield else arm
