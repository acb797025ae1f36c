"""Lift: pick up the cube from the table (robosuite ``Lift``, Panda, OSC_POSE).

Success is robosuite's own test (the cube's centre more than 4 cm above the table top),
so numbers compare with robomimic's Lift results. ``object`` is robomimic's 10-number
layout: cube position (3), cube quaternion xyzw (4), cube minus end-effector position (3).

The cube carries ArUco markers on its top and four sides (visual plates, no physics), and the
scene a 640 x 480 ``perception`` camera in front of the table, so ``robolearn eval --perception
marker`` estimates ``object`` from rendered frames as a real cell would from its camera's.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from robolearn.perception.config import MarkerConfig
from robolearn.perception.sim_markers import mark_object, marked_env
from robolearn.tasks.base import register_env, register_operator
from robolearn.tasks.manip_operators import Scene, scripted_operator_for
from robolearn.tasks.robosuite_common import RobosuiteTaskConfig, RobosuiteTaskEnv


def _lift_object(env: Any, raw: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([raw["cube_pos"], raw["cube_quat"], raw["gripper_to_cube_pos"]])


#: The perception camera's place relative to the table top's centre, and where it looks (m).
PERCEPTION_CAMERA = {"position": (0.36, 0.0, 0.28), "target": (0.0, 0.0, 0.03), "fovy_deg": 45.0}
#: Share of the cube's smallest face the marker plates cover.
_PLATE_SHARE = 0.96


def _add_cube_markers(env: Any) -> None:
    """robosuite's Lift model plus markers on the cube (sized from the cube robosuite drew) and
    the perception camera."""
    half = np.asarray(env.cube.size, dtype=np.float64)
    table = np.asarray(env.table_offset, dtype=np.float64)
    camera = {"position": table + PERCEPTION_CAMERA["position"], "target": table + PERCEPTION_CAMERA["target"],
              "fovy_deg": PERCEPTION_CAMERA["fovy_deg"]}
    mark_object(env, env.cube.root_body, half, 2.0 * float(np.min(half)) * _PLATE_SHARE, camera, "cube")


class LiftEnv(RobosuiteTaskEnv):
    name = "lift"
    robosuite_env = "Lift"
    object_dim = 10
    plot_limits = ((-0.25, 0.25), (-0.25, 0.25), (0.78, 1.08))
    #: Success height above the table top (robosuite's Lift check).
    success_height = 0.04
    #: The object's body and the camera ``--perception`` estimates it from.
    object_body = "cube_main"
    perception_cameras = ("perception",)

    def __init__(self, **kwargs: Any):
        self.robosuite_env = marked_env("Lift", _add_cube_markers)
        super().__init__(**kwargs)
        self.arm._object_fn = _lift_object

    def marker_config(self) -> MarkerConfig:
        """The cube's markers as the estimator needs them (the model is built on first use)."""
        return self.sim_env.robolearn_markers

    @property
    def table_height(self) -> float:
        return float(self.sim_env.model.mujoco_arena.table_offset[2])

    def success(self) -> bool:
        env = self.arm._require()
        cube_z = float(env.sim.data.body_xpos[env.cube_body_id][2])
        return cube_z > self.table_height + self.success_height

    def operator_scene(self) -> Scene:
        """The scene facts the scripted operators work from: the table, the success height,
        where the cube may be pushed and carried."""
        table = float(self.table_height)
        return Scene(
            task="lift",
            table_z=table,
            success_z=table + float(self.success_height),
            grasp_dz=-0.002,
            hover_dz=0.09,
            lift_z=table + 0.20,
            yaw_period=math.pi / 2,
            area_centre=np.zeros(2),
            area_half=np.array([0.12, 0.12]),
            hesitate_chance=0.5,  # v13 (see ScriptedOperator._maybe_hesitate); Can keeps the defaults its table was measured on
            hesitate_steps=(10, 40),
        )


@register_env("lift", config=RobosuiteTaskConfig)
def make_lift(**kwargs: Any) -> LiftEnv:
    return LiftEnv(**kwargs)


register_operator("lift")(scripted_operator_for)
