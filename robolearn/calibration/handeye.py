"""Hand-eye calibration: where the camera sits on the robot, from robot poses and board poses.

Two set-ups, one solver (``cv2.calibrateHandEye``, which solves A_i X = X B_i):

- eye-in-hand (the camera rides on the gripper, the board stays put): the robot poses
  T_base_gripper and the board poses T_camera_board give X = T_gripper_camera;
- eye-to-hand (the camera is fixed, the gripper holds the board): the same solver fed the
  inverted robot poses T_gripper_base gives X = T_base_camera.

Both methods below are run on the same samples. Tsai-Lenz solves rotation first and then
translation by least squares; Horaud-Dornaika solves both together through quaternions.
With good data they agree to a fraction of a millimetre; when they disagree by more than
``max_disagreement_mm`` / ``max_disagreement_deg`` the data is what is wrong (poses that
barely rotate, a pose stream lagging the images, a board that moved), so the result is
refused instead of written. The residual per method is the spread of the fixed thing (the
board in the base frame, or in the gripper frame) over the samples: how well X explains
them.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from robolearn.calibration.board import import_cv2
from robolearn.calibration.errors import CalibrationError
from robolearn.geometry import difference, invert, make_transform
from robolearn.geometry import mat_to_axis_angle

MODES = ("eye-in-hand", "eye-to-hand")
METHODS = ("tsai", "horaud")
#: The frame X maps the camera into, per mode.
FRAME_OF = {"eye-in-hand": "gripper", "eye-to-hand": "base"}
#: The robot must turn between samples about at least two axes this far apart, each motion
#: by at least MIN_MOTION_DEG: rotations about one axis leave the translation along it free.
MIN_MOTION_DEG = 5.0
MIN_AXIS_SPREAD_DEG = 10.0
MIN_SAMPLES = 3


@dataclass
class HandEyeSolution:
    method: str
    #: X: T_gripper_camera (eye-in-hand) or T_base_camera (eye-to-hand).
    transform: np.ndarray
    #: RMS spread of the fixed board pose implied by each sample: millimetres, degrees.
    residual_mm: float
    residual_deg: float


@dataclass
class HandEyeResult:
    mode: str
    samples: int
    solutions: dict[str, HandEyeSolution]
    disagreement_mm: float
    disagreement_deg: float
    #: The method whose solution is used: the one with the smaller residual unless asked.
    chosen: str

    @property
    def frame(self) -> str:
        return FRAME_OF[self.mode]

    @property
    def transform(self) -> np.ndarray:
        return self.solutions[self.chosen].transform


def _mean_rotation(rotations: Sequence[np.ndarray]) -> np.ndarray:
    """The rotation nearest the mean of ``rotations`` (chordal L2 mean, by SVD)."""
    u, _, vt = np.linalg.svd(np.sum(rotations, axis=0))
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _residual(fixed: Sequence[np.ndarray]) -> tuple[float, float]:
    """RMS distance (mm) and angle (degrees) of the poses from their mean pose."""
    mean = make_transform(_mean_rotation([t[:3, :3] for t in fixed]), np.mean([t[:3, 3] for t in fixed], axis=0))
    d = np.array([difference(mean, t) for t in fixed])
    return float(np.sqrt(np.mean(d[:, 0] ** 2))), float(np.sqrt(np.mean(d[:, 1] ** 2)))


def check_rotation_spread(robot: Sequence[np.ndarray], source: str) -> None:
    """Refuse samples whose robot poses do not turn about two different axes."""
    axes = []
    for a, b in itertools.combinations(robot[:60], 2):
        v = mat_to_axis_angle(a[:3, :3].T @ b[:3, :3])
        angle = float(np.linalg.norm(v))
        if math.degrees(angle) >= MIN_MOTION_DEG:
            axes.append(v / angle)
    if not axes:
        raise CalibrationError(source, "samples", f"the gripper turns by less than {MIN_MOTION_DEG:g} degrees between any "
                                                  f"two samples; hand-eye needs rotations about two different axes")
    u = np.asarray(axes)
    spread = math.degrees(math.asin(min(1.0, float(np.max(np.linalg.norm(np.cross(u[:, None], u[None]), axis=-1))))))
    if spread < MIN_AXIS_SPREAD_DEG:
        raise CalibrationError(source, "samples", f"the gripper turns about one axis only (axes within {spread:.1f} degrees); "
                                                  f"hand-eye needs rotations about two axes at least {MIN_AXIS_SPREAD_DEG:g} "
                                                  f"degrees apart")


def solve_hand_eye(base_gripper: Sequence[np.ndarray], camera_board: Sequence[np.ndarray], mode: str, *,
                   source: str = "samples", method: str | None = None, max_disagreement_mm: float = 5.0,
                   max_disagreement_deg: float = 1.0) -> HandEyeResult:
    """Solve X from matched samples: ``base_gripper[i]`` is T_base_gripper when
    ``camera_board[i]`` (T_camera_board) was seen. ``method``: tsai or horaud to use that one;
    None picks the one with the smaller residual."""
    if mode not in MODES:
        raise CalibrationError(source, "mode", f"expected one of {list(MODES)}, got {mode!r}")
    if method is not None and method not in METHODS:
        raise CalibrationError(source, "method", f"expected one of {list(METHODS)}, got {method!r}")
    if len(base_gripper) != len(camera_board):
        raise CalibrationError(source, "samples", f"{len(base_gripper)} robot poses but {len(camera_board)} board poses")
    if len(base_gripper) < MIN_SAMPLES:
        raise CalibrationError(source, "samples", f"{len(base_gripper)} samples; hand-eye needs at least {MIN_SAMPLES} "
                                                  f"(10 to 20 at varied orientations give millimetres)")
    cv2 = import_cv2()
    robot = [np.asarray(t, np.float64) for t in base_gripper]
    if mode == "eye-to-hand":
        robot = [invert(t) for t in robot]
    check_rotation_spread(robot, source)
    boards = [np.asarray(t, np.float64) for t in camera_board]
    args = ([t[:3, :3] for t in robot], [t[:3, 3].reshape(3, 1) for t in robot],
            [t[:3, :3] for t in boards], [t[:3, 3].reshape(3, 1) for t in boards])
    flags = {"tsai": cv2.CALIB_HAND_EYE_TSAI, "horaud": cv2.CALIB_HAND_EYE_HORAUD}
    solutions = {}
    for name in METHODS:
        try:
            r, t = cv2.calibrateHandEye(*args, method=flags[name])
        except cv2.error as exc:
            raise CalibrationError(source, "samples", f"cv2.calibrateHandEye ({name}) failed: "
                                                      f"{str(exc).strip().splitlines()[-1]}") from None
        x = make_transform(r, t)
        if not np.all(np.isfinite(x)):
            raise CalibrationError(source, "samples", f"the {name} solution is not finite; the samples are degenerate")
        solutions[name] = HandEyeSolution(name, x, *_residual([a @ x @ b for a, b in zip(robot, boards)]))
    mm, deg = difference(solutions["tsai"].transform, solutions["horaud"].transform)
    if mm > max_disagreement_mm or deg > max_disagreement_deg:
        raise CalibrationError(source, "samples", f"Tsai and Horaud disagree by {mm:.1f} mm / {deg:.2f} degrees (limits "
                                                  f"{max_disagreement_mm:g} mm / {max_disagreement_deg:g} degrees): check that "
                                                  f"each robot pose matches its image and that the board did not move")
    chosen = method or min(METHODS, key=lambda n: (solutions[n].residual_mm, solutions[n].residual_deg))
    return HandEyeResult(mode=mode, samples=len(robot), solutions=solutions, disagreement_mm=mm, disagreement_deg=deg,
                         chosen=chosen)
