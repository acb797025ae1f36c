"""``MarkerEstimator``: an object's pose from the ArUco (or AprilTag-family) markers on it.

Per frame: OpenCV's ``cv2.aruco.ArucoDetector`` finds the markers (sub-pixel corners); for
each known marker ``solvePnP`` with ``SOLVEPNP_IPPE_SQUARE`` gives both poses a square can
have (a planar square seen small is two-fold ambiguous); each is carried to the object's pose
through the marker's placement. The candidate that reprojects all seen corners (of every
marker) best wins, ties broken by nearness to the caller's prior, and is refined by
Levenberg-Marquardt over all of them. Two faces seen together pin the pose far better than
one, which is why an object may carry several markers.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from robolearn.hal.cameras.base import Frame
from robolearn.perception.base import Estimate
from robolearn.perception.config import MarkerConfig
from robolearn.geometry import invert, make_transform
from robolearn.perception.pose import CameraView, Pose, rotation_error_deg

#: OpenCV 4.11's AprilTag corner refinement reports corners half a pixel right of and below the
#: pixel-centre convention every other method (and ``solvePnP``) uses: measured on markers drawn
#: at known poses, its corners sat at +0.50 px in x and y with the marker square to the camera.
_APRILTAG_SHIFT_PX = 0.5
#: Two IPPE candidates whose reprojection errors are within this factor are ambiguous: the prior decides.
_AMBIGUOUS = 1.5


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv comes with the sim extra
        raise ImportError(f"the marker estimator needs OpenCV with cv2.aruco (pip install opencv-python): {exc}") from None
    if not hasattr(cv2, "aruco") or not hasattr(cv2.aruco, "ArucoDetector"):  # pragma: no cover
        raise ImportError(f"the marker estimator needs OpenCV >= 4.7 with the cv2.aruco class API, found {cv2.__version__}")
    return cv2


def marker_corners(size_m: float) -> np.ndarray:
    """A marker's corners in its own frame, in ArUco's order (top-left, top-right, bottom-right,
    bottom-left of the printed image; x right, y up, z out of the face)."""
    h = size_m / 2.0
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


class MarkerEstimator:
    def __init__(self, config: MarkerConfig):
        cv2 = self.cv2 = import_cv2()
        self.config = config
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = getattr(cv2.aruco, f"CORNER_REFINE_{config.corner_refinement.upper()}")
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, config.dictionary))
        self.detector = cv2.aruco.ArucoDetector(dictionary, params)
        corners = marker_corners(config.size_m)
        #: id -> (T_object_marker, the marker's corners in the object frame (4, 3))
        self.placements = {}
        for m in config.markers:
            t = m.T_object_marker()
            self.placements[m.id] = (t, corners @ t[:3, :3].T + t[:3, 3])
        self._corners = corners

    def detect(self, image: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """-> [(marker id, its 4 corners in pixels (4, 2))] for the known markers in ``image`` (RGB)."""
        gray = self.cv2.cvtColor(np.ascontiguousarray(image), self.cv2.COLOR_RGB2GRAY)
        corners, ids, _ = self.detector.detectMarkers(gray)
        if ids is None:
            return []
        shift = _APRILTAG_SHIFT_PX if self.config.corner_refinement == "apriltag" else 0.0
        return [(int(i), c.reshape(4, 2).astype(np.float64) - shift) for i, c in zip(ids.reshape(-1), corners)
                if int(i) in self.placements]

    def estimate(self, frame: Frame, view: CameraView, prior: Pose | None = None) -> Estimate:
        cv2 = self.cv2
        found = self.detect(frame.image)
        if not found:
            return Estimate.missing("no known marker in view")
        sides = [(i, c, float(np.min(np.linalg.norm(c - np.roll(c, 1, axis=0), axis=1)))) for i, c in found]
        found = [(i, c) for i, c, side in sides if side >= self.config.min_side_px]
        if not found:
            return Estimate.missing(f"markers {[i for i, _, _ in sides]} smaller than {self.config.min_side_px:g} px")
        K = view.intrinsics.matrix()
        dist = np.asarray(view.distortion, dtype=np.float64)
        object_pts = np.concatenate([self.placements[i][1] for i, _ in found])
        image_pts = np.concatenate([c for _, c in found])
        candidates = []  # (reprojection RMS over all corners, T_camera_object)
        for i, c in found:
            n, rvecs, tvecs, _ = cv2.solvePnPGeneric(self._corners, c, K, dist, flags=cv2.SOLVEPNP_IPPE_SQUARE)
            T_object_marker = self.placements[i][0]
            for rvec, tvec in zip(rvecs[:n], tvecs[:n]):
                T_camera_object = make_transform(cv2.Rodrigues(rvec)[0], tvec.reshape(3)) @ invert(T_object_marker)
                candidates.append((self._rms(object_pts, image_pts, T_camera_object, K, dist), T_camera_object))
        candidates.sort(key=lambda c: c[0])
        best_err, best = candidates[0]
        if prior is not None:
            close = [c for c in candidates if c[0] <= _AMBIGUOUS * best_err + 0.05]
            T_camera_prior = invert(view.T_arm_camera) @ prior.matrix()
            best_err, best = min(close, key=lambda c: rotation_error_deg(Pose.from_matrix(c[1]).quaternion,
                                                                           Pose.from_matrix(T_camera_prior).quaternion))
        rvec, tvec = cv2.Rodrigues(best[:3, :3])[0], best[:3, 3].reshape(3, 1).copy()
        rvec, tvec = cv2.solvePnPRefineLM(object_pts, image_pts, K, dist, rvec, tvec)
        refined = make_transform(cv2.Rodrigues(rvec)[0], tvec.reshape(3))
        err = self._rms(object_pts, image_pts, refined, K, dist)
        if not err <= best_err + 1e-9:  # LM never makes it worse; guard against a degenerate refinement
            refined, err = best, best_err
        ids = tuple(i for i, _ in found)
        if not (math.isfinite(err) and err <= self.config.max_reprojection_px):
            return Estimate(pose=None, reason=f"markers {list(ids)} reproject {err:.2f} px > {self.config.max_reprojection_px:g} px", markers=ids)
        if refined[2, 3] <= 0:
            return Estimate(pose=None, reason="pose behind the camera", markers=ids)
        return Estimate(pose=Pose.from_matrix(view.T_arm_camera @ refined), markers=ids, reprojection_px=err)

    def _rms(self, object_pts: np.ndarray, image_pts: np.ndarray, T: np.ndarray, K: np.ndarray, dist: np.ndarray) -> float:
        rvec = self.cv2.Rodrigues(T[:3, :3])[0]
        proj, _ = self.cv2.projectPoints(object_pts, rvec, T[:3, 3].reshape(3, 1), K, dist)
        return float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - image_pts) ** 2, axis=1))))
