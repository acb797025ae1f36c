"""Intrinsics from ChArUco detections (``cv2.calibrateCamera``), and a board's pose in one view.

Why refuse rather than fit: ``cv2.calibrateCamera`` returns numbers from almost any input,
and a focal length fitted to three fronto-parallel views is off by several percent without
any error. A view with fewer than ``min_corners`` corners says little and is skipped (its
points are nearly collinear or too few for its own pose), and fewer than ``min_views``
usable views, or a fit whose RMS reprojection error exceeds ``max_rms_px``, is refused with
what to do about it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from robolearn.calibration.board import Detection, import_cv2
from robolearn.calibration.errors import CalibrationError
from robolearn.geometry import make_transform

#: Fewer corners than this in a view: the view is skipped (a pose needs 4 points, and a few
#: more keep nearly collinear sets out).
MIN_CORNERS = 6
#: Fewer usable views than this: refused. Each view fixes 6 pose numbers and the camera has
#: 4 + 5 more; fronto-parallel-only sets are degenerate however many there are, so the
#: capture asks for tilted views too.
MIN_VIEWS = 5


@dataclass
class IntrinsicsResult:
    width: int
    height: int
    K: np.ndarray
    distortion: np.ndarray
    rms_px: float
    #: RMS reprojection error per used view, pixels, in the order of ``used``.
    view_rms_px: list[float]
    #: The sources of the views used, and of those skipped with the reason.
    used: list[str]
    skipped: list[str] = field(default_factory=list)
    #: T_camera_board of each used view.
    board_poses: list[np.ndarray] = field(default_factory=list)

    @property
    def views(self) -> int:
        return len(self.used)


def calibrate_intrinsics(detections: Sequence[Detection], width: int, height: int, *, source: str = "views",
                         min_views: int = MIN_VIEWS, min_corners: int = MIN_CORNERS, max_rms_px: float = 1.0,
                         fix_k3: bool = False) -> IntrinsicsResult:
    """Fit K (fx, fy, cx, cy) and distortion (k1, k2, p1, p2, k3) to the views' matched points.

    ``source`` names where the views came from (a folder, a camera) in errors. ``fix_k3``
    keeps k3 at 0: with a narrow lens and views that stay away from the corners of the
    image, k3 fits noise and makes the model diverge outside the views."""
    cv2 = import_cv2()
    usable, skipped = [], []
    for d in detections:
        if d.count < min_corners:
            skipped.append(f"{d.source} ({d.count} corners)")
        else:
            usable.append(d)
    if len(usable) < min_views:
        raise CalibrationError(source, "views", f"{len(usable)} of {len(detections)} views show at least {min_corners} "
                                                f"board corners; need {min_views} (show the whole board, tilted, at several "
                                                f"places in the image)")
    objects = [d.object_points.reshape(-1, 1, 3).astype(np.float32) for d in usable]
    images = [d.image_points.reshape(-1, 1, 2).astype(np.float32) for d in usable]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    try:
        rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(objects, images, (int(width), int(height)), None, None, flags=flags)
    except cv2.error as exc:
        raise CalibrationError(source, "views", f"OpenCV could not calibrate from these views "
                               f"({str(exc).strip().splitlines()[-1]}); add views tilted towards the camera") from None
    k, dist = np.asarray(k, np.float64), np.asarray(dist, np.float64).reshape(-1)
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(dist)) and k[0, 0] > 0 and k[1, 1] > 0):
        raise CalibrationError(source, "views", "the fit diverged (non-finite or negative focal length); add tilted views")
    poses, view_rms = [], []
    for obj, img, rvec, tvec in zip(objects, images, rvecs, tvecs):
        projected, _ = cv2.projectPoints(obj, rvec, tvec, k, dist)
        view_rms.append(float(np.sqrt(np.mean(np.sum((projected - img) ** 2, axis=-1)))))
        poses.append(make_transform(cv2.Rodrigues(rvec)[0], tvec))
    if not rms <= max_rms_px:
        worst = int(np.argmax(view_rms))
        raise CalibrationError(source, "rms_px", f"RMS reprojection error {rms:.3f} px exceeds {max_rms_px:g} px (worst view: "
                               f"{usable[worst].source}, {view_rms[worst]:.3f} px); drop blurred views or re-measure the board")
    return IntrinsicsResult(width=int(width), height=int(height), K=k, distortion=dist, rms_px=float(rms),
                            view_rms_px=view_rms, used=[d.source for d in usable], skipped=skipped, board_poses=poses)


def board_pose(detection: Detection, K: np.ndarray, distortion: np.ndarray, *, source: str,
               min_corners: int = MIN_CORNERS, max_rms_px: float = 2.0) -> tuple[np.ndarray, float]:
    """T_camera_board of one view, and its RMS reprojection error in pixels.

    A pose from a view with few corners, or one that does not reproject (the wrong
    intrinsics for this camera, a board of another size than its settings say), would feed
    the hand-eye solve a wrong sample without any sign of it, so both are refused."""
    cv2 = import_cv2()
    if detection.count < min_corners:
        raise CalibrationError(source, "image", f"{detection.count} board corners found in {detection.source}; need "
                                                f"{min_corners} for a board pose")
    obj = detection.object_points.reshape(-1, 1, 3).astype(np.float64)
    img = detection.image_points.reshape(-1, 1, 2).astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, distortion, flags=cv2.SOLVEPNP_IPPE)
    if ok:
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, distortion, rvec, tvec)
    if not ok:
        raise CalibrationError(source, "image", f"no board pose could be fitted to {detection.source}")
    projected, _ = cv2.projectPoints(obj, rvec, tvec, K, distortion)
    rms = float(np.sqrt(np.mean(np.sum((projected - img) ** 2, axis=-1))))
    if not rms <= max_rms_px:
        raise CalibrationError(source, "image", f"the board pose in {detection.source} reprojects with {rms:.2f} px RMS "
                                                f"(limit {max_rms_px:g} px): wrong intrinsics or board settings?")
    return make_transform(cv2.Rodrigues(rvec)[0], tvec), rms
