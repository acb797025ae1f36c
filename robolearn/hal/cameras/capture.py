"""Capture off the control loop's hot path: one thread per camera keeps only the newest frame.

Why threads and not the loop: a USB camera's ``read()`` blocks for up to a frame period
(33 ms at 30 fps) and a software renderer takes milliseconds; either would eat the loop's
period. A capture thread reads continuously and replaces one slot, so the loop only ever
copies a reference. The camera is connected, read and closed inside its own thread,
because OpenGL contexts (MuJoCo's renderer) belong to the thread that made them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from robolearn.hal.cameras.base import Camera, CameraError, Frame, SimSync

log = logging.getLogger(__name__)


@dataclass
class CaptureStats:
    frames: int = 0
    errors: int = 0
    last_error: str | None = None


class CaptureThread:
    """Runs ``camera.read()`` in a loop in a daemon thread; ``latest()`` is the newest frame.

    A read that raises is counted (``stats.errors``), logged once per new message, and
    retried after ``retry_s``: a camera that recovers (a USB hiccup) resumes by itself, and
    one that does not shows up as ever older frames, which ``CameraArm`` refuses."""

    def __init__(self, camera: Camera, retry_s: float = 0.05, connect_timeout_s: float = 20.0):
        self.camera = camera
        self.retry_s = retry_s
        self.connect_timeout_s = connect_timeout_s
        self.stats = CaptureStats()
        self._frame: Frame | None = None
        self._new_frame = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._connect_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.camera.spec.name

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Connect the camera (in the capture thread) and start reading; a camera that cannot
        connect raises its error here, in the caller's thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.connect_timeout_s):
            self.stop()
            raise CameraError(f"camera {self.name!r}: did not connect within {self.connect_timeout_s:g} s")
        if self._connect_error is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
            err = self._connect_error
            raise err if isinstance(err, CameraError) else CameraError(f"camera {self.name!r}: {type(err).__name__}: {err}")

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        with self._new_frame:
            self._new_frame.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                log.warning("camera %r: capture thread still blocked in read() after %.1f s", self.name, timeout_s)
        self._thread = None

    def latest(self) -> Frame | None:
        return self._frame

    def wait_for_index(self, index: int, timeout_s: float) -> Frame | None:
        """The newest frame once its index reaches ``index`` (or whatever is newest when
        ``timeout_s`` runs out, which the caller then finds too old)."""
        with self._new_frame:
            self._new_frame.wait_for(lambda: self._stop.is_set() or (self._frame is not None and self._frame.index >= index),
                                     timeout=timeout_s)
            return self._frame

    def _run(self) -> None:
        try:
            self.camera.connect()
        except BaseException as exc:  # reported to start()'s caller
            self._connect_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self._read_once()
        finally:
            try:
                self.camera.close()
            except Exception as exc:  # closing must not hide why the thread ended
                log.warning("camera %r: close failed: %s", self.name, exc)

    def _read_once(self) -> None:
        try:
            frame = self.camera.read()
        except Exception as exc:
            self.stats.errors += 1
            msg = f"{type(exc).__name__}: {exc}"
            if msg != self.stats.last_error:
                log.warning("camera %r: read failed (%s); retrying", self.name, msg)
            self.stats.last_error = msg
            self._stop.wait(self.retry_s)
            return
        with self._new_frame:
            self._frame = frame
            self.stats.frames += 1
            self._new_frame.notify_all()


class CameraRig:
    """Several cameras, each with its own capture thread. ``sync`` is the ``SimSync`` their
    simulated cameras render under (None for real cameras only)."""

    def __init__(self, cameras: Iterable[Camera], sync: SimSync | None = None):
        self.threads: dict[str, CaptureThread] = {}
        for cam in cameras:
            name = cam.spec.name
            if name in self.threads:
                raise CameraError(f"two cameras are named {name!r}; observation keys must be unique")
            self.threads[name] = CaptureThread(cam)
        self.sync = sync

    @property
    def cameras(self) -> dict[str, Camera]:
        return {name: t.camera for name, t in self.threads.items()}

    @property
    def running(self) -> bool:
        return bool(self.threads) and all(t.running for t in self.threads.values())

    def start(self) -> None:
        """Start every capture thread; if one camera cannot connect, the others are stopped too."""
        started = []
        try:
            for t in self.threads.values():
                t.start()
                started.append(t)
        except BaseException:
            for t in started:
                t.stop()
            raise

    def latest(self, now: float | None = None) -> dict[str, tuple[Frame | None, float]]:
        """name -> (newest frame or None, its age in seconds at ``now``; inf when none yet)."""
        now = time.monotonic() if now is None else now
        out = {}
        for name, t in self.threads.items():
            f = t.latest()
            out[name] = (f, float("inf") if f is None else now - f.timestamp)
        return out

    def stop(self) -> None:
        for t in self.threads.values():
            t.stop()

    def stats(self) -> dict[str, CaptureStats]:
        return {name: t.stats for name, t in self.threads.items()}
