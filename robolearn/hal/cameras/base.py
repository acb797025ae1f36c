"""What every camera backend shares: its spec, the frames it gives and the ``Camera`` protocol.

Modelled on LeRobot's cameras (a spec readable before connecting, so an observation layout
can be declared before any device is opened) and on diffusion_policy's real-world stack
(every frame carries a host ``time.monotonic()`` timestamp, so frames can be aligned with
arm state by time). Images are uint8 H x W x 3 RGB; depth is float32 metres H x W x 1.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from robolearn.hal.arm import ArmError


class CameraError(ArmError):
    """A camera that cannot be opened or read. An ``ArmError``: to the control loop a camera
    that fails is part of the arm failing, and the loop stops the arm."""


class StaleFrameError(CameraError):
    """The newest frame of a camera was too old for too many observations in a row."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (x to the right, y down, origin at the top-left pixel)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fovy(cls, fovy_deg: float, width: int, height: int) -> "Intrinsics":
        """A camera with square pixels and vertical field of view ``fovy_deg`` (MuJoCo's and
        PyBullet's convention): f = (height / 2) / tan(fovy / 2), principal point at the centre."""
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
        return cls(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0)

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class CameraSpec:
    """Readable without connecting. ``intrinsics`` is None when not known: an OpenCV camera
    without a calibration file, or a simulated camera whose model is built at connect time
    (then ``connect()`` fills it in)."""

    name: str
    width: int
    height: int
    fps: float
    intrinsics: Intrinsics | None = None
    has_depth: bool = False

    @property
    def image_key(self) -> str:
        return f"{self.name}_image"

    @property
    def depth_key(self) -> str:
        return f"{self.name}_depth"

    @property
    def age_key(self) -> str:
        return f"{self.name}_image_age_s"


@dataclass
class Frame:
    """One capture. ``timestamp`` is ``time.monotonic()`` when the picture was taken (for a
    simulated camera: when the simulator state it shows was read). ``index`` counts frames
    of the device; a simulated camera with a ``SimSync`` uses the sync's state version, so
    a frame can be matched with the arm state it shows."""

    image: np.ndarray
    timestamp: float
    index: int
    depth: np.ndarray | None = None


@runtime_checkable
class Camera(Protocol):
    """``spec`` is readable before ``connect()``. ``read()`` blocks until the next frame and
    returns it; capture threads call it, never the control loop."""

    spec: CameraSpec

    def connect(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    def read(self) -> Frame: ...

    def close(self) -> None: ...


class SimSync:
    """The lock and state counter a simulated arm shares with its cameras.

    Why: a simulator's state is plain memory that ``send`` rewrites. A camera rendering from
    another thread while the physics steps would show a torn state (half of one step, half
    of the next), and which step a frame shows would depend on thread timing. So the arm
    wrapper (``CameraArm``) steps the simulator under ``lock`` and then calls ``advanced()``;
    a simulated camera reads the state under the same lock, stamps the frame with
    ``version``, and renders afterwards. A frame whose index equals ``version`` shows exactly
    the state the arm reports, whatever the timing."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._changed = threading.Condition()
        self.version = 0

    def advanced(self) -> None:
        """The simulator state changed (a step, a reset): cameras render the new one."""
        with self._changed:
            self.version += 1
            self._changed.notify_all()

    def wait_newer(self, seen: int, timeout_s: float) -> int:
        """Block until ``version`` differs from ``seen`` or ``timeout_s`` passes; -> version."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen, timeout=timeout_s)
            return self.version


def check_image(name: str, image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The frame as uint8 (H, W, 3), or CameraError naming the camera and what it gave."""
    image = np.asarray(image)
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise CameraError(f"camera {name!r}: expected a uint8 image of shape {(height, width, 3)}, "
                          f"got {image.dtype} {image.shape}")
    return image
