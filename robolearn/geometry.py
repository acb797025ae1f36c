"""Rotation maths in one convention: quaternions are (x, y, z, w), as robosuite reports them.

Why one module on the ground floor: every arm backend integrates delta axis-angle commands
into a quaternion, and the scripted operators turn observed quaternions into rotation
commands; if they disagreed on the order or the sign, a command would turn the hand one way
in simulation and another on a real arm. NumPy only, so any floor may use it.
"""
from __future__ import annotations

import math

import numpy as np


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of two (x, y, z, w) quaternions: the rotation b, then a."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        dtype=np.float64,
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]], dtype=np.float64)


def axis_angle_to_quat(v: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, radians) -> (x, y, z, w) quaternion."""
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    s = np.sin(angle / 2.0) / angle
    return np.array([v[0] * s, v[1] * s, v[2] * s, np.cos(angle / 2.0)])


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> rotation vector, angle in [0, pi]."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    s = float(np.linalg.norm(q[:3]))
    if s < 1e-12:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(s, q[3])
    return q[:3] / s * angle


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion (normalised here) -> 3x3 rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / max(np.linalg.norm(q), 1e-12)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def mat_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> rotation vector, angle in [0, pi]."""
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    n = np.linalg.norm(v)
    if n < 1e-9:  # angle near pi: take the axis from the diagonal
        axis = np.sqrt(np.clip((np.diag(r) + 1.0) / 2.0, 0.0, None))
        return axis * angle
    return v / n * angle


def mat_to_quat(r: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> unit (x, y, z, w) quaternion with w >= 0 (Shepperd's method:
    stable for every angle, including half turns, where the trace-only formula divides by 0)."""
    r = np.asarray(r, dtype=np.float64)
    trace = float(np.trace(r))
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[3] < 0 else q


def rot_z(yaw: float) -> np.ndarray:
    """Rotation by ``yaw`` radians about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Rigid transforms as 4x4 matrices, and poses as position + (x, y, z, w) quaternion.
# Naming: ``T_a_b`` is the pose of frame b in frame a; it maps a point in b's coordinates to
# a's (``p_a = T_a_b @ p_b``), so ``T_a_c = T_a_b @ T_b_c``.

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
