"""A camera whose intrinsics come from a calibration file, whatever its backend says.

Why a wrapper: backends fill ``spec.intrinsics`` themselves (a simulated camera from its
field of view when it connects, a RealSense from its factory calibration), and a file the
user measured must win over both, before connecting and after every reconnect or model
rebuild. The file's extrinsic (where the camera sits on the robot) travels with it as
``calibration`` for deploy to read.
"""
from __future__ import annotations

from robolearn.hal.cameras.calibration_file import CameraCalibration
from robolearn.hal.cameras.base import Camera, Frame, Intrinsics


class CalibratedCamera:
    def __init__(self, camera: Camera, calibration: CameraCalibration | Intrinsics, source: str):
        self.camera = camera
        self.source = source
        self.calibration = calibration if isinstance(calibration, CameraCalibration) else None
        self.intrinsics = calibration.intrinsics if isinstance(calibration, CameraCalibration) else calibration
        self.spec = camera.spec
        self.spec.intrinsics = self.intrinsics

    @property
    def sync(self):
        """The wrapped simulated camera's ``SimSync`` (``CameraArm`` matches frames to states by it)."""
        return getattr(self.camera, "sync", None)

    @property
    def connected(self) -> bool:
        return self.camera.connected

    def connect(self) -> None:
        self.camera.connect()
        self.spec.intrinsics = self.intrinsics

    def read(self) -> Frame:
        frame = self.camera.read()
        self.spec.intrinsics = self.intrinsics
        return frame

    def close(self) -> None:
        self.camera.close()
