"""Rigid transforms as 4x4 matrices, and poses as position + (x, y, z, w) quaternion.

Naming: ``T_a_b`` is the pose of frame b in frame a; it maps a point in b's coordinates to
a's (``p_a = T_a_b @ p_b``), so ``T_a_c = T_a_b @ T_b_c``. Quaternions follow
``robolearn.geometry`` (x, y, z, w), the order robosuite reports end-effector poses in.
"""
from __future__ import annotations

import math

import numpy as np

from robolearn.geometry import mat_to_axis_angle, mat_to_quat, quat_to_mat


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    t[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return t


def invert(t: np.ndarray) -> np.ndarray:
    r, p = t[:3, :3], t[:3, 3]
    return make_transform(r.T, -r.T @ p)


def pose_to_matrix(position: np.ndarray, quaternion_xyzw: np.ndarray) -> np.ndarray:
    return make_transform(quat_to_mat(np.asarray(quaternion_xyzw, dtype=np.float64)), position)


def matrix_to_pose(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (position, (x, y, z, w) quaternion)."""
    return np.asarray(t[:3, 3], dtype=np.float64).copy(), mat_to_quat(t[:3, :3])


def rotation_angle_deg(r: np.ndarray) -> float:
    return math.degrees(float(np.linalg.norm(mat_to_axis_angle(np.asarray(r, dtype=np.float64)))))


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far apart two poses are: (translation in millimetres, rotation in degrees)."""
    return (1e3 * float(np.linalg.norm(a[:3, 3] - b[:3, 3])),
            rotation_angle_deg(a[:3, :3].T @ b[:3, :3]))
