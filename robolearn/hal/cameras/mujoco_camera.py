"""A named camera of a MuJoCo model (robosuite's envs included), rendered with ``mujoco.Renderer``.

Rendering uses ``MUJOCO_GL`` (default ``osmesa``: software, no GPU or display needed). With a
``SimSync`` the camera renders each new simulator state once: it waits for the arm wrapper
to report a change, copies the scene (``update_scene``, a fraction of a millisecond) under
the sync's lock, and draws and reads the pixels outside it. The physics never waits for
drawing, and a frame always shows one whole step, stamped with that step's state version.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from robolearn.hal.cameras.base import CameraError, CameraSpec, Frame, Intrinsics, SimSync

#: -> (mujoco.MjModel, mujoco.MjData), asked at connect and at every frame (a rebuilt model is followed).
Handles = Callable[[], tuple[Any, Any]]


def robosuite_handles(arm: Any) -> Handles:
    """The raw MuJoCo model and data of a ``RobosuiteArm`` (robosuite 1.5 wraps them as
    ``env.sim.model._model`` and ``env.sim.data._data``); valid once the arm is connected."""

    def handles() -> tuple[Any, Any]:
        env = getattr(arm, "env", None)
        if env is None:
            raise CameraError(f"{getattr(getattr(arm, 'spec', None), 'name', 'arm')}: not connected; connect the arm before its cameras")
        return env.sim.model._model, env.sim.data._data

    return handles


def _small_renderer(mujoco: Any, model: Any, width: int, height: int, samples: int) -> Any:
    """A renderer whose offscreen buffer is the image's size with ``samples`` x multisampling.

    Why: MuJoCo sizes a context's offscreen buffer from the model's ``visual`` settings
    (robosuite: 640 x 480, 4 samples) and resolves the whole buffer every frame; in software
    rendering that halves the frame rate of an 84 x 84 camera. The settings are read only
    when the context is made, so they are set for this one and put back at once (the
    physics never reads them)."""
    vis = model.vis
    saved = (vis.global_.offwidth, vis.global_.offheight, vis.quality.offsamples)
    vis.global_.offwidth, vis.global_.offheight, vis.quality.offsamples = width, height, samples
    try:
        return mujoco.Renderer(model, height=height, width=width)
    finally:
        vis.global_.offwidth, vis.global_.offheight, vis.quality.offsamples = saved


def _mujoco():
    """MuJoCo, with software rendering single-threaded unless the user chose otherwise:
    llvmpipe (Mesa's software rasterizer behind osmesa) otherwise starts a thread per core for
    every context, and for 84 x 84 frames those threads only compete with the capture
    threads and the control loop (on 2 cores it doubled the Lift loop's overruns). Mesa reads
    ``LP_NUM_THREADS`` when the process makes its first GL context."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    if os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        import mujoco
    except ImportError as exc:
        raise CameraError(f"MuJoCo cameras need the mujoco package (pip install 'robolearn[sim]'): {exc}") from None
    return mujoco


class MujocoCamera:
    """``camera``: the camera's name in the model (robosuite: ``agentview``,
    ``robot0_eye_in_hand``, ...); ``name``: the observation key prefix (default the same).
    ``wait_s``: with a sync, how long ``read()`` waits for a new state before rendering the
    current one again (so a capture thread notices ``stop`` promptly). ``samples``:
    multisampling (anti-aliasing) of the offscreen buffer; 0 keeps software rendering fast.
    ``reflections``: MuJoCo draws the whole scene a second time for reflective surfaces
    (robosuite's table), which doubles the cost of a software-rendered frame and changes an
    84 x 84 image by a fraction of a grey level on average; off unless asked for."""

    def __init__(self, handles: Handles, camera: str, width: int = 84, height: int = 84, fps: float = 20.0,
                 depth: bool = False, name: str | None = None, sync: SimSync | None = None, wait_s: float = 0.2,
                 samples: int = 0, reflections: bool = False):
        self.samples = int(samples)
        self.reflections = bool(reflections)
        self.handles = handles
        self.camera = camera
        self.sync = sync
        self.wait_s = wait_s
        self.spec = CameraSpec(name=name or camera, width=int(width), height=int(height), fps=float(fps), has_depth=bool(depth))
        self._renderer: Any = None
        self._model: Any = None
        self._cam_id = -1
        self._seen = -1
        self._count = 0

    @property
    def connected(self) -> bool:
        return self._renderer is not None

    def connect(self) -> None:
        """Find the camera and build the renderer (in the calling thread, which must be the
        one that reads: the GL context belongs to it)."""
        if self._renderer is None:
            self._build(*self.handles())

    def _build(self, model: Any, data: Any) -> None:
        mujoco = _mujoco()
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
        if cam_id < 0:
            names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
            raise CameraError(f"camera {self.spec.name!r}: the MuJoCo model has no camera {self.camera!r}; it has {names}")
        s = self.spec
        renderer = _small_renderer(mujoco, model, s.width, s.height, self.samples)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(self.reflections)
        self.close()
        self._renderer, self._model, self._cam_id = renderer, model, cam_id
        s.intrinsics = Intrinsics.from_fovy(float(model.cam_fovy[cam_id]), s.width, s.height)

    def read(self) -> Frame:
        if self._renderer is None:
            raise CameraError(f"camera {self.spec.name!r}: not connected; call connect() first")
        if self.sync is not None:
            self.sync.wait_newer(self._seen, self.wait_s)
        index, timestamp = self._snapshot()
        image = self._renderer.render().copy()
        depth = None
        if self.spec.has_depth:
            self._renderer.enable_depth_rendering()
            try:
                depth = self._renderer.render().astype(np.float32)[..., None]
            finally:
                self._renderer.disable_depth_rendering()
        return Frame(image=image, timestamp=timestamp, index=index, depth=depth)

    def _snapshot(self) -> tuple[int, float]:
        """Copy the current state into the renderer's scene; -> (frame index, timestamp)."""
        if self.sync is None:
            return self._update_scene(), time.monotonic()
        with self.sync.lock:
            self._update_scene()
            self._seen = self.sync.version
            return self._seen, time.monotonic()

    def _update_scene(self) -> int:
        model, data = self.handles()
        if model is not self._model:  # the simulator rebuilt its model (e.g. a hard reset)
            self._build(model, data)
        self._renderer.update_scene(data, camera=self._cam_id)
        self._count += 1
        return self._count

    def close(self) -> None:
        if self._renderer is not None:
            try:
                self._renderer.close()
            finally:
                self._renderer = None
                self._model = None
