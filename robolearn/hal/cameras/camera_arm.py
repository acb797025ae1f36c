"""``CameraArm``: an Arm whose observation is the wrapped arm's state plus its cameras' newest frames.

Why a wrapper and not a change to the loop: the ``ControlLoop``, the recorder and policies
already consume one ``Observation`` per period; adding cameras as keys of it (robomimic's
names, ``agentview_image``, ``robot0_eye_in_hand_image``) keeps every one of them unchanged.

Observation keys, per camera: ``<name>_image`` (uint8 H x W x 3), ``<name>_depth`` (float32
metres H x W x 1, cameras with depth) and ``<name>_image_age_s`` (float32 (1,)): the
observation's timestamp minus the frame's, slightly negative when a frame arrived after
the arm state was read.

Stale frames. A frame is current when it is at most ``max_frame_age_s`` old, or, for a
simulated camera rendering under the rig's ``SimSync``, when it shows the simulator state
the arm reports (simulated time stands still between commands, so there a frame's wall
clock age says nothing; its state version does, and ``observe`` waits up to
``max_frame_age_s`` for the render of the current state). A stale frame is never passed on:
the camera's image and depth keys are left out of that observation, its age key still says
how old the newest frame is, and ``camera_stats.dropped[name]`` counts it. After
``max_stale_in_row`` observations in a row with a stale frame ``observe()`` raises
``StaleFrameError`` (an ArmError: the control loop stops the arm). The default 1 raises on
the first one, since a policy that needs its images has no safe action without them; a
larger value is for policies that can act without a view for a step or two (and note the
recorder refuses a row that lacks one of its keys).

Order with the SafetyShield: ``SafetyShield(CameraArm(arm, rig))``. The shield then stays
outermost, nothing sits between it and the command source, and every call that reaches a
simulator, the shield's own watchdog stop from its thread included, passes through
``CameraArm`` and so under the lock simulated cameras render under. The other order works
too (everything not about cameras passes through), but the shield's watchdog would then
stop the simulator outside that lock.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from robolearn.config import require_int, require_number
from robolearn.data.format import ObsFieldSpec
from robolearn.hal.arm import Arm, ArmSpec, Observation
from robolearn.hal.cameras.base import Frame, StaleFrameError
from robolearn.hal.cameras.capture import CameraRig, CaptureThread
from robolearn.hal.shield import measure_eef

#: Optional arm methods that only read the simulator: passed through without telling the
#: cameras that the state changed. Every other passed-through method (reset, set_state, ...)
#: runs under the sim lock and counts as a state change.
READ_ONLY = frozenset({"get_state", "reward", "success", "eef_position", "client", "estopped", "stats"})


@dataclass
class CameraArmStats:
    #: Frames passed on / dropped as stale, per camera.
    served: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    #: Observations in a row with at least one stale frame (0 after a complete one).
    stale_in_row: int = 0


class CameraArm:
    def __init__(self, arm: Arm, rig: CameraRig, max_frame_age_s: float = 0.1, max_stale_in_row: int = 1,
                 settle_s: float = 10.0):
        self.arm = arm
        self.rig = rig
        self.max_frame_age_s = require_number("CameraArm", "max_frame_age_s", max_frame_age_s, positive=True)
        self.max_stale_in_row = require_int("CameraArm", "max_stale_in_row", max_stale_in_row, at_least=1)
        self.settle_s = require_number("CameraArm", "settle_s", settle_s, positive=True)
        self.sync = rig.sync
        self.camera_stats = CameraArmStats(served={n: 0 for n in rig.threads}, dropped={n: 0 for n in rig.threads})
        self._synced = {n: getattr(t.camera, "sync", None) is not None and t.camera.sync is rig.sync
                        for n, t in rig.threads.items()}
        self.spec = self._make_spec()

    def _make_spec(self) -> ArmSpec:
        inner = self.arm.spec
        obs_spec = dict(inner.obs_spec)
        for cam in self.rig.cameras.values():
            s = cam.spec
            obs_spec[s.image_key] = ObsFieldSpec(shape=(s.height, s.width, 3), dtype="uint8")
            if s.has_depth:
                obs_spec[s.depth_key] = ObsFieldSpec(shape=(s.height, s.width, 1), dtype="float32")
            obs_spec[s.age_key] = ObsFieldSpec(shape=(1,), dtype="float32")
        return ArmSpec(name=inner.name, obs_spec=obs_spec, action_spec=inner.action_spec, control_hz=inner.control_hz)

    # -- Arm protocol -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.arm.connected and self.rig.running

    def connect(self) -> None:
        """The arm first (a simulated camera renders the arm's model), then the cameras. Returns
        once every free-running camera has delivered a first frame (waiting at most ``settle_s``),
        so the first observation does not fail for a camera whose capture thread is still
        starting; a camera silent past that fails the first observation as stale."""
        self.arm.connect()
        if not self.rig.running:
            self.rig.start()
        self._advanced()
        self._await_first_frames()

    def _await_first_frames(self) -> None:
        deadline = time.monotonic() + self.settle_s
        for name, thread in self.rig.threads.items():
            if not self._synced[name]:
                thread.wait_for_index(0, max(0.0, deadline - time.monotonic()))

    def observe(self) -> Observation:
        return self._observe(self.max_frame_age_s)

    def _observe(self, sim_wait_s: float) -> Observation:
        obs = self.arm.observe()
        data = dict(obs.data)
        version = self.sync.version if self.sync is not None else None
        stale = [name for name, t in self.rig.threads.items()
                 if not self._add_frame(data, name, t, obs.timestamp, version, sim_wait_s)]
        self.camera_stats.stale_in_row = self.camera_stats.stale_in_row + 1 if stale else 0
        if stale and self.camera_stats.stale_in_row >= self.max_stale_in_row:
            raise StaleFrameError(self._stale_message(stale, data))
        return Observation(timestamp=obs.timestamp, data=data)

    def eef_position(self) -> np.ndarray:
        return measure_eef(self.arm)

    def send(self, command: np.ndarray) -> np.ndarray:
        return self._changing(self.arm.send)(command)

    def home(self) -> Observation:
        """Homing is not on the loop's clock, so the frames of the home state may take up to
        ``settle_s`` (a renderer's first frame compiles its shaders)."""
        self._changing(self.arm.home)()
        return self._observe(max(self.settle_s, self.max_frame_age_s))

    def stop(self) -> None:
        """Safe at any time: waits at most a second for a render holding the sim lock, then stops anyway."""
        if self.sync is None:
            self.arm.stop()
            return
        got = self.sync.lock.acquire(timeout=1.0)
        try:
            self.arm.stop()
        finally:
            if got:
                self.sync.lock.release()

    def close(self) -> None:
        try:
            self.rig.stop()
        finally:
            self.arm.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("arm", "rig", "sync"):
            raise AttributeError(name)
        value = getattr(self.arm, name)
        if callable(value) and name not in READ_ONLY:
            return self._changing(value)
        return value

    # -- internals --------------------------------------------------------------------
    def _changing(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` run under the sim lock, telling the simulated cameras afterwards that the
        state changed (plain pass-through when there are no simulated cameras)."""
        if self.sync is None:
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.sync.lock:
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.sync.advanced()

        return call

    def _advanced(self) -> None:
        if self.sync is not None:
            self.sync.advanced()

    def _add_frame(self, data: dict[str, np.ndarray], name: str, thread: CaptureThread, now: float, version: int | None,
                   sim_wait_s: float) -> bool:
        """Put camera ``name``'s frame into ``data`` if it is current; -> whether it was."""
        spec = thread.camera.spec
        frame = thread.wait_for_index(version, sim_wait_s) if self._synced[name] else thread.latest()
        age = float("inf") if frame is None else now - frame.timestamp
        data[spec.age_key] = np.array([age], dtype=np.float32)
        if not self._current(frame, age, version if self._synced[name] else None):
            self.camera_stats.dropped[name] += 1
            return False
        data[spec.image_key] = frame.image
        if spec.has_depth and frame.depth is not None:
            data[spec.depth_key] = frame.depth
        self.camera_stats.served[name] += 1
        return True

    def _current(self, frame: Frame | None, age: float, version: int | None) -> bool:
        if frame is None:
            return False
        if version is not None:
            return frame.index >= version
        return age <= self.max_frame_age_s

    def _stale_message(self, stale: list[str], data: dict[str, np.ndarray]) -> str:
        parts = []
        for name in stale:
            t = self.rig.threads[name]
            age = float(data[t.camera.spec.age_key][0])
            why = f"newest frame {age * 1e3:.0f} ms old" if np.isfinite(age) else "no frame yet"
            if self._synced[name]:
                why += ", not of the current simulator state"
            if t.stats.last_error:
                why += f"; last capture error: {t.stats.last_error}"
            parts.append(f"{name} ({why})")
        return (f"{self.spec.name}: stale camera frames for {self.camera_stats.stale_in_row} observation(s) in a row "
                f"(limit {self.max_frame_age_s * 1e3:g} ms): " + ", ".join(parts))
