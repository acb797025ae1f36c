"""The ``cameras:`` section of a controller YAML or deploy launch file, and ``make_cameras``.

    cameras:
      max_frame_age_ms: 100      # older frames are dropped (see CameraArm)
      max_stale_in_row: 1        # observations in a row with a dropped frame before StaleFrameError
      views:
        agentview: {type: mujoco, width: 84, height: 84}
        robot0_eye_in_hand: {type: mujoco, width: 84, height: 84}
        wrist: {type: opencv, device: /dev/video2, width: 640, height: 480, fps: 30, calibration: calib/wrist.yaml}
        front: {type: realsense, serial: "123456789", width: 640, height: 480, fps: 30, depth: true}

A view's name is its observation key prefix (``agentview`` -> ``agentview_image``); use
robomimic's names so datasets and policies line up with robomimic's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from robolearn.config import ConfigError, checked, from_dict, non_negative, positive
from robolearn.hal.cameras.base import Camera, SimSync
from robolearn.hal.cameras.capture import CameraRig

CAMERA_TYPES = ("mujoco", "pybullet", "opencv", "realsense")
SIM_TYPES = ("mujoco", "pybullet")


@dataclass
class CameraConfig:
    type: str = checked("mujoco", choices=CAMERA_TYPES)
    width: int = positive(84)
    height: int = positive(84)
    #: Requested frame rate (real cameras); a simulated camera renders once per control step.
    fps: float = positive(20.0)
    depth: bool = False
    #: mujoco: the camera's name in the model when it differs from the view's name.
    camera: str | None = None
    #: mujoco: draw reflections (robosuite's own renderer does; twice the cost in software rendering).
    reflections: bool = False
    #: opencv: device index, /dev/videoN path or video file.
    device: int | str = 0
    #: A calibration file (``robolearn calibrate``; robolearn/hal/cameras/calibration_file.py), relative to
    #: the config file: the view's intrinsics come from it, whatever the backend reports.
    calibration: str | None = None
    #: realsense: serial number (the first device when not given).
    serial: str | None = None
    #: realsense: frames thrown away after starting, while auto-exposure settles.
    warmup_frames: int = non_negative(30)
    #: pybullet: camera pose (metres, world frame) and optics.
    eye: list[float] = field(default_factory=lambda: [1.2, 0.0, 0.8])
    target: list[float] = field(default_factory=lambda: [0.5, 0.0, 0.1])
    fov_deg: float = positive(60.0)


@dataclass
class CamerasConfig:
    max_frame_age_ms: float = positive(100.0)
    max_stale_in_row: int = positive(1)
    views: dict[str, CameraConfig] = field(default_factory=dict)

    @property
    def max_frame_age_s(self) -> float:
        return self.max_frame_age_ms / 1e3


def cameras_config(section: Mapping[str, Any] | None, source: str = "cameras") -> CamerasConfig:
    """Check a ``cameras:`` section; errors name ``source`` and the dotted field (``cameras.views.wrist.width``)."""
    cfg = from_dict(CamerasConfig, section, str(source), field_prefix="cameras.")
    for name, view in cfg.views.items():
        where = f"cameras.views.{name}"
        if not name.isidentifier():
            raise ConfigError(source, where, "a view's name becomes an observation key prefix; use letters, digits and _")
        if len(view.eye) != 3 or len(view.target) != 3:
            raise ConfigError(source, f"{where}.eye", f"expected eye and target as 3 numbers each, got {view.eye!r}, {view.target!r}")
    return cfg


def _innermost(arm: Any) -> Any:
    """The simulator arm under any wrappers (shield, task binding): follow ``.arm``."""
    seen = 0
    while hasattr(arm, "__dict__") and "arm" in vars(arm) and seen < 16:
        arm, seen = vars(arm)["arm"], seen + 1
    return arm


def _build_one(name: str, view: CameraConfig, source: str, sim: Any, sync: SimSync | None) -> Camera:
    camera = _build_backend(name, view, source, sim, sync)
    if view.calibration is None:
        return camera
    from robolearn.hal.cameras.calibrated_camera import CalibratedCamera
    from robolearn.hal.cameras.calibration_file import calibration_for_view

    path = Path(view.calibration).expanduser()
    if not path.is_absolute() and Path(source).is_file():
        path = Path(source).parent / path
    if not path.is_file():
        raise ConfigError(source, f"cameras.views.{name}.calibration", f"no such file: {path}")
    return CalibratedCamera(camera, calibration_for_view(path, name, view.width, view.height), str(path))


def _build_backend(name: str, view: CameraConfig, source: str, sim: Any, sync: SimSync | None) -> Camera:
    where = f"cameras.views.{name}"
    if view.type in SIM_TYPES and sim is None:
        raise ConfigError(source, f"{where}.type", f"a {view.type} camera renders a simulator, but this arm is not simulated")
    if view.type == "mujoco":
        from robolearn.hal.cameras.mujoco_camera import MujocoCamera, robosuite_handles

        return MujocoCamera(robosuite_handles(_innermost(sim)), view.camera or name, view.width, view.height, view.fps,
                            depth=view.depth, name=name, sync=sync, reflections=view.reflections)
    if view.type == "pybullet":
        from robolearn.hal.cameras.pybullet_camera import PyBulletCamera, pybullet_client

        return PyBulletCamera(pybullet_client(_innermost(sim)), view.width, view.height, view.fps, eye=view.eye,
                              target=view.target, fov_deg=view.fov_deg, depth=view.depth, name=name, sync=sync)
    if view.type == "opencv":
        from robolearn.hal.cameras.opencv_camera import OpenCVCamera

        if view.depth:
            raise ConfigError(source, f"{where}.depth", "OpenCV cameras give colour only")
        return OpenCVCamera(view.device, view.width, view.height, view.fps, name=name)
    from robolearn.hal.cameras.realsense_camera import RealSenseCamera

    return RealSenseCamera(view.width, view.height, view.fps, depth=view.depth, name=name, serial=view.serial,
                           warmup_frames=view.warmup_frames)


def make_cameras(section: Mapping[str, Any] | CamerasConfig | None, source: str = "cameras", sim: Any = None) -> tuple[CameraRig, CamerasConfig]:
    """Build the cameras a ``cameras:`` section names (not connected yet) -> (rig, checked config).

    ``sim``: the simulated arm (or a wrapper of it) that ``mujoco``/``pybullet`` views render;
    None for a real arm. Simulated views share one ``SimSync`` (``rig.sync``), which the
    ``CameraArm`` built around that arm steps under."""
    cfg = section if isinstance(section, CamerasConfig) else cameras_config(section, source)
    sync = SimSync() if any(v.type in SIM_TYPES for v in cfg.views.values()) else None
    cams = [_build_one(name, view, str(source), sim, sync) for name, view in cfg.views.items()]
    return CameraRig(cams, sync=sync), cfg


def wrap_with_cameras(arm: Any, section: Mapping[str, Any] | CamerasConfig | None, source: str = "cameras", sim: bool = False) -> Any:
    """``CameraArm(arm, rig)`` for the section's views (``arm`` unchanged when there are none).
    ``sim``: the arm is a simulator whose model the mujoco/pybullet views render."""
    from robolearn.hal.cameras.camera_arm import CameraArm

    rig, cfg = make_cameras(section, source, sim=arm if sim else None)
    if not rig.threads:
        return arm
    return CameraArm(arm, rig, max_frame_age_s=cfg.max_frame_age_s, max_stale_in_row=cfg.max_stale_in_row)
