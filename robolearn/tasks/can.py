"""Can: pick the can out of the left bin and place it in its slot's bin on the right
(robosuite ``PickPlace`` with ``single_object_mode=2, object_type="can"``, i.e. PickPlaceCan).

Success is robosuite's test: the can inside the target bin and the gripper away from it.
``object`` is robomimic's 14-number layout: can position (3), quaternion xyzw (4), can
position in the end-effector frame (3), can orientation in the end-effector frame (4).

The can carries ArUco markers on its top and, as flat tags touching it, on four sides (visual
plates, no physics), and the scene a 640 x 480 perception camera in front of each bin, so
``robolearn eval --perception marker`` estimates ``object`` from rendered frames.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from robolearn.perception.config import MarkerConfig
from robolearn.perception.sim_markers import add_camera, mark_object, marked_env
from robolearn.tasks.base import register_env, register_operator
from robolearn.tasks.manip_operators import Scene, scripted_operator_for
from robolearn.tasks.robosuite_common import RobosuiteTaskConfig, RobosuiteTaskEnv


def _can_object(env: Any, raw: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([raw["Can_pos"], raw["Can_quat"], raw["Can_to_robot0_eef_pos"], raw["Can_to_robot0_eef_quat"]])


#: The perception cameras (world frame, m): one in front of each bin, about 0.45 m from its middle
#: (one camera for both bins saw the can's 25 mm markers at 11-17 px, too few for a pose).
PERCEPTION_CAMERA = {"position": (0.45, -0.25, 1.15), "target": (0.1, -0.25, 0.86), "fovy_deg": 45.0}
TARGET_CAMERA = {"position": (0.45, 0.28, 1.15), "target": (0.1, 0.28, 0.86), "fovy_deg": 45.0}
#: The can's radius and the height of its top above its centre (measured on robosuite's mesh).
CAN_RADIUS, CAN_TOP = 0.025, 0.0401
#: Marker plate width: the top's plate fits inside the 50 mm circle with its corners clear of the rim.
CAN_PLATE = 0.034


def _add_can_markers(env: Any) -> None:
    can = env.objects[env.object_id]
    mark_object(env, can.root_body, np.array([CAN_RADIUS, CAN_RADIUS, CAN_TOP]), CAN_PLATE, PERCEPTION_CAMERA, "can")
    add_camera(env.model, "perception_target", TARGET_CAMERA["position"], TARGET_CAMERA["target"], TARGET_CAMERA["fovy_deg"])


class CanEnv(RobosuiteTaskEnv):
    name = "can"
    robosuite_env = "PickPlace"
    object_dim = 14
    plot_limits = ((-0.2, 0.4), (-0.55, 0.55), (0.78, 1.2))
    #: The object's body and the camera ``--perception`` estimates it from.
    object_body = "Can_main"
    perception_cameras = ("perception", "perception_target")

    def __init__(self, **kwargs: Any):
        self.robosuite_env = marked_env("PickPlace", _add_can_markers)
        super().__init__(**kwargs)
        self.arm._object_fn = _can_object

    def marker_config(self) -> MarkerConfig:
        """The can's markers as the estimator needs them (the model is built on first use)."""
        return self.sim_env.robolearn_markers

    def robosuite_kwargs(self) -> dict[str, Any]:
        return {"single_object_mode": 2, "object_type": "can"}

    @property
    def target_position(self) -> np.ndarray:
        """Centre of the can's slot in the target bin (x, y, bin floor z)."""
        env = self.sim_env
        return np.asarray(env.target_bin_placements[env.object_id], dtype=np.float64)

    @property
    def bin_floor(self) -> float:
        return float(self.sim_env.bin2_pos[2])

    def operator_scene(self) -> Scene:
        """The scene facts the scripted operators work from: the bin floor, the can's slot in
        the target bin, the part of the source bin the can may be dragged and carried in."""
        floor = float(self.bin_floor)
        return Scene(
            task="can",
            table_z=floor,
            success_z=None,
            grasp_dz=0.012,
            hover_dz=0.12,
            lift_z=floor + 0.19,
            yaw_period=0.0,
            area_centre=np.array([0.10, -0.25]),
            area_half=np.array([0.08, 0.10]),
            target=np.asarray(self.target_position, dtype=np.float64),
        )


@register_env("can", config=RobosuiteTaskConfig)
def make_can(**kwargs: Any) -> CanEnv:
    return CanEnv(**kwargs)


register_operator("can")(scripted_operator_for)
