"""PyBullet's software camera (``getCameraImage`` with ``ER_TINY_RENDERER``: no GPU, no window).

PyBullet renders inside one call that reads the physics client, and a client must not be
used from two threads at once; with a ``SimSync`` the whole render runs under the sync's
lock, right after the arm wrapper reports a new state (while the control loop sleeps).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from robolearn.hal.cameras.base import CameraError, CameraSpec, Frame, Intrinsics, SimSync


def pybullet_client(arm: Any) -> Callable[[], int]:
    """The physics client id of a connected ``PyBulletArm`` (its ``client`` property)."""
    return lambda: int(arm.client)


class PyBulletCamera:
    """A pinhole camera at ``eye`` looking at ``target`` (metres, world frame) with vertical
    field of view ``fov_deg``. Intrinsics follow from ``fov_deg`` alone, so the spec has them
    before connecting."""

    def __init__(self, client: Callable[[], int], width: int = 84, height: int = 84, fps: float = 20.0,
                 eye: Sequence[float] = (1.2, 0.0, 0.8), target: Sequence[float] = (0.5, 0.0, 0.1),
                 up: Sequence[float] = (0.0, 0.0, 1.0), fov_deg: float = 60.0, near: float = 0.05, far: float = 5.0,
                 depth: bool = False, name: str = "agentview", sync: SimSync | None = None, wait_s: float = 0.2):
        self.client = client
        self.eye, self.target, self.up = list(eye), list(target), list(up)
        self.fov_deg, self.near, self.far = float(fov_deg), float(near), float(far)
        self.sync = sync
        self.wait_s = wait_s
        self.spec = CameraSpec(name=name, width=int(width), height=int(height), fps=float(fps),
                               intrinsics=Intrinsics.from_fovy(self.fov_deg, int(width), int(height)), has_depth=bool(depth))
        self._p: Any = None
        self._view: Any = None
        self._proj: Any = None
        self._seen = -1
        self._count = 0

    @property
    def connected(self) -> bool:
        return self._p is not None

    def connect(self) -> None:
        try:
            import pybullet as p
        except ImportError as exc:
            raise CameraError(f"PyBullet cameras need pybullet (pip install 'robolearn[sim]'): {exc}") from None
        s = self.spec
        self._view = p.computeViewMatrix(self.eye, self.target, self.up)
        self._proj = p.computeProjectionMatrixFOV(self.fov_deg, s.width / s.height, self.near, self.far)
        self._p = p

    def projection_intrinsics(self) -> Intrinsics:
        """The intrinsics PyBullet's own projection matrix implies (column-major OpenGL
        matrix: P[0][0] = 2 fx / W, P[1][1] = 2 fy / H)."""
        m = np.asarray(self._proj, dtype=np.float64).reshape(4, 4).T
        s = self.spec
        return Intrinsics(fx=m[0, 0] * s.width / 2, fy=m[1, 1] * s.height / 2, cx=s.width / 2, cy=s.height / 2)

    def read(self) -> Frame:
        if self._p is None:
            raise CameraError(f"camera {self.spec.name!r}: not connected; call connect() first")
        if self.sync is None:
            self._count += 1
            return self._render(self._count)
        self.sync.wait_newer(self._seen, self.wait_s)
        with self.sync.lock:
            self._seen = self.sync.version
            return self._render(self._seen)

    def _render(self, index: int) -> Frame:
        p, s = self._p, self.spec
        timestamp = time.monotonic()
        _, _, rgba, zbuf, _ = p.getCameraImage(s.width, s.height, viewMatrix=self._view, projectionMatrix=self._proj,
                                              renderer=p.ER_TINY_RENDERER, physicsClientId=self.client())
        image = np.asarray(rgba, dtype=np.uint8).reshape(s.height, s.width, 4)[..., :3].copy()
        depth = None
        if s.has_depth:
            z = np.asarray(zbuf, dtype=np.float64).reshape(s.height, s.width)
            depth = (self.far * self.near / (self.far - (self.far - self.near) * z)).astype(np.float32)[..., None]
        return Frame(image=image, timestamp=timestamp, index=index, depth=depth)

    def close(self) -> None:
        self._p = None
