"""An object pose as the ``object`` observation of robosuite's (and robomimic's) low-dim layout.

Lift (10): cube position, cube (x, y, z, w) quaternion, cube minus end-effector position.
Can (14): can position, quaternion, the can's position and quaternion in the end-effector
frame. Each is computed from the pose and the arm's own ``robot0_eef_pos``/``robot0_eef_quat``
exactly as robosuite's sensors do, so a policy trained on the simulator's state reads an
estimate the way it read the truth.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from robolearn.geometry import invert, pose_to_matrix
from robolearn.geometry import mat_to_quat
from robolearn.perception.pose import Pose
from robolearn.perception.lost import continuous_quaternion


def lift_object(pose: Pose, eef_pos: np.ndarray, eef_quat: np.ndarray) -> np.ndarray:
    return np.concatenate([pose.position, pose.quaternion, pose.position - np.asarray(eef_pos, dtype=np.float64)])


def can_object(pose: Pose, eef_pos: np.ndarray, eef_quat: np.ndarray) -> np.ndarray:
    T_eef_obj = invert(pose_to_matrix(eef_pos, eef_quat)) @ pose.matrix()
    q_rel = mat_to_quat(T_eef_obj[:3, :3])
    return np.concatenate([pose.position, pose.quaternion, T_eef_obj[:3, 3], continuous_quaternion(q_rel, None, axis=3)])


#: task name -> f(pose, eef_pos, eef_quat) -> the ``object`` vector.
OBJECT_LAYOUTS: dict[str, Callable[[Pose, np.ndarray, np.ndarray], np.ndarray]] = {
    "lift": lift_object,
    "can": can_object,
}


def object_vector(task: str, pose: Pose, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The ``object`` key of ``task`` for ``pose``, given the observation's end-effector pose."""
    if task not in OBJECT_LAYOUTS:
        raise ValueError(f"no object layout for task {task!r}; known: {sorted(OBJECT_LAYOUTS)}")
    eef_pos = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).reshape(3)
    eef_quat = np.asarray(obs["robot0_eef_quat"], dtype=np.float64).reshape(4)
    return OBJECT_LAYOUTS[task](pose, eef_pos, eef_quat).astype(np.float32)
