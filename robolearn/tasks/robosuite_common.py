"""Importing robosuite quietly and compatibly, and the helpers the Lift and Can tasks share.

Why this module exists:

* robosuite 1.5.2 prints five warnings at import time (no private macro file, no
  robosuite_models, no mink). They are noise for our users, so ``import_robosuite``
  hands robosuite an in-memory ``robosuite.macros_private`` module (nothing is written
  into site-packages) that sets its console logging level to ERROR before its logger
  is built, and also silences Python warnings raised during the import.
* robosuite 1.5.2 asserts ``jnt_type in (mjJNT_HINGE, mjJNT_SLIDE)``; with recent MuJoCo (seen
  with 3.17) the enum no longer compares equal from that side of a tuple membership test, so
  *every* environment fails to build. We patch the two address helpers with versions
  that compare integer codes, which is correct on every MuJoCo 3.x.
* Recent MuJoCo (seen with 3.14 and 3.17) removed ``mjData.qM`` and changed ``mj_fullM`` to ``mj_fullM(m, d, dst)``;
  robosuite's controllers call ``mj_fullM(m, dst, data.qM)`` every step. When the running
  MuJoCo lacks ``qM`` we hand robosuite's controller module a thin ``mujoco`` proxy whose
  ``mj_fullM`` accepts the old call, and give robosuite's ``MjData`` wrapper a ``qM`` that
  carries the raw ``MjData`` through. Nothing outside robosuite's controller module sees it.
"""
from __future__ import annotations

import logging
import os
import sys
import types
import warnings
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

_ROBOSUITE: Any = None
_LOGGER_NAME = "robosuite_logs"


def import_robosuite():
    """Import robosuite without its import-time warnings and with the MuJoCo compatibility fixes applied."""
    global _ROBOSUITE
    if _ROBOSUITE is not None:
        return _ROBOSUITE
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    if "robosuite" not in sys.modules and "robosuite.macros_private" not in sys.modules:
        quiet = types.ModuleType("robosuite.macros_private")
        quiet.__doc__ = "robolearn: in-memory private macros so robosuite's logger starts at ERROR."
        quiet.CONSOLE_LOGGING_LEVEL = "ERROR"
        quiet.FILE_LOGGING_LEVEL = None
        sys.modules["robosuite.macros_private"] = quiet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import robosuite  # noqa: F401
        import robosuite.utils.binding_utils as binding_utils
    # robosuite may already have been imported by someone else: quieten it all the same.
    logging.getLogger(_LOGGER_NAME).setLevel(logging.ERROR)
    _patch_joint_addr(binding_utils)
    _patch_full_mass_matrix(binding_utils)
    _ROBOSUITE = robosuite
    return robosuite


def _patch_joint_addr(binding_utils) -> None:
    import mujoco

    model_cls = binding_utils.MjModel
    if getattr(model_cls, "_robolearn_patched", False):
        return
    free, ball = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
    one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))

    def _addr(self, name: str, addr_table: np.ndarray, free_n: int, ball_n: int):
        joint_id = self.joint_name2id(name)
        joint_type = int(self.jnt_type[joint_id])
        addr = int(addr_table[joint_id])
        if joint_type == free:
            return (addr, addr + free_n)
        if joint_type == ball:
            return (addr, addr + ball_n)
        if joint_type not in one_dof:
            raise ValueError(f"joint {name!r}: unknown MuJoCo joint type {joint_type}")
        return addr

    def get_joint_qpos_addr(self, name):
        return _addr(self, name, self.jnt_qposadr, 7, 4)

    def get_joint_qvel_addr(self, name):
        return _addr(self, name, self.jnt_dofadr, 6, 3)

    model_cls.get_joint_qpos_addr = get_joint_qpos_addr
    model_cls.get_joint_qvel_addr = get_joint_qvel_addr
    model_cls._robolearn_patched = True


class _MujocoWithOldFullM(types.ModuleType):
    """``mujoco`` as robosuite 1.5.2 expects it: ``mj_fullM(m, dst, qM)`` with ``qM`` our raw-data carrier."""

    def __init__(self, real):
        super().__init__("mujoco")
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def mj_fullM(self, m, dst, qm):
        if isinstance(qm, self._real.MjData):
            return self._real.mj_fullM(m, qm, dst)
        return self._real.mj_fullM(m, dst, qm)


def _patch_full_mass_matrix(binding_utils) -> None:
    import mujoco

    probe_fields = getattr(mujoco.MjData, "qM", None)
    if probe_fields is not None:
        return  # an older MuJoCo with the API robosuite was written for
    data_cls = binding_utils.MjData
    if not getattr(data_cls, "_robolearn_qm_patched", False):
        data_cls.qM = property(lambda self: self._data)
        data_cls._robolearn_qm_patched = True
    import robosuite.controllers.parts.controller as controller_mod

    if not isinstance(controller_mod.mujoco, _MujocoWithOldFullM):
        controller_mod.mujoco = _MujocoWithOldFullM(mujoco)


# --------------------------------------------------------------------------------------
# The task layer shared by Lift and Can
# --------------------------------------------------------------------------------------
from dataclasses import dataclass  # noqa: E402

from robolearn.config import ConfigError, from_dict, non_negative, positive  # noqa: E402
from robolearn.data.format import ActionSpec, ObsFieldSpec  # noqa: E402
from robolearn.paths import ENVS_DIR  # noqa: E402
from robolearn.tasks.base import StepResult  # noqa: E402


@dataclass
class RobosuiteTaskConfig:
    """One task's settings from ``envs/<task>.yaml`` (plus overrides from a policy's meta)."""

    horizon: int = positive(400)
    #: ``robolearn collect``'s episode limit (None: ``horizon``). A slow, hesitant operator
    #: still finishes its demo; only policies are held to ``horizon``.
    demo_horizon: int | None = positive(None)
    control_hz: float = positive(20.0)
    controller: str = "robosuite_panda_osc"
    camera: str = "agentview"
    #: False: reward 1 on the step that succeeds (robomimic's datasets); True: robosuite's shaped reward.
    reward_shaping: bool = False
    #: End the episode on the first successful step.
    done_on_success: bool = True
    seed: int | None = non_negative(None)
    #: Build robosuite's offscreen renderer too (only needed for robosuite's own camera obs).
    offscreen: bool = False


class RobosuiteTaskEnv:
    """A ``TaskEnv`` over a ``RobosuiteArm``. Subclasses say which robosuite environment,
    how the object state looks and how success is judged."""

    name = "robosuite"
    robosuite_env = ""
    object_dim = 0
    #: Plot limits (x, y, z) in metres for ``plot_rollouts``.
    plot_limits = ((-0.3, 0.3), (-0.3, 0.3), (0.78, 1.1))

    def __init__(self, **kwargs: Any):
        source = str(ENVS_DIR / f"{self.name}.yaml")
        self.config = from_dict(RobosuiteTaskConfig, kwargs, source)
        from robolearn.hal.robosuite_arm import RobosuiteArm

        self.arm = RobosuiteArm(
            self.robosuite_env,
            env_kwargs={**self.robosuite_kwargs(), "reward_shaping": self.config.reward_shaping},
            object_dim=self.object_dim,
            controller=self.config.controller,
            seed=self.config.seed,
            offscreen=self.config.offscreen,
            name=f"robosuite_panda_{self.name}",
        )
        if abs(self.arm.spec.control_hz - self.config.control_hz) > 1e-9:
            raise ConfigError(
                source, "control_hz", f"{self.config.control_hz} differs from the controller's control_freq {self.arm.spec.control_hz}"
            )
        #: Recorded into demo folders' meta.json by the collect command.
        self.robot = self.arm.config.robot
        self.controller = self.config.controller
        self.horizon = int(self.config.horizon)
        self.control_hz = float(self.config.control_hz)
        self.obs_spec: dict[str, ObsFieldSpec] = dict(self.arm.spec.obs_spec)
        self.action_spec: ActionSpec = self.arm.spec.action_spec
        self.t = 0
        self._renderers: dict[tuple[int, int], Any] = {}

    # -- to override ------------------------------------------------------------------------
    def robosuite_kwargs(self) -> dict[str, Any]:
        return {}

    def success(self) -> bool:
        return bool(self.arm._require()._check_success())

    # -- TaskEnv --------------------------------------------------------------------------
    @property
    def sim_env(self) -> Any:
        """The underlying robosuite environment (built on first use)."""
        self.arm.connect()
        return self.arm.env

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        if not self.arm.connected:
            self.arm.connect()
        self.t = 0
        obs = self.arm.reset(seed).data
        return obs

    def observe(self) -> dict[str, np.ndarray]:
        return self.arm.observe().data

    def step(self, action: np.ndarray) -> StepResult:
        if not self.arm.connected:
            from robolearn.hal.arm import ArmError

            raise ArmError(f"{self.name}: call reset() before step()")
        applied = self.arm.send(action)
        self.t += 1
        success = self.success()
        reward = self.arm.last_reward if self.config.reward_shaping else float(success)
        done = (success and self.config.done_on_success) or self.t >= self.horizon
        return StepResult(obs=self.arm.observe().data, reward=reward, done=done, success=success, info={"t": self.t, "applied": applied})

    def get_state(self) -> np.ndarray:
        return self.arm.get_state()

    def set_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return self.arm.set_state(state).data

    def render(self, width: int = 256, height: int = 256, goal: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
        env = self.sim_env
        marker = None
        if goal is not None and "robot0_eef_pos" in goal:
            marker = np.asarray(goal["robot0_eef_pos"], dtype=np.float64).reshape(-1)[:3]
        return render_frame(env, self._renderers, width, height, self.config.camera, marker)

    def plot_rollouts(self, episodes: list[dict[str, np.ndarray]], successes: list[bool], path: str, title: str = "") -> None:
        plot_eef_paths(episodes, successes, path, title or self.name, self.plot_limits)

    def close(self) -> None:
        for r in self._renderers.values():
            try:
                r.close()
            except Exception:  # pragma: no cover - renderer teardown on exit
                pass
        self._renderers.clear()
        self.arm.close()


def render_frame(
    env: Any, cache: dict, width: int, height: int, camera: str, marker: np.ndarray | None = None
) -> np.ndarray:
    """One RGB frame from ``camera``; ``marker`` (a 3-D point) is drawn as a magenta sphere.

    Why MuJoCo's own ``Renderer`` rather than robosuite's: it needs no offscreen context
    at environment build time (so videos are opt-in per call), and the marker is added to
    the rendered scene only, so it can never touch the physics."""
    import mujoco

    model, data = env.sim.model._model, env.sim.data._data
    key = (int(width), int(height))
    renderer = cache.get(key)
    if renderer is None:
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, int(width))
            model.vis.global_.offheight = max(model.vis.global_.offheight, int(height))
        renderer = mujoco.Renderer(model, height=int(height), width=int(width))
        cache[key] = renderer
    renderer.update_scene(data, camera=camera)
    if marker is not None and np.all(np.isfinite(marker)):
        scene = renderer.scene
        if scene.ngeom < scene.maxgeom:
            mujoco.mjv_initGeom(
                scene.geoms[scene.ngeom],
                type=int(mujoco.mjtGeom.mjGEOM_SPHERE),
                size=np.array([0.018, 0.0, 0.0]),
                pos=marker.astype(np.float64),
                mat=np.eye(3).reshape(-1),
                rgba=np.array([1.0, 0.0, 1.0, 0.85], dtype=np.float32),
            )
            scene.ngeom += 1
    return np.ascontiguousarray(renderer.render(), dtype=np.uint8)


def plot_eef_paths(
    episodes: list[dict[str, np.ndarray]], successes: list[bool], path: str, title: str, limits
) -> None:
    """End-effector paths seen from the front (x-z) and from above (x-y); green succeeded,
    red failed. A circle marks where the object started when the episode has ``object``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(episodes) != len(successes):
        raise ValueError(f"plot_rollouts: {len(episodes)} episodes but {len(successes)} success flags")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    views = (("x", 0, "z", 2), ("x", 0, "y", 1))
    for ep, ok in zip(episodes, successes):
        if "robot0_eef_pos" not in ep:
            raise ValueError("plot_rollouts: every episode needs 'robot0_eef_pos' (T+1, 3)")
        p = np.asarray(ep["robot0_eef_pos"], dtype=np.float64).reshape(-1, 3)
        color = "tab:green" if ok else "tab:red"
        for ax, (_, i, _, j) in zip(axes, views):
            ax.plot(p[:, i], p[:, j], color=color, alpha=0.6, lw=1)
            ax.plot(p[-1, i], p[-1, j], marker="x", color=color, ms=5)
            if "object" in ep:
                o = np.asarray(ep["object"]).reshape(len(p), -1)[0, :3]
                ax.plot(o[i], o[j], marker="o", mfc="none", color="k", ms=6)
    for ax, (a, i, b, j) in zip(axes, views):
        ax.set_xlim(*limits[i])
        ax.set_ylim(*limits[j])
        ax.set_xlabel(f"{a} (m)")
        ax.set_ylabel(f"{b} (m)")
        ax.set_aspect("equal", adjustable="box")
        ax.grid(alpha=0.3)
    axes[0].set_title("front (x-z)")
    axes[1].set_title("top (x-y)")
    n_ok = int(sum(bool(s) for s in successes))
    fig.suptitle(f"{title}: {n_ok}/{len(successes)} succeeded (green)")
    fig.tight_layout()
    from pathlib import Path as _P

    out = _P(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
