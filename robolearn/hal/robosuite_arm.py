"""``RobosuiteArm``: the simulated Panda in robosuite (MuJoCo) behind the ``Arm`` protocol.

Why an Arm and not just a gym env: evaluation, data collection and deployment all run
through the same ``Arm`` (optionally wrapped in the ``SafetyShield`` and driven by the
``ControlLoop``), so a policy that works here is driven exactly as it would be on a real
Panda with an OSC_POSE-style Cartesian controller. The task layer (reset distribution,
success, reward) lives in ``robolearn/tasks/`` and reaches the arm as ``env.arm``.

The controller settings come from ``controllers/robosuite_panda_osc.yaml``. Simulated time
only advances in ``send``: ``stop()`` therefore has nothing to brake, and simply makes the
next command start from rest-holding (no motion is applied between commands).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from robolearn.config import ConfigError, from_dict, load_yaml, require_number
from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.hal.arm import ArmError, ArmSpec, Observation
from robolearn.paths import CONTROLLERS_DIR
from robolearn.sim_compat import import_robosuite

DEFAULT_CONTROLLER = "robosuite_panda_osc"
ROBOT_KEYS = {"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,)}


@dataclass
class OscPoseConfig:
    """robosuite's OSC_POSE part-controller settings (names as robosuite spells them)."""

    type: str = "OSC_POSE"
    input_max: float = 1.0
    input_min: float = -1.0
    output_max: list[float] = field(default_factory=lambda: [0.05, 0.05, 0.05, 0.5, 0.5, 0.5])
    output_min: list[float] = field(default_factory=lambda: [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5])
    kp: float = 150.0
    damping_ratio: float = 1.0
    impedance_mode: str = "fixed"
    uncouple_pos_ori: bool = True
    input_ref_frame: str = "base"
    ramp_ratio: float = 0.2


@dataclass
class RobosuiteControllerConfig:
    robot: str = "Panda"
    control_freq: float = 20.0
    controller: OscPoseConfig = field(default_factory=OscPoseConfig)
    pos_scale: float = 0.05
    rot_scale: float = 0.5
    #: Read by ``SafetyShield`` (``ShieldConfig.from_mapping``); kept as a plain mapping here.
    shield: dict[str, Any] = field(default_factory=dict)
    #: Read by the factory's ``with_cameras`` (``robolearn.hal.cameras.config``); a plain mapping here.
    cameras: dict[str, Any] = field(default_factory=dict)


def controller_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return CONTROLLERS_DIR / f"{name_or_path}.yaml"


def load_controller_config(name_or_path: str | Path = DEFAULT_CONTROLLER) -> RobosuiteControllerConfig:
    """Load and check a controller YAML; errors name the file and the field."""
    path = controller_path(name_or_path)
    data = load_yaml(path)
    cfg = from_dict(RobosuiteControllerConfig, data, str(path))
    if isinstance(cfg.controller, dict):  # pragma: no cover - from_dict converts mappings
        cfg.controller = from_dict(OscPoseConfig, cfg.controller, f"{path}.controller")
    c = cfg.controller
    if c.type != "OSC_POSE":
        raise ConfigError(path, "controller.type", f"RobosuiteArm drives OSC_POSE only, got {c.type!r}")
    for name in ("output_max", "output_min"):
        v = getattr(c, name)
        if not isinstance(v, (list, tuple)) or len(v) != 6:
            raise ConfigError(path, f"controller.{name}", f"expected a list of 6 numbers (xyz metres, axis-angle radians), got {v!r}")
    require_number(path, "control_freq", cfg.control_freq, positive=True)
    _check_scales_cover_controller(cfg, path)
    return cfg


def _check_scales_cover_controller(cfg: RobosuiteControllerConfig, path: Path) -> None:
    """The SafetyShield turns its box and step limits into command units with ``pos_scale``
    and ``rot_scale``; if OSC_POSE moved further per command unit than they say, a clipped
    command would still leave the box. OSC_POSE moves ``|output_max - output_min| /
    |input_max - input_min|`` per unit on each axis; a larger scale only makes the shield
    more cautious, a smaller one is refused."""
    c = cfg.controller
    in_span = abs(require_number(path, "controller.input_max", c.input_max) - require_number(path, "controller.input_min", c.input_min))
    if not in_span > 0:
        raise ConfigError(path, "controller.input_max", f"expected input_max != input_min, got {c.input_max!r}")
    for name, axes in (("pos_scale", range(0, 3)), ("rot_scale", range(3, 6))):
        scale = require_number(path, name, getattr(cfg, name), positive=True)
        per_unit = max(abs(require_number(path, "controller.output_max", c.output_max[i])
                           - require_number(path, "controller.output_min", c.output_min[i])) / in_span for i in axes)
        if scale < per_unit * (1 - 1e-9):
            raise ConfigError(path, name, f"{scale:g} per command unit is less than the {per_unit:g} that "
                              "controller.output_max/output_min give; the shield would under-estimate the motion")


def robosuite_controller_dict(cfg: RobosuiteControllerConfig) -> dict[str, Any]:
    """robosuite 1.5's composite BASIC controller config with our OSC_POSE arm settings."""
    import_robosuite()
    from robosuite.controllers import load_composite_controller_config

    composite = load_composite_controller_config(controller="BASIC", robot=cfg.robot)
    part = composite["body_parts"]["right"]
    c = cfg.controller
    part.update(
        type=c.type,
        input_max=c.input_max,
        input_min=c.input_min,
        output_max=list(c.output_max),
        output_min=list(c.output_min),
        kp=c.kp,
        damping_ratio=c.damping_ratio,
        impedance_mode=c.impedance_mode,
        uncouple_pos_ori=c.uncouple_pos_ori,
        input_ref_frame=c.input_ref_frame,
        ramp_ratio=c.ramp_ratio,
    )
    return composite


class RobosuiteArm:
    """A robosuite environment's robot, seen as an ``Arm``.

    ``object_key``/``object_dim``: robosuite keeps the task's object state in the same
    observation; we expose it under robomimic's ``object`` key so sim datasets match
    robomimic's low-dim layout. On a real arm that key would come from perception.
    """

    def __init__(
        self,
        env_name: str,
        env_kwargs: dict[str, Any] | None = None,
        object_dim: int = 0,
        controller: str | Path | RobosuiteControllerConfig = DEFAULT_CONTROLLER,
        seed: int | None = None,
        offscreen: bool = False,
        name: str | None = None,
        object_fn: Callable[[Any, dict[str, np.ndarray]], np.ndarray] | None = None,
    ):
        self.env_name = env_name
        self.env_kwargs = dict(env_kwargs or {})
        self.config = controller if isinstance(controller, RobosuiteControllerConfig) else load_controller_config(controller)
        self.seed = seed
        self.offscreen = offscreen
        self.object_dim = int(object_dim)
        self._object_fn = object_fn
        obs_spec = {k: ObsFieldSpec(shape=s) for k, s in ROBOT_KEYS.items()}
        if self.object_dim:
            obs_spec["object"] = ObsFieldSpec(shape=(self.object_dim,))
        names = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
        self.spec = ArmSpec(
            name=name or f"robosuite_{self.config.robot.lower()}_{env_name.lower()}",
            obs_spec=obs_spec,
            action_spec=ActionSpec(dim=7, low=-1.0, high=1.0, names=names),
            control_hz=float(self.config.control_freq),
        )
        self.env: Any = None
        self._raw: dict[str, np.ndarray] | None = None
        self.last_reward = 0.0
        self.steps = 0

    # -- Arm protocol -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.env is not None

    def connect(self) -> None:
        if self.env is not None:
            return
        suite = import_robosuite()
        kwargs = dict(
            robots=self.config.robot,
            controller_configs=robosuite_controller_dict(self.config),
            has_renderer=False,
            has_offscreen_renderer=self.offscreen,
            use_camera_obs=False,
            use_object_obs=True,
            control_freq=self.config.control_freq,
            ignore_done=True,  # the task layer owns the horizon
            hard_reset=False,  # keep one MjModel: resets are ~100x cheaper and renderers stay valid
            # robosuite also draws model properties (Lift's cube size) once, when it builds the
            # model: without a seed every process would get a slightly different cube.
            seed=0 if self.seed is None else int(self.seed),
        )
        kwargs.update(self.env_kwargs)
        try:
            self.env = suite.make(self.env_name, **kwargs)
        except Exception as exc:  # robosuite raises bare AssertionErrors/TypeErrors on bad options
            raise ArmError(f"robosuite could not build {self.env_name!r} with {sorted(self.env_kwargs)}: {type(exc).__name__}: {exc}") from exc
        self.reset(self.seed)

    def _require(self) -> Any:
        if self.env is None:
            raise ArmError(f"{self.spec.name}: not connected; call connect() first")
        return self.env

    def observe(self) -> Observation:
        self._require()
        return Observation(timestamp=time.monotonic(), data=self._obs_from_raw(self._raw))

    def eef_position(self) -> np.ndarray:
        """The end-effector position after the latest step: simulated time only advances in
        ``send``, and OSC_POSE adds the next delta to exactly this position."""
        self._require()
        return np.asarray(self._raw["robot0_eef_pos"], dtype=np.float64).reshape(3)

    def send(self, command: np.ndarray) -> np.ndarray:
        env = self._require()
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.shape != (7,):
            raise ArmError(f"{self.spec.name}: command must have 7 numbers (dpos 3, drot 3, gripper 1), got shape {np.shape(command)}")
        if not np.all(np.isfinite(cmd)):
            raise ArmError(f"{self.spec.name}: non-finite command {cmd.tolist()}")
        applied = np.clip(cmd, -1.0, 1.0)
        _, reward, _, _ = env.step(applied)
        # After mj_step MuJoCo's derived quantities (site poses, velocities) still describe the
        # state *before* integration. Recomputing them here makes the observation match the
        # state and makes set_state() + the same commands replay bit-for-bit (the controller's
        # first substep then sees the same kinematics in both runs).
        env.sim.forward()
        self._raw = env._get_observations(force_update=True)
        self.last_reward = float(reward)
        self.steps += 1
        return applied.astype(np.float32)

    def home(self) -> Observation:
        """Reset the robot to robosuite's home joint configuration (this also re-places the
        task's objects: in simulation, home is the start of a new episode)."""
        return self.reset(None)

    def stop(self) -> None:
        """Nothing moves between commands in simulation, so holding needs no action."""

    def close(self) -> None:
        if self.env is not None:
            try:
                self.env.close()
            finally:
                self.env = None
                self._raw = None

    # -- simulation extras ----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        """New episode. With ``seed`` the initial placement (objects and joint noise) is a pure
        function of the seed: we re-seed robosuite's own generator in place, because its
        placement samplers hold a reference to it."""
        env = self._require()
        if seed is not None:
            env.rng.bit_generator.state = np.random.default_rng(int(seed)).bit_generator.state
        env.reset()
        # robosuite's soft reset leaves the gripper model's command ramp where the last episode
        # left it, so an episode would depend on which episode ran before it (and on how
        # episodes were spread over worker processes). Start every episode from a fresh ramp.
        for g in self._grippers():
            g.current_action = np.zeros(len(g.actuators))
        # robosuite's reset observation leaves some object-relative sensors at zero until the
        # next sensor update; force one so the first observation is a real one.
        self._raw = env._get_observations(force_update=True)
        self.last_reward = 0.0
        self.steps = 0
        return self.observe()

    def _grippers(self) -> list[Any]:
        env = self._require()
        out = []
        for robot in env.robots:
            g = robot.gripper
            out.extend(g.values() if isinstance(g, dict) else [g])
        return [g for g in out if hasattr(g, "current_action")]

    def get_state(self) -> np.ndarray:
        """robosuite's flattened MuJoCo state (time, qpos, qvel) followed by each gripper's
        command state. The Panda gripper model ramps its fingers' command a little every
        physics step, so that ramp is state too: without it a replay drifts by ~1e-5 m."""
        env = self._require()
        parts = [np.asarray(env.sim.get_state().flatten(), dtype=np.float64)]
        parts += [
            np.broadcast_to(np.asarray(g.current_action, dtype=np.float64).reshape(-1), (len(g.actuators),))
            for g in self._grippers()
        ]
        return np.concatenate(parts)

    def set_state(self, state: np.ndarray) -> Observation:
        env = self._require()
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        n_sim = env.sim.get_state().flatten().shape[0]
        grippers = self._grippers()
        sizes = [len(g.actuators) for g in grippers]
        expected = n_sim + sum(sizes)
        if state.shape[0] not in (expected, n_sim):
            raise ArmError(
                f"{self.spec.name}: simulator state must have {expected} numbers "
                f"({n_sim} MuJoCo time/qpos/qvel + {sum(sizes)} gripper), got {state.shape[0]}"
            )
        env.sim.set_state_from_flattened(state[:n_sim])
        if state.shape[0] == expected:  # a bare robosuite state (e.g. from robomimic) leaves the grippers be
            i = n_sim
            for g, n in zip(grippers, sizes):
                g.current_action = state[i : i + n].copy()
                i += n
        env.sim.forward()
        self._raw = env._get_observations(force_update=True)
        return self.observe()

    def make_shield(self):
        """This arm wrapped in a ``SafetyShield`` configured from the controller YAML."""
        from robolearn.hal.shield import SafetyShield, ShieldConfig

        cfg = ShieldConfig.from_mapping(self.config.shield, f"{controller_path(DEFAULT_CONTROLLER)}.shield")
        return SafetyShield(self, cfg, pos_scale=self.config.pos_scale, rot_scale=self.config.rot_scale)

    @property
    def raw_obs(self) -> dict[str, np.ndarray]:
        """robosuite's own observation dict from the latest step (all keys)."""
        self._require()
        return self._raw

    def _obs_from_raw(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: np.asarray(raw[k], dtype=np.float32).reshape(s) for k, s in ROBOT_KEYS.items()}
        if self.object_dim:
            obj = self._object_fn(self.env, raw) if self._object_fn else raw["object-state"]
            obj = np.asarray(obj, dtype=np.float32).reshape(-1)
            if obj.shape[0] != self.object_dim:
                raise ArmError(f"{self.spec.name}: object state has {obj.shape[0]} numbers, spec says {self.object_dim}")
            out["object"] = obj
        return out
