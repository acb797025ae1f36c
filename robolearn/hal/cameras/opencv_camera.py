"""USB / V4L2 cameras through OpenCV's ``cv2.VideoCapture``.

``device`` is an index (0 for /dev/video0), a device path (``/dev/video2``) or anything
else VideoCapture opens, including a recorded video file: the tests read a small MP4
through exactly this class, since no camera is attached to the machines they run on.
OpenCV comes with robosuite (the ``sim`` extra) or with the ``opencv`` extra.

A device may silently give another resolution than the one asked for; a policy trained on
84 x 84 images must never be fed 640 x 480 ones, so ``connect()`` reads back what the device
gives and refuses a mismatch, naming both. A different frame rate is only logged: frames
carry their own timestamps and ages.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from robolearn.config import ConfigError, from_dict, load_yaml, non_negative, positive
from robolearn.hal.cameras.base import CameraError, CameraSpec, Frame, Intrinsics, check_image

log = logging.getLogger(__name__)


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise CameraError(f"OpenCV cameras need cv2 (pip install 'robolearn[opencv]'): {exc}") from None
    return cv2


@dataclass
class Calibration:
    """A calibration YAML: pinhole intrinsics in pixels, for the resolution given."""

    width: int = positive()
    height: int = positive()
    fx: float = positive()
    fy: float = positive()
    cx: float = non_negative()
    cy: float = non_negative()


def load_calibration(path: str | os.PathLike, width: int, height: int) -> Intrinsics:
    """Intrinsics from a calibration YAML; errors name the file and the field, including a
    calibration made for another resolution than the camera's."""
    cal = from_dict(Calibration, load_yaml(path), str(path))
    if (cal.width, cal.height) != (width, height):
        raise ConfigError(path, "width", f"calibrated for {cal.width}x{cal.height}, but the camera runs at {width}x{height}")
    return Intrinsics(fx=cal.fx, fy=cal.fy, cx=cal.cx, cy=cal.cy)


class OpenCVCamera:
    def __init__(self, device: int | str, width: int, height: int, fps: float = 30.0, name: str = "agentview",
                 calibration: str | os.PathLike | None = None):
        self.device = device
        intrinsics = load_calibration(calibration, int(width), int(height)) if calibration is not None else None
        self.spec = CameraSpec(name=name, width=int(width), height=int(height), fps=float(fps), intrinsics=intrinsics)
        self._cap: Any = None
        self._cv2: Any = None
        self._count = 0

    @property
    def connected(self) -> bool:
        return self._cap is not None

    def connect(self) -> None:
        if self._cap is not None:
            return
        cv2 = import_cv2()
        s = self.spec
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            raise CameraError(f"camera {s.name!r}: OpenCV could not open {self.device!r}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        cap.set(cv2.CAP_PROP_FPS, s.fps)
        got_w, got_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (got_w, got_h) != (s.width, s.height):
            cap.release()
            raise CameraError(f"camera {s.name!r}: asked {self.device!r} for {s.width}x{s.height}, it gives {got_w}x{got_h}")
        got_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if got_fps > 0 and abs(got_fps - s.fps) > 0.5:
            log.warning("camera %r: asked %r for %g fps, it reports %g fps", s.name, self.device, s.fps, got_fps)
        self._cap, self._cv2 = cap, cv2

    def read(self) -> Frame:
        if self._cap is None:
            raise CameraError(f"camera {self.spec.name!r}: not connected; call connect() first")
        ok, bgr = self._cap.read()
        timestamp = time.monotonic()
        if not ok or bgr is None:
            raise CameraError(f"camera {self.spec.name!r}: no frame from {self.device!r} (device lost or end of file)")
        rgb = np.ascontiguousarray(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB))
        self._count += 1
        return Frame(image=check_image(self.spec.name, rgb, self.spec.width, self.spec.height), timestamp=timestamp,
                     index=self._count)

    def close(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None
