"""Intel RealSense colour (and depth aligned to it) through ``pyrealsense2``.

``pyrealsense2`` is the optional ``realsense`` extra: this module imports without it, and
connecting without it is a CameraError naming the extra. The tests drive this class through
a fake ``rs`` module passed as ``rs_module`` (no device exists where they run), which is also
how the calls below are pinned to pyrealsense2's API.

Auto-exposure needs a few dozen frames to settle after the stream starts; ``connect()``
throws away ``warmup_frames`` frames so the first frame a policy sees is a settled one.
Frames are stamped with the host's ``time.monotonic()`` when they arrive (the device's own
timestamps are in another clock domain).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from robolearn.hal.cameras.base import CameraError, CameraSpec, Frame, Intrinsics, check_image


def import_rs() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise CameraError(f"RealSense cameras need pyrealsense2 (pip install 'robolearn[realsense]'): {exc}") from None
    return rs


class RealSenseCamera:
    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, depth: bool = False, name: str = "agentview",
                 serial: str | None = None, warmup_frames: int = 30, timeout_ms: int = 1000, rs_module: Any = None):
        self.serial = serial
        self.warmup_frames = int(warmup_frames)
        self.timeout_ms = int(timeout_ms)
        self.spec = CameraSpec(name=name, width=int(width), height=int(height), fps=float(fps), has_depth=bool(depth))
        self._rs = rs_module
        self._pipeline: Any = None
        self._align: Any = None
        self._depth_scale = 1.0

    @property
    def connected(self) -> bool:
        return self._pipeline is not None

    def connect(self) -> None:
        if self._pipeline is not None:
            return
        rs = self._rs if self._rs is not None else import_rs()
        s = self.spec
        config = rs.config()
        if self.serial:
            config.enable_device(str(self.serial))
        config.enable_stream(rs.stream.color, s.width, s.height, rs.format.rgb8, int(s.fps))
        if s.has_depth:
            config.enable_stream(rs.stream.depth, s.width, s.height, rs.format.z16, int(s.fps))
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:  # pyrealsense2 reports every device problem as RuntimeError
            raise CameraError(f"camera {s.name!r}: RealSense {self.serial or '(first device)'} did not start "
                              f"{s.width}x{s.height} at {s.fps:g} fps: {exc}") from None
        try:
            self._configure(rs, profile)
            for _ in range(self.warmup_frames):
                pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as exc:
            pipeline.stop()
            raise CameraError(f"camera {s.name!r}: RealSense warm-up failed: {exc}") from None
        self._rs, self._pipeline = rs, pipeline

    def _configure(self, rs: Any, profile: Any) -> None:
        i = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self.spec.intrinsics = Intrinsics(fx=float(i.fx), fy=float(i.fy), cx=float(i.ppx), cy=float(i.ppy))
        if self.spec.has_depth:
            self._depth_scale = float(profile.get_device().first_depth_sensor().get_depth_scale())
            self._align = rs.align(rs.stream.color)

    def read(self) -> Frame:
        if self._pipeline is None:
            raise CameraError(f"camera {self.spec.name!r}: not connected; call connect() first")
        s = self.spec
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as exc:  # a timeout: the device stalled or was unplugged
            raise CameraError(f"camera {s.name!r}: no RealSense frame within {self.timeout_ms} ms: {exc}") from None
        timestamp = time.monotonic()
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise CameraError(f"camera {s.name!r}: RealSense frame set without a colour frame")
        image = check_image(s.name, np.asanyarray(color.get_data()).copy(), s.width, s.height)
        depth = None
        if self._align is not None:
            d = frames.get_depth_frame()
            if not d:
                raise CameraError(f"camera {s.name!r}: RealSense frame set without a depth frame")
            depth = (np.asanyarray(d.get_data()).astype(np.float32) * self._depth_scale)[..., None]
        return Frame(image=image, timestamp=timestamp, index=int(color.get_frame_number()), depth=depth)

    def close(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            finally:
                self._pipeline = None
                self._align = None
