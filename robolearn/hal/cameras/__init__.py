"""Cameras in the HAL: a small ``Camera`` protocol, capture threads that keep the newest
frame, and ``CameraArm``, which joins an arm's state and the cameras' frames into one
observation. Backends are imported lazily, so a missing optional package (OpenCV,
pyrealsense2) only affects the camera that needs it."""
from robolearn.hal.cameras.base import Camera, CameraError, CameraSpec, Frame, Intrinsics, SimSync, StaleFrameError
from robolearn.hal.cameras.camera_arm import CameraArm, CameraArmStats
from robolearn.hal.cameras.capture import CameraRig, CaptureThread
from robolearn.hal.cameras.config import CameraConfig, CamerasConfig, cameras_config, make_cameras

__all__ = [
    "Camera", "CameraArm", "CameraArmStats", "CameraConfig", "CameraError", "CameraRig", "CameraSpec", "CamerasConfig",
    "CaptureThread", "Frame", "Intrinsics", "SimSync", "StaleFrameError", "cameras_config", "make_cameras",
]
