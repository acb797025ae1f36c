"""The task layer shared by the robosuite tasks (Lift, Can): settings, the ``RobosuiteArm``
inside a ``TaskOverArm``, and frames from MuJoCo's renderer.

Importing it imports ``robolearn.sim_compat`` first, which sets ``MUJOCO_GL`` before
MuJoCo is loaded and makes robosuite importable quietly on recent MuJoCo.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import robolearn.sim_compat  # noqa: F401  (MUJOCO_GL before MuJoCo is imported)
from robolearn.config import ConfigError, from_dict, non_negative, positive
from robolearn.hal.arm import Observation
from robolearn.hal.cameras.mujoco_camera import MujocoCamera, robosuite_handles
from robolearn.hal.robosuite_arm import RobosuiteArm
from robolearn.paths import ENVS_DIR
from robolearn.tasks.over_arm import TaskOverArm, check_camera_names


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
    #: Cameras of the model rendered into every observation as ``<name>_image`` (uint8
    #: image_size x image_size x 3), e.g. robomimic's ``[agentview, robot0_eye_in_hand]``.
    cameras: list[str] = field(default_factory=list)
    image_size: int = positive(84)


class RobosuiteTaskEnv(TaskOverArm):
    """A ``TaskOverArm`` over a ``RobosuiteArm``. Subclasses say which robosuite environment,
    how the object state looks, how success is judged and what their operators' scene is."""

    name = "robosuite"
    robosuite_env = ""
    object_dim = 0
    plot_limits = ((-0.3, 0.3), (-0.3, 0.3), (0.78, 1.1))

    def __init__(self, **kwargs: Any):
        source = str(ENVS_DIR / f"{self.name}.yaml")
        self.config = from_dict(RobosuiteTaskConfig, kwargs, source)
        arm = RobosuiteArm(
            self.robosuite_env,
            env_kwargs={**self.robosuite_kwargs(), "reward_shaping": self.config.reward_shaping},
            object_dim=self.object_dim,
            controller=self.config.controller,
            seed=self.config.seed,
            offscreen=self.config.offscreen,
            name=f"robosuite_panda_{self.name}",
        )
        if abs(arm.spec.control_hz - self.config.control_hz) > 1e-9:
            raise ConfigError(
                source, "control_hz", f"{self.config.control_hz} differs from the controller's control_freq {arm.spec.control_hz}"
            )
        super().__init__(arm, self.config.horizon, self.config.control_hz, self.config.done_on_success,
                         cameras=task_cameras(source, arm, self.config.cameras, self.config.image_size))
        #: Recorded into demo folders' meta.json by the collect command.
        self.robot = self.arm.config.robot
        self.controller = self.config.controller
        self._renderers: dict[tuple[int, int], Any] = {}

    # -- to override ------------------------------------------------------------------------
    def robosuite_kwargs(self) -> dict[str, Any]:
        return {}

    def success(self) -> bool:
        return bool(self.arm._require()._check_success())

    # -- TaskOverArm ----------------------------------------------------------------------
    def reset_arm(self, seed: int | None) -> Observation:
        return self.arm.reset(seed)

    def step_reward(self, success: bool) -> float:
        """robosuite's shaped reward when the task is configured so, else sparse success."""
        return float(self.arm.last_reward) if self.config.reward_shaping else float(success)

    @property
    def sim_env(self) -> Any:
        """The underlying robosuite environment (built on first use)."""
        self.arm.connect()
        return self.arm.env

    def render(self, width: int = 256, height: int = 256, goal: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
        env = self.sim_env
        marker = None
        if goal is not None and "robot0_eef_pos" in goal:
            marker = np.asarray(goal["robot0_eef_pos"], dtype=np.float64).reshape(-1)[:3]
        return render_frame(env, self._renderers, width, height, self.config.camera, marker)

    def close(self) -> None:
        for r in self._renderers.values():
            try:
                r.close()
            except Exception:  # pragma: no cover - renderer teardown on exit
                pass
        self._renderers.clear()
        super().close()


def task_cameras(source: str, arm: RobosuiteArm, names: list[str], size: int) -> list[MujocoCamera]:
    """One offscreen ``MujocoCamera`` per name (square ``size`` pixels, rendered synchronously).
    A name the model lacks is refused when the model is built (first reset), naming the ones it has."""
    handles = robosuite_handles(arm)
    return [MujocoCamera(handles, name, width=size, height=size) for name in check_camera_names(source, names)]


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
