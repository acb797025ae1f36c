"""Poses and camera views in the perception layer's one convention.

``T_a_b`` is the pose of frame b in frame a (``p_a = T_a_b @ p_b``). Quaternions are
(x, y, z, w), as in ``robolearn.geometry`` and robosuite's observations. Camera frames are
OpenCV's (x right, y down, z out of the lens), whatever the source: MuJoCo's cameras look
down their -z with y up and are converted where their pose is read (``mujoco_view``).

The *arm frame* is the frame the arm reports its end effector in: the base frame of a real
arm, the MuJoCo world frame for robosuite (whose ``robot0_eef_pos`` is in world
coordinates). Estimates are given there, so ``object - eef`` is meaningful and a policy
trained on the simulator's state reads the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robolearn.geometry import difference, make_transform, matrix_to_pose, pose_to_matrix, rotation_angle_deg
from robolearn.geometry import quat_to_mat
from robolearn.hal.cameras.base import Intrinsics

#: MuJoCo camera axes (x right, y up, looking along -z) -> OpenCV's (x right, y down, z forward).
MUJOCO_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def rotation_error_deg(q_a: np.ndarray, q_b: np.ndarray) -> float:
    """The angle of the rotation between two (x, y, z, w) quaternions, in degrees (sign-blind)."""
    return rotation_angle_deg(quat_to_mat(q_a).T @ quat_to_mat(q_b))


@dataclass(frozen=True)
class Pose:
    """An object's pose in the arm frame: position in metres, (x, y, z, w) quaternion."""

    position: np.ndarray
    quaternion: np.ndarray

    @classmethod
    def from_matrix(cls, t: np.ndarray) -> "Pose":
        return cls(*matrix_to_pose(t))

    def matrix(self) -> np.ndarray:
        return pose_to_matrix(self.position, self.quaternion)

    def errors_to(self, truth: "Pose") -> tuple[float, float]:
        """(position error in mm, rotation error in degrees) against ``truth``."""
        return difference(self.matrix(), truth.matrix())


@dataclass(frozen=True)
class CameraView:
    """What a frame's pixels mean: pinhole intrinsics (with OpenCV distortion coefficients,
    zero for a simulated camera) and ``T_arm_camera``, the camera's pose in the arm frame."""

    intrinsics: Intrinsics
    T_arm_camera: np.ndarray
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))


def mujoco_view(model, data, camera_id: int, intrinsics: Intrinsics) -> CameraView:
    """A MuJoCo camera's view from its current pose (``mj_forward`` already run): the world is
    the arm frame in robosuite, and a camera on a moving body is followed frame by frame.

    The principal point moves half a pixel up and left: MuJoCo's image centre lies between the
    middle pixels, while OpenCV puts pixel (0, 0)'s centre at (0, 0). Uncorrected, that shifts
    every estimate sideways by half a pixel's width at the object (0.4 mm at 0.45 m)."""
    r_world_mj = np.asarray(data.cam_xmat[camera_id], dtype=np.float64).reshape(3, 3)
    t = make_transform(r_world_mj @ MUJOCO_TO_OPENCV, np.asarray(data.cam_xpos[camera_id], dtype=np.float64))
    k = Intrinsics(fx=intrinsics.fx, fy=intrinsics.fy, cx=intrinsics.cx - 0.5, cy=intrinsics.cy - 0.5)
    return CameraView(intrinsics=k, T_arm_camera=t)
