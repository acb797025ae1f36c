"""TargetFollower: streams setpoints between policy-rate pose targets at the arm's own rate.

Why: a policy decides 10 to 30 times a second, but a real arm's servo interface wants a
setpoint every cycle (the UR's servoL at 125 or 500 Hz) or plans between setpoints itself
(franky's motion generators at Franka's 1 kHz). Handing the arm one jump per policy step
makes it lurch and stop at every step; the follower turns the step targets into a path.

Where it sits: inside a vendor adapter, *under* the SafetyShield. Every target it receives
is the absolute pose that the adapter computed from a command the shield had already
clipped, clamped into the box the shield clipped it against (``send_within``: the arm keeps
moving under the follower between the shield's read of the position and the adapter's), so
the shield stays between every command source and the arm. The follower adds no motion of its own:

* each setpoint lies on the straight segment (slerp for rotation) from the setpoint at the
  moment a target arrived to that target, reached after ``interpolation_ms`` and then held;
  it never extrapolates past the last target. Since the shield's workspace box is convex and
  every target is inside it, every setpoint is inside it too;
* a target older than ``max_target_age_ms`` is dropped: the follower holds the setpoint it
  had reached when the target expired (it neither finishes the segment nor predicts a next
  one) until a new target comes, so a stalled policy holds the arm still while the shield's
  watchdog decides to stop it. With the default ``interpolation_ms`` (one policy period) and
  an age limit of a few periods a target is reached before it expires, and a drop only says
  the policy stalled; an ``interpolation_ms`` longer than the age limit (smoother, more lag)
  abandons a target part of the way when no newer one follows;
* ``halt()`` (the adapter's ``stop()``, the shield's watchdog and e-stop) ends streaming at
  once: no setpoint is sent after it returns, and only a new target starts streaming again,
  from the pose measured then.

It records what it commanded and what the arm reports at every tick (``record``), so the
path error and the tick jitter can be measured (``summary()``; ``bench/interpolation.py``).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from robolearn.config import ConfigError, from_dict, positive
from robolearn.geometry import quat_conj, quat_mul, quat_to_axis_angle
from robolearn.hal.arm import ArmError

log = logging.getLogger(__name__)

Pose = tuple[np.ndarray, np.ndarray]  # position (3,) metres, quaternion (x, y, z, w)


class FollowerError(ArmError):
    """The follower could not hand a setpoint to the arm; it stopped streaming."""


@dataclass
class FollowerConfig:
    """``params.follower`` of a UR or Franka controller file."""

    #: Setpoints per second handed to the arm (UR: its servo rate, 125 on CB3, 500 on e-series).
    rate_hz: float = positive(125.0)
    #: A target not followed by a newer one within this long is dropped; the arm holds.
    max_target_age_ms: float = positive(150.0)
    #: Time to reach each target from the setpoint where it arrived; None: one policy period.
    interpolation_ms: float | None = positive(None)
    #: Seconds of commanded and achieved path kept for ``summary()`` (a ring buffer).
    record_s: float = positive(60.0)

    def validate(self, source: str, control_hz: float, max_rate_hz: float, prefix: str = "follower.") -> "FollowerConfig":
        """Refuse settings that would not interpolate or would drop every target."""
        if self.rate_hz > max_rate_hz:
            raise ConfigError(source, prefix + "rate_hz", f"expected at most the arm's {max_rate_hz:g} Hz, got {self.rate_hz!r}")
        if self.rate_hz < control_hz:
            raise ConfigError(source, prefix + "rate_hz", f"expected at least the policy rate control_hz={control_hz:g} "
                              f"(nothing to interpolate below it), got {self.rate_hz!r}")
        period_ms = 1e3 / control_hz
        if self.max_target_age_ms < period_ms:
            raise ConfigError(source, prefix + "max_target_age_ms", f"expected at least one policy period ({period_ms:g} ms), "
                              f"or every target is dropped before the next arrives; got {self.max_target_age_ms!r}")
        return self

    def interpolation_s(self, control_hz: float) -> float:
        return (1.0 / control_hz) if self.interpolation_ms is None else self.interpolation_ms / 1e3

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str, control_hz: float, max_rate_hz: float) -> "FollowerConfig":
        return from_dict(cls, data, source, field_prefix="follower.").validate(source, control_hz, max_rate_hz)


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Unit quaternion a fraction ``alpha`` in [0, 1] of the way from ``q0`` to ``q1`` along the
    shorter arc; exactly ``q1`` at 1, so the follower ends on the target it was given."""
    if alpha >= 1.0:
        return q1
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly the same rotation: linear and renormalised is exact enough
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(dot, 1.0))
    s = math.sin(theta)
    return (math.sin((1.0 - alpha) * theta) * q0 + math.sin(alpha * theta) * q1) / s


def rotation_between(q0: np.ndarray, q1: np.ndarray) -> float:
    """Angle (radians) of the rotation taking ``q0`` to ``q1``."""
    return float(np.linalg.norm(quat_to_axis_angle(quat_mul(q1, quat_conj(q0)))))


class PathRecord:
    """Commanded and achieved poses, one row per tick, in a fixed-size ring buffer."""

    def __init__(self, capacity: int):
        self.capacity = max(int(capacity), 16)
        self.t = np.zeros(self.capacity)
        self.commanded = np.zeros((self.capacity, 7))
        self.achieved = np.zeros((self.capacity, 7))
        self.count = 0

    def add(self, t: float, commanded: Pose, achieved: Pose) -> None:
        i = self.count % self.capacity
        self.t[i] = t
        self.commanded[i, :3], self.commanded[i, 3:] = commanded
        self.achieved[i, :3], self.achieved[i, 3:] = achieved
        self.count += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The kept rows in time order: t (s), commanded and achieved (N, 7) [x y z qx qy qz qw]."""
        n = min(self.count, self.capacity)
        order = np.arange(self.count - n, self.count) % self.capacity
        return {"t": self.t[order].copy(), "commanded": self.commanded[order].copy(), "achieved": self.achieved[order].copy()}

    def clear(self) -> None:
        self.count = 0


@dataclass
class FollowerStats:
    targets: int = 0
    ticks: int = 0
    setpoints_sent: int = 0
    stale_drops: int = 0  # targets dropped for age; the arm held instead
    overruns: int = 0  # ticks that started more than a period late
    halts: int = 0


class _Segment:
    """From ``start`` at ``t0`` to ``end`` at ``t0 + duration``; held at ``end`` afterwards."""

    __slots__ = ("start", "end", "t0", "duration", "stamp")

    def __init__(self, start: Pose, end: Pose, t0: float, duration: float):
        self.start, self.end, self.t0, self.duration, self.stamp = start, end, t0, duration, t0

    def at(self, now: float) -> Pose:
        alpha = 1.0 if self.duration <= 0 else min(max((now - self.t0) / self.duration, 0.0), 1.0)
        if alpha >= 1.0:
            return self.end
        p = self.start[0] + alpha * (self.end[0] - self.start[0])
        return p, slerp(self.start[1], self.end[1], alpha)


class TargetFollower:
    """``sink(position, quaternion)`` hands one setpoint to the arm (from the follower's thread
    only); ``measure()`` -> the pose the arm reports now (also read by ``set_target`` when
    streaming starts, as the first segment's start). ``skip_repeats``:
    do not resend a setpoint equal to the last one sent (franky plans between targets itself;
    a servo interface such as servoL must be fed every tick and keeps it False). ``clock``:
    seconds, ``time.monotonic`` unless a test steps time itself."""

    def __init__(self, sink: Callable[[np.ndarray, np.ndarray], None], measure: Callable[[], Pose],
                 config: FollowerConfig, control_hz: float, name: str = "arm", skip_repeats: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._sink, self._measure = sink, measure
        self.name = name
        self.period = 1.0 / config.rate_hz
        self.interpolation_s = config.interpolation_s(control_hz)
        self.max_age_s = config.max_target_age_ms / 1e3
        self.skip_repeats = skip_repeats
        self.stats = FollowerStats()
        self.record = PathRecord(int(config.record_s * config.rate_hz))
        self.periods = PathPeriods(int(config.record_s * config.rate_hz))
        self.error: BaseException | None = None
        self._lock = threading.Lock()  # held while a setpoint is computed and sent
        self._segment: _Segment | None = None
        self._active = False  # streaming; a plain flag so halt() takes effect without the lock
        self._last_sent: Pose | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name=f"follower-{self.name}", daemon=True)
        self._thread.start()

    def set_target(self, position: np.ndarray, quaternion: np.ndarray) -> None:
        """Follow to this (shield-clipped) pose from wherever the setpoint is now."""
        self.raise_if_failed()
        target = (np.asarray(position, np.float64).reshape(3).copy(), _unit(quaternion))
        now = self._clock()
        with self._lock:
            start = self._segment.at(now) if self._active and self._segment is not None else self._measure()
            self._segment = _Segment((start[0].copy(), _unit(start[1])), target, now, self.interpolation_s)
            self._active = True
            self.stats.targets += 1
        self._wake.set()

    def follow(self, position: np.ndarray, quaternion: np.ndarray, moves: bool) -> None:
        """``set_target`` for an adapter's ``send``, except that a command without motion
        (``moves`` False: the shield holding position, e.g. while its e-stop is latched) leaves
        a halted follower halted instead of starting to stream again."""
        if moves or self._active:
            self.set_target(position, quaternion)
        else:
            self.raise_if_failed()

    def halt(self, timeout_s: float = 1.0) -> None:
        """Stop streaming now. After this returns no setpoint is sent until the next target
        (it waits up to ``timeout_s`` for a setpoint already being sent)."""
        self._active = False
        got = self._lock.acquire(timeout=timeout_s)
        try:
            self._segment = None
            self._last_sent = None
            self.stats.halts += 1
        finally:
            if got:
                self._lock.release()

    def close(self) -> None:
        self.halt()
        self._closing.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    @property
    def active(self) -> bool:
        return self._active

    def setpoint(self) -> Pose | None:
        """The setpoint the follower would send now (None while halted)."""
        with self._lock:
            return self._segment.at(self._clock()) if self._active and self._segment is not None else None

    def settled(self) -> bool:
        """True once the current target has been reached (or streaming is halted)."""
        seg = self._segment
        return not self._active or seg is None or self._clock() >= seg.t0 + seg.duration

    def raise_if_failed(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise FollowerError(f"{self.name}: the follower stopped streaming: {err}")

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        next_t = self._clock()
        last_tick: float | None = None
        while not self._closing.is_set():
            if not self._active:
                self._wake.wait(0.05)
                self._wake.clear()
                next_t, last_tick = self._clock(), None
                continue
            now = self._clock()
            if last_tick is not None:
                self.periods.add(now - last_tick)
            last_tick = now
            self._tick(now)
            next_t += self.period
            delay = next_t - self._clock()
            if delay < -self.period:
                self.stats.overruns += 1
                next_t = self._clock()
            elif delay > 0:
                self._closing.wait(delay)

    def _tick(self, now: float) -> None:
        with self._lock:
            seg = self._segment
            if not self._active or seg is None:
                return
            if now - seg.stamp > self.max_age_s and seg.duration > 0:
                seg = self._drop_stale(seg, now)
            setpoint = seg.at(now)
            try:
                if not (self.skip_repeats and self._last_sent is not None and _same(self._last_sent, setpoint)):
                    self._sink(setpoint[0], setpoint[1])
                    self._last_sent = setpoint
                    self.stats.setpoints_sent += 1
                achieved = self._measure()
            except Exception as exc:  # the vendor SDK refused or the link broke: stop streaming, report at the next send
                self.error = exc
                self._active = False
                self._segment = None
                log.error("%s: follower stopped streaming: %s", self.name, exc)
                return
            self.stats.ticks += 1
            self.record.add(now, setpoint, achieved)

    def _drop_stale(self, seg: _Segment, now: float) -> _Segment:
        """Hold where the segment was when the target expired: at or ahead of every setpoint
        already sent (a late tick changes nothing), never past the target."""
        held = seg.at(seg.stamp + self.max_age_s)
        self._segment = _Segment(held, held, now, 0.0)
        self._segment.stamp = seg.stamp
        self.stats.stale_drops += 1
        if self.stats.stale_drops == 1 or str(self.stats.stale_drops).strip("0") == "1":
            log.warning("%s: target %.0f ms old (limit %.0f ms) dropped; holding [stale_drops #%d]", self.name,
                        1e3 * (now - seg.stamp), 1e3 * self.max_age_s, self.stats.stale_drops)
        return self._segment

    # -- measurement --------------------------------------------------------------------
    def summary(self) -> dict[str, float]:
        """Commanded against achieved path (position mm, rotation deg) and the tick period (ms)."""
        return path_summary(self.record.arrays(), self.periods.values(), self.period, self.stats)


class PathPeriods:
    """The measured time between ticks, a ring buffer beside ``PathRecord``."""

    def __init__(self, capacity: int):
        self.capacity = max(int(capacity), 16)
        self.data = np.zeros(self.capacity)
        self.count = 0

    def add(self, dt: float) -> None:
        self.data[self.count % self.capacity] = dt
        self.count += 1

    def values(self) -> np.ndarray:
        return self.data[: min(self.count, self.capacity)].copy()


def path_summary(path: Mapping[str, np.ndarray], periods: np.ndarray, nominal_s: float, stats: FollowerStats | None = None) -> dict[str, float]:
    """Tracking error of ``path`` (commanded vs achieved, same tick) and jitter of ``periods``."""
    out: dict[str, float] = {"ticks": float(len(path["t"])), "nominal_period_ms": 1e3 * nominal_s}
    if len(path["t"]):
        dp = np.linalg.norm(path["achieved"][:, :3] - path["commanded"][:, :3], axis=1)
        rot = [rotation_between(c[3:], a[3:]) for c, a in zip(path["commanded"], path["achieved"])]
        out.update(pos_err_rms_mm=1e3 * float(np.sqrt(np.mean(dp ** 2))), pos_err_max_mm=1e3 * float(dp.max()),
                   rot_err_max_deg=math.degrees(float(np.max(rot))))
    if len(periods):
        out.update(period_mean_ms=1e3 * float(periods.mean()), period_std_ms=1e3 * float(periods.std()),
                   period_p99_ms=1e3 * float(np.percentile(periods, 99)), period_max_ms=1e3 * float(periods.max()))
    if stats is not None:
        out.update(stale_drops=float(stats.stale_drops), overruns=float(stats.overruns))
    return out


def _unit(q: Any) -> np.ndarray:
    q = np.asarray(q, np.float64).reshape(4)
    n = float(np.linalg.norm(q))
    if not math.isfinite(n) or n < 1e-9:
        raise ArmError(f"target quaternion {q.tolist()} is not a finite rotation")
    return q / n


def _same(a: Pose, b: Pose) -> bool:
    return bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))
