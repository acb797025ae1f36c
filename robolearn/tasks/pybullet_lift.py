"""pybullet_lift: pick up a 4 cm cube from the floor with the PyBullet Panda.

Why: a second physics engine for the same Lift-like task, so a policy, the ControlLoop
and the recorder are exercised on an arm that is not robosuite, through the very same
``Arm`` protocol a real robot would use.

Scene facts (world frame z up, Panda base at the origin, the floor is the table top z = 0):

* the cube (side 4 cm, 0.1 kg) starts with its centre at x in [0.45, 0.60], y in
  [-0.12, 0.12], z = 0.02, yaw in [-pi/4, pi/4] (uniform, from the reset seed);
* ``object`` = cube position (3), cube quaternion xyzw (4), cube minus end-effector
  position (3): robomimic's 10-number Lift layout (robosuite's ``gripper_to_cube_pos``
  sign), so Lift models and tools read it unchanged;
* success: the cube's centre more than 4 cm above the floor (robosuite's Lift test);
  reward: 1.0 on success steps (sparse, like robosuite's Lift without shaping).

The scripted operators are the Lift operators of ``robolearn/tasks/manip_operators.py``
given this scene's geometry; they read only observations, never the simulator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robolearn.config import ConfigError, from_dict, non_negative, positive
from robolearn.data.format import ObsFieldSpec
from robolearn.hal.arm import Observation
from robolearn.hal.cameras.pybullet_camera import PyBulletCamera, pybullet_client
from robolearn.hal.factory import controller_file, controller_scales, load_controller
from robolearn.hal.pybullet_arm import PyBulletArm
from robolearn.tasks.base import register_env, register_operator
from robolearn.tasks.manip_operators import Scene, scripted_operator_for
from robolearn.tasks.over_arm import TaskOverArm, check_camera_names

CUBE_HALF = 0.02
TABLE_Z = 0.0
SUCCESS_HEIGHT = 0.04


@dataclass
class PyBulletLiftConfig:
    horizon: int = positive(250)
    control_hz: float = positive(20.0)
    #: Controller YAML (name under controllers/ or a path): scales for the arm and its shield.
    controller: str = "pybullet_panda"
    seed: int | None = non_negative(None)
    cube_x: list[float] = field(default_factory=lambda: [0.45, 0.60])
    cube_y: list[float] = field(default_factory=lambda: [-0.12, 0.12])
    cube_yaw: list[float] = field(default_factory=lambda: [-math.pi / 4, math.pi / 4])
    done_on_success: bool = True
    #: Fixed views of CAMERA_VIEWS rendered into every observation as ``<name>_image`` (uint8
    #: image_size x image_size x 3, PyBullet's TinyRenderer).
    cameras: list[str] = field(default_factory=list)
    image_size: int = positive(84)


#: The scene's named views (PyBullet has no cameras of its own): in front of the arm looking back
#: at the gripper over the cube's area, and from the arm's right; both keep the hand and the cube
#: in view from home to a lift.
CAMERA_VIEWS = {
    "agentview": {"eye": [1.1, 0.0, 0.65], "target": [0.4, 0.0, 0.18], "fov_deg": 55.0},
    "sideview": {"eye": [0.45, -0.85, 0.5], "target": [0.45, 0.0, 0.2], "fov_deg": 55.0},
}


class LiftScene:
    """The cube: built into a PyBullet client, re-placed on reset, observed, judged."""

    obs_spec = {"object": ObsFieldSpec((10,))}

    def __init__(self, cube_x=(0.45, 0.60), cube_y=(-0.12, 0.12), cube_yaw=(-math.pi / 4, math.pi / 4)):
        self.cube_x, self.cube_y, self.cube_yaw = tuple(cube_x), tuple(cube_y), tuple(cube_yaw)
        self.cube: int | None = None
        self.start_pos = np.zeros(3)

    def build(self, client: int) -> None:
        import pybullet as p

        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[CUBE_HALF] * 3, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[CUBE_HALF] * 3, rgbaColor=[0.85, 0.15, 0.15, 1], physicsClientId=client)
        self.cube = p.createMultiBody(0.1, col, vis, [0.5, 0.0, CUBE_HALF], physicsClientId=client)
        p.changeDynamics(self.cube, -1, lateralFriction=1.2, spinningFriction=0.002, rollingFriction=0.0001, physicsClientId=client)

    def reset(self, client: int, rng: np.random.Generator) -> None:
        import pybullet as p

        x, y = rng.uniform(*self.cube_x), rng.uniform(*self.cube_y)
        yaw = rng.uniform(*self.cube_yaw)
        self.start_pos = np.array([x, y, CUBE_HALF + TABLE_Z])
        p.resetBasePositionAndOrientation(self.cube, self.start_pos.tolist(), p.getQuaternionFromEuler([0, 0, yaw]),
                                          physicsClientId=client)
        p.resetBaseVelocity(self.cube, [0, 0, 0], [0, 0, 0], physicsClientId=client)

    def _pose(self, client: int) -> tuple[np.ndarray, np.ndarray]:
        import pybullet as p

        pos, quat = p.getBasePositionAndOrientation(self.cube, physicsClientId=client)
        return np.asarray(pos), np.asarray(quat)

    def observe(self, client: int, eef_pos: np.ndarray) -> dict[str, np.ndarray]:
        pos, quat = self._pose(client)
        return {"object": np.concatenate([pos, quat, pos - eef_pos]).astype(np.float32)}

    def success(self, client: int) -> bool:
        return bool(self._pose(client)[0][2] > TABLE_Z + SUCCESS_HEIGHT)

    def get_state(self, client: int) -> np.ndarray:
        import pybullet as p

        pos, quat = self._pose(client)
        lin, ang = p.getBaseVelocity(self.cube, physicsClientId=client)
        return np.concatenate([pos, quat, lin, ang])

    def set_state(self, client: int, state: np.ndarray) -> None:
        import pybullet as p

        if state.shape[0] != 13:
            raise ConfigError("pybullet_lift", "state", f"cube state must have 13 numbers, got {state.shape[0]}")
        p.resetBasePositionAndOrientation(self.cube, state[:3].tolist(), state[3:7].tolist(), physicsClientId=client)
        p.resetBaseVelocity(self.cube, state[7:10].tolist(), state[10:13].tolist(), physicsClientId=client)


class PyBulletLiftEnv(TaskOverArm):
    """``TaskOverArm`` over a ``PyBulletArm`` with a ``LiftScene``; the arm is ``env.arm``."""

    name = "pybullet_lift"
    robot = "Panda (PyBullet)"
    table_height = TABLE_Z
    success_height = SUCCESS_HEIGHT
    plot_limits = ((0.3, 0.75), (-0.25, 0.25), (-0.02, 0.4))

    def __init__(self, **kwargs: Any):
        source = "envs/pybullet_lift.yaml"
        self.config = from_dict(PyBulletLiftConfig, kwargs, source)
        c = self.config
        for key in ("cube_x", "cube_y", "cube_yaw"):
            v = getattr(c, key)
            if len(v) != 2 or not v[0] <= v[1]:
                raise ConfigError(source, key, f"expected [low, high] with low <= high, got {v!r}")
        path = controller_file("pybullet", c.controller)
        self.controller = str(path)
        pos, rot = controller_scales(load_controller(path), path)
        self.scene = LiftScene(c.cube_x, c.cube_y, c.cube_yaw)
        arm = PyBulletArm(control_hz=c.control_hz, pos_scale=pos, rot_scale=rot, scene=self.scene, seed=c.seed,
                          name="pybullet_panda_lift")
        cameras = [PyBulletCamera(pybullet_client(arm), c.image_size, c.image_size, c.control_hz, name=name, **CAMERA_VIEWS[name])
                   for name in check_camera_names(source, c.cameras, list(CAMERA_VIEWS))]
        super().__init__(arm, c.horizon, c.control_hz, c.done_on_success, cameras=cameras)
        self._marker: int | None = None

    def reset_arm(self, seed: int | None) -> Observation:
        if seed is not None:
            self.arm.reseed(seed)
        return self.arm.home()

    def success(self) -> bool:
        return self.arm.success()

    def operator_scene(self) -> Scene:
        """The Lift operators' scene facts for this task's geometry."""
        cx, cy = self.config.cube_x, self.config.cube_y
        return Scene(
            task="lift",
            table_z=TABLE_Z,
            success_z=TABLE_Z + SUCCESS_HEIGHT,
            grasp_dz=-0.002,
            hover_dz=0.09,
            lift_z=TABLE_Z + 0.20,
            yaw_period=math.pi / 2,
            area_centre=np.array([(cx[0] + cx[1]) / 2, (cy[0] + cy[1]) / 2]),
            area_half=np.array([max((cx[1] - cx[0]) / 2, 0.05), max((cy[1] - cy[0]) / 2, 0.05)]),
        )

    def render(self, width: int = 256, height: int = 256, goal: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
        """TinyRenderer (CPU) frame; a magenta sphere marks the subgoal's end-effector position."""
        import pybullet as p

        c = self.arm.client
        if self._marker is None:
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=0.012, rgbaColor=[1, 0, 1, 0.8], physicsClientId=c)
            self._marker = p.createMultiBody(0, -1, vis, [0, 0, -5], physicsClientId=c)
        where = [0, 0, -5]
        if goal is not None and "robot0_eef_pos" in goal:
            where = np.asarray(goal["robot0_eef_pos"], np.float64).reshape(-1)[:3].tolist()
        p.resetBasePositionAndOrientation(self._marker, where, [0, 0, 0, 1], physicsClientId=c)
        view = p.computeViewMatrixFromYawPitchRoll([0.5, 0.0, 0.1], 0.9, 60, -30, 0, 2, physicsClientId=c)
        proj = p.computeProjectionMatrixFOV(50, width / height, 0.05, 5.0, physicsClientId=c)
        img = p.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER, physicsClientId=c)
        return np.asarray(img[2], dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()


@register_env("pybullet_lift", config=PyBulletLiftConfig)
def make_pybullet_lift(**kwargs: Any) -> PyBulletLiftEnv:
    return PyBulletLiftEnv(**kwargs)


register_operator("pybullet_lift")(scripted_operator_for)
