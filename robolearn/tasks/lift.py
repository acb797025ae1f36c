"""Lift: pick up the cube from the table (robosuite ``Lift``, Panda, OSC_POSE).

Success is robosuite's own test (the cube's centre more than 4 cm above the table top),
so numbers compare with robomimic's Lift results. ``object`` is robomimic's 10-number
layout: cube position (3), cube quaternion xyzw (4), cube minus end-effector position (3).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from robolearn.tasks.base import register_env, register_operator
from robolearn.tasks.robosuite_common import RobosuiteTaskEnv


def _lift_object(env: Any, raw: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([raw["cube_pos"], raw["cube_quat"], raw["gripper_to_cube_pos"]])


class LiftEnv(RobosuiteTaskEnv):
    name = "lift"
    robosuite_env = "Lift"
    object_dim = 10
    plot_limits = ((-0.25, 0.25), (-0.25, 0.25), (0.78, 1.08))
    #: Success height above the table top (robosuite's Lift check).
    success_height = 0.04

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.arm._object_fn = _lift_object

    @property
    def table_height(self) -> float:
        return float(self.sim_env.model.mujoco_arena.table_offset[2])

    def success(self) -> bool:
        env = self.arm._require()
        cube_z = float(env.sim.data.body_xpos[env.cube_body_id][2])
        return cube_z > self.table_height + self.success_height


@register_env("lift")
def make_lift(**kwargs: Any) -> LiftEnv:
    return LiftEnv(**kwargs)


@register_operator("lift")
def make_lift_operator(env: LiftEnv, kind: str, rng: np.random.Generator):
    from robolearn.tasks.manip_operators import make_operator_for

    return make_operator_for("lift", env, kind, rng)
