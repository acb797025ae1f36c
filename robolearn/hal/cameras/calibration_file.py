"""The camera calibration file: what ``robolearn calibrate`` writes and controller files name.

    # cam.yaml
    version: 1
    camera: wrist                 # the view this calibration belongs to
    width: 640                    # the resolution it holds for (pixels)
    height: 480
    K: [[615.2, 0.0, 320.4], [0.0, 615.9, 241.1], [0.0, 0.0, 1.0]]
    distortion: [k1, k2, p1, p2, k3]        # OpenCV's model: 4, 5, 8, 12 or 14 numbers
    rms_px: 0.23                  # RMS reprojection error of the fit
    views: 14                     # images the fit used
    date: '2025-01-31T10:12:03+00:00'
    extrinsic:                    # from `robolearn calibrate hand-eye`; absent before
      frame: gripper              # gripper (eye-in-hand) or base (eye-to-hand)
      position: [x, y, z]         # metres: T_frame_camera, the camera's pose in that frame,
      quaternion: [x, y, z, w]    # OpenCV camera axes (x right, y down, z forward)
      method: horaud              # or model: a simulated camera's pose read from its scene
      samples: 15
      residual_mm: 0.4
      residual_deg: 0.05
      disagreement_mm: 0.2        # between the two methods below
      disagreement_deg: 0.01
      tsai: {position: [...], quaternion: [...]}
      horaud: {position: [...], quaternion: [...]}
      date: '2025-01-31T10:40:00+00:00'

Every number is checked where it is read (type, shape, finiteness, sign; K has the pinhole
form; the principal point lies inside the image; a quaternion has unit norm), and a wrong
one is one ``ConfigError`` naming the file and the field. Files are written atomically
(a temporary file renamed into place): a reader never sees half a file, and of two
writers the last one wins whole.

A file holding only ``width, height, fx, fy, cx, cy`` (the intrinsics-only form the OpenCV
camera reads) is still accepted where a view names a calibration.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robolearn.geometry import matrix_to_pose, pose_to_matrix
from robolearn.config import ConfigError, checked, from_dict, load_yaml, non_negative, positive
from robolearn.data.format import atomic_write_bytes
from robolearn.hal.cameras.base import Intrinsics

FILE_VERSION = 1
FRAMES = ("gripper", "base")
DISTORTION_LENGTHS = (4, 5, 8, 12, 14)
#: How far a quaternion's norm may be from 1 (rounding in a hand-edited file) before it is refused.
QUATERNION_TOLERANCE = 1e-3


@dataclass
class Extrinsic:
    """T_frame_camera: the camera's pose in ``frame`` (OpenCV camera axes)."""

    frame: str
    transform: np.ndarray
    method: str
    samples: int
    residual_mm: float
    residual_deg: float
    disagreement_mm: float
    disagreement_deg: float
    #: Each method's solution (tsai, horaud), kept side by side for inspection.
    alternatives: dict[str, np.ndarray] = field(default_factory=dict)
    date: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


@dataclass
class CameraCalibration:
    camera: str
    width: int
    height: int
    K: np.ndarray
    distortion: np.ndarray
    rms_px: float
    views: int
    date: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    extrinsic: Extrinsic | None = None

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics(fx=float(self.K[0, 0]), fy=float(self.K[1, 1]), cx=float(self.K[0, 2]), cy=float(self.K[1, 2]))

    def age_days(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.timezone.utc)
        return (now - self.date).total_seconds() / 86400.0


# What the file holds, field by field: from_dict checks types, unknown keys, bools and NaN;
# the shapes and the pinhole form are checked after it.
@dataclass
class PoseFields:
    position: list[float]
    quaternion: list[float]


@dataclass
class _ExtrinsicFields:
    frame: str = checked(choices=FRAMES)
    position: list[float] = checked()
    quaternion: list[float] = checked()
    #: tsai or horaud (a hand-eye fit); model: read from a simulator's model, exact by construction.
    method: str = checked(choices=("tsai", "horaud", "model"))
    samples: int = positive()
    residual_mm: float = non_negative()
    residual_deg: float = non_negative()
    disagreement_mm: float = non_negative()
    disagreement_deg: float = non_negative()
    date: Any = None
    tsai: PoseFields | None = None
    horaud: PoseFields | None = None


@dataclass
class _FileFields:
    version: int = checked(choices=(FILE_VERSION,))
    camera: str = checked()
    width: int = positive()
    height: int = positive()
    K: list[list[float]] = checked()
    distortion: list[float] = checked()
    rms_px: float = non_negative()
    views: int = positive()
    date: Any = None
    extrinsic: _ExtrinsicFields | None = None


def _date(source: str, where: str, value: Any) -> dt.datetime:
    """An ISO 8601 date or time (YAML may already have parsed it); a time without a zone is UTC."""
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            out = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(source, where, f"expected an ISO 8601 date such as 2025-01-31T10:12:03+00:00, got {value!r}") from None
    else:
        raise ConfigError(source, where, f"expected an ISO 8601 date, got {value!r}")
    return out if out.tzinfo is not None else out.replace(tzinfo=dt.timezone.utc)


def pose_matrix(source: str, where: str, position: list[float], quaternion: list[float]) -> np.ndarray:
    if len(position) != 3:
        raise ConfigError(source, f"{where}position", f"expected 3 numbers (metres), got {len(position)}")
    if len(quaternion) != 4:
        raise ConfigError(source, f"{where}quaternion", f"expected 4 numbers (x, y, z, w), got {len(quaternion)}")
    norm = math.sqrt(sum(q * q for q in quaternion))
    if abs(norm - 1.0) > QUATERNION_TOLERANCE:
        raise ConfigError(source, f"{where}quaternion", f"expected a unit quaternion (x, y, z, w), its norm is {norm:.6g}")
    return pose_to_matrix(np.array(position), np.array(quaternion))


def _intrinsic_matrix(source: str, k: list[list[float]], width: int, height: int) -> np.ndarray:
    if len(k) != 3 or any(len(row) != 3 for row in k):
        raise ConfigError(source, "K", f"expected a 3x3 matrix, got rows of {[len(r) for r in k]} numbers")
    m = np.array(k, dtype=np.float64)
    if not (m[0, 1] == 0 and m[1, 0] == 0 and m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1):
        raise ConfigError(source, "K", "expected the pinhole form [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
    for name, (i, j) in {"fx": (0, 0), "fy": (1, 1)}.items():
        if not m[i, j] > 0:
            raise ConfigError(source, f"K ({name})", f"expected a focal length > 0 pixels, got {m[i, j]!r}")
    for name, value, size in (("cx", m[0, 2], width), ("cy", m[1, 2], height)):
        if not 0 < value < size:
            raise ConfigError(source, f"K ({name})", f"the principal point {value!r} lies outside the image (0..{size} pixels)")
    return m


def _extrinsic(source: str, e: _ExtrinsicFields) -> Extrinsic:
    alternatives = {}
    for name in ("tsai", "horaud"):
        p = getattr(e, name)
        if p is not None:
            alternatives[name] = pose_matrix(source, f"extrinsic.{name}.", p.position, p.quaternion)
    return Extrinsic(frame=e.frame, transform=pose_matrix(source, "extrinsic.", e.position, e.quaternion), method=e.method,
                     samples=e.samples, residual_mm=e.residual_mm, residual_deg=e.residual_deg,
                     disagreement_mm=e.disagreement_mm, disagreement_deg=e.disagreement_deg, alternatives=alternatives,
                     date=_date(source, "extrinsic.date", e.date))


def calibration_from_dict(data: Any, source: str) -> CameraCalibration:
    f = from_dict(_FileFields, data, source)
    if f.date is None:
        raise ConfigError(source, "date", "missing required key")
    if f.extrinsic is not None and f.extrinsic.date is None:
        raise ConfigError(source, "extrinsic.date", "missing required key")
    if len(f.distortion) not in DISTORTION_LENGTHS:
        raise ConfigError(source, "distortion", f"expected {', '.join(map(str, DISTORTION_LENGTHS))} numbers "
                                                f"(OpenCV's model), got {len(f.distortion)}")
    return CameraCalibration(camera=f.camera, width=f.width, height=f.height,
                             K=_intrinsic_matrix(source, f.K, f.width, f.height),
                             distortion=np.array(f.distortion, dtype=np.float64), rms_px=f.rms_px, views=f.views,
                             date=_date(source, "date", f.date),
                             extrinsic=None if f.extrinsic is None else _extrinsic(source, f.extrinsic))


def load_calibration(path: str | os.PathLike) -> CameraCalibration:
    return calibration_from_dict(load_yaml(path), str(path))


def _numbers(a: np.ndarray) -> Any:
    return np.asarray(a, dtype=np.float64).round(9).tolist()


def pose_dict(t: np.ndarray) -> dict[str, list[float]]:
    p, q = matrix_to_pose(t)
    return {"position": _numbers(p), "quaternion": _numbers(q)}


def calibration_to_dict(cal: CameraCalibration) -> dict[str, Any]:
    out: dict[str, Any] = {"version": FILE_VERSION, "camera": cal.camera, "width": int(cal.width), "height": int(cal.height),
                           "K": _numbers(cal.K), "distortion": _numbers(cal.distortion), "rms_px": round(float(cal.rms_px), 6),
                           "views": int(cal.views), "date": cal.date.isoformat(timespec="seconds")}
    e = cal.extrinsic
    if e is not None:
        out["extrinsic"] = {"frame": e.frame, **pose_dict(e.transform), "method": e.method, "samples": int(e.samples),
                            "residual_mm": round(float(e.residual_mm), 6), "residual_deg": round(float(e.residual_deg), 6),
                            "disagreement_mm": round(float(e.disagreement_mm), 6),
                            "disagreement_deg": round(float(e.disagreement_deg), 6),
                            **{name: pose_dict(t) for name, t in e.alternatives.items()},
                            "date": e.date.isoformat(timespec="seconds")}
    return out


HEADER = ("# robolearn camera calibration (robolearn/hal/cameras/calibration_file.py). K and distortion in OpenCV's model;\n"
          "# extrinsic: the camera's pose in `frame` (T_frame_camera), camera axes x right, y down, z forward.\n")


def write_calibration(path: str | os.PathLike, cal: CameraCalibration) -> Path:
    """Write ``cal`` atomically; the text is checked by reading it back before it replaces anything."""
    path = Path(path)
    data = calibration_to_dict(cal)
    text = HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    calibration_from_dict(yaml.safe_load(text), str(path))
    atomic_write_bytes(path, text.encode())
    return path


def check_calibration(cal: CameraCalibration, source: str | os.PathLike, *, width: int | None = None,
                      height: int | None = None, camera: str | None = None, max_age_days: float | None = None,
                      need_extrinsic: bool = False, now: dt.datetime | None = None) -> CameraCalibration:
    """Refuse a calibration that does not belong to this camera or is too old to trust.

    Intrinsics hold for one resolution only (a camera switching modes crops or bins its
    sensor), and a camera knocked or refocused since calibrating is wrong without any sign,
    so deploy asks for a ``max_age_days``. Errors name the file and the field."""
    source = str(source)
    if camera is not None and cal.camera != camera:
        raise ConfigError(source, "camera", f"calibrated camera {cal.camera!r}, but this view is {camera!r} (recalibrate, "
                                            f"or set camera: {camera} in the file if it is the same camera renamed)")
    if width is not None and height is not None and (cal.width, cal.height) != (int(width), int(height)):
        raise ConfigError(source, "width", f"calibrated for {cal.width}x{cal.height}, but the camera runs at {width}x{height}")
    if need_extrinsic and cal.extrinsic is None:
        raise ConfigError(source, "extrinsic", "missing: run `robolearn calibrate hand-eye` for this camera")
    if max_age_days is not None:
        for where, date in (("date", cal.date), ("extrinsic.date", cal.extrinsic.date if cal.extrinsic else None)):
            if date is None:
                continue
            age = ((now or dt.datetime.now(dt.timezone.utc)) - date).total_seconds() / 86400.0
            if age > max_age_days:
                raise ConfigError(source, where, f"calibrated {age:.1f} days ago ({date.date().isoformat()}), older than "
                                                 f"max_age_days {max_age_days:g}; recalibrate with `robolearn calibrate`")
            if age < -1.0:
                raise ConfigError(source, where, f"dated {date.isoformat()}, in the future; check the clock it was made with")
    return cal


def calibration_for_view(path: str | os.PathLike, camera: str, width: int, height: int) -> CameraCalibration | Intrinsics:
    """What a view's ``calibration:`` file says: a checked ``CameraCalibration`` for this
    view and resolution, or ``Intrinsics`` for a file in the intrinsics-only form."""
    data = load_yaml(path)
    if "K" not in data and "fx" in data:
        from robolearn.hal.cameras.opencv_camera import load_calibration as load_intrinsics_only

        return load_intrinsics_only(path, width, height)
    return check_calibration(calibration_from_dict(data, str(path)), path, width=width, height=height, camera=camera)
