"""ControlLoop: one fixed-rate loop for teleoperation, evaluation and deployment.

Why a deadline schedule: sleeping ``period`` after each step adds the step's own time
to every period, so the real rate drifts below the nominal one (LeRobot once recorded
timestamps that claimed a rate the loop never ran at). Here step k starts at
``t0 + k * period`` on the monotonic clock; the loop sleeps until the deadline, minus a
short busy-wait tail for sub-millisecond accuracy. A step that finishes after its next
deadline is an overrun: it is counted and the schedule resyncs to now instead of firing
a burst of late steps to catch up.

Each period is one step of ``robolearn.runtime.episode.run_episode``, the step body
``rollout`` runs for evaluation and collection: ``arm.observe()``, the end rules, then
``source.act(obs)``, ``arm.send`` and the recorder. The action is computed from the state at
the start of its own period, not from one left over from before the sleep, and the recorded
row k is that observation and the command applied. The source is any actor of the runtime (a
policy, a pipelined planner, an operator, a teleop device) and its episode starts as in
``rollout`` (reset, then ``prime`` on the first observation, before the clock starts). What the
loop adds is the arm as the plant (``ArmPlant``: the command goes through ``arm.send``, so the
shield wrapping the arm is in the path of every step) and the clock (``DeadlineClock``).

Each period's jitter (actual start-to-start interval minus the nominal period) goes into
a preallocated array; the hot path does no I/O and no allocation beyond what the
command source, the arm and the recorder need.

Stopping: ``request_stop()`` (any thread), ``stop_when(obs)``, ``max_steps``, Ctrl-C
(KeyboardInterrupt) or an exception from the arm or the source. Every way out calls
``arm.stop()`` and either finishes or discards the episode being recorded, so a
deployment interrupted by the operator still leaves a readable demo folder.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from robolearn.config import require_int, require_number
from robolearn.hal.arm import Arm, Observation
from robolearn.runtime.episode import EpisodeProgress, Sent, run_episode

log = logging.getLogger(__name__)


@dataclass
class LoopStats:
    """Timing of one ``run``. Jitter = actual period - nominal period, in ms."""

    hz: float
    steps: int = 0
    overruns: int = 0
    jitter_p50_ms: float = 0.0
    jitter_p99_ms: float = 0.0
    jitter_max_ms: float = 0.0
    #: |jitter| percentiles: how far periods stray either way.
    abs_jitter_p99_ms: float = 0.0
    #: Time from the step's start to the end of its work (observe, act, send, record).
    work_p50_ms: float = 0.0
    work_p99_ms: float = 0.0
    mean_rate_hz: float = 0.0
    duration_s: float = 0.0
    stopped_by: str = ""
    episode_path: str | None = None
    success: bool | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.steps} steps at {self.hz:g} Hz (mean {self.mean_rate_hz:.2f} Hz), overruns {self.overruns}, "
            f"jitter p50 {self.jitter_p50_ms:.3f} ms p99 {self.jitter_p99_ms:.3f} ms max {self.jitter_max_ms:.3f} ms, "
            f"work p99 {self.work_p99_ms:.3f} ms, stopped by {self.stopped_by}"
        )


def enter_realtime(priority: int | None):
    """Put the calling thread under SCHED_FIFO ``priority``; -> the previous (policy, priority)
    to restore, or None when nothing changed (no priority asked, not permitted, not Linux)."""
    if not priority or not hasattr(os, "sched_setscheduler"):
        return None
    try:
        prev = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (PermissionError, OSError) as exc:
        log.warning("real-time scheduling (SCHED_FIFO %s) not permitted (%s); timing will suffer under load", priority, exc)
        return None
    return prev


def leave_realtime(prev) -> None:
    if prev is not None:
        try:
            os.sched_setscheduler(0, prev[0], os.sched_param(prev[1]))
        except OSError as exc:  # pragma: no cover - restoring a policy we held cannot normally fail
            log.error("could not restore the scheduling policy: %s", exc)


class _Buffer:
    """A float64 array that grows by doubling: no per-step allocation in steady state."""

    def __init__(self, n: int):
        self.a = np.empty(max(int(n), 16))
        self.n = 0

    def add(self, x: float) -> None:
        if self.n == self.a.shape[0]:
            self.a = np.concatenate([self.a, np.empty_like(self.a)])
        self.a[self.n] = x
        self.n += 1

    def values(self) -> np.ndarray:
        return self.a[: self.n]


class ArmPlant:
    """An arm as ``run_episode``'s plant: observations with their timestamps, commands through
    ``arm.send`` (what the shield applied comes back), and, on a simulated task arm that has them,
    each step's reward and the simulator state (for exact replay). An arm never ends an episode
    itself: its success is read once the loop stopped."""

    def __init__(self, arm: Arm, rewards: bool = False, states: bool = False):
        self.arm = arm
        reward_fn = getattr(arm, "reward", None) if rewards else None
        self._reward = reward_fn if callable(reward_fn) else None
        get_state = getattr(arm, "get_state", None) if states else None
        self.get_state = get_state if callable(get_state) else None
        self.last: Observation | None = None
        self.timestamp: float | None = None

    def observe(self) -> Mapping[str, np.ndarray]:
        self.last = self.arm.observe()
        self.timestamp = self.last.timestamp
        return self.last.data

    begin = observe

    def state(self) -> Any:
        return self.get_state() if self.get_state is not None else None

    def send(self, action: Any) -> Sent:
        applied = self.arm.send(action)
        return Sent(applied=applied, reward=float(self._reward()) if self._reward is not None else 0.0)


@contextlib.contextmanager
def interrupts_raise():
    """While an arm moves, SIGINT (Ctrl-C, ``kill -INT``) raises KeyboardInterrupt, which the loop
    turns into a stopped arm and a kept episode, even in a process started with SIGINT ignored:
    a non-interactive shell starts its background jobs (``cmd &``) that way, and Python then
    installs no handler, so the signal would be dropped while the arm went on moving. Only the
    main thread can set handlers; elsewhere this does nothing. The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class DeadlineClock:
    """The deadline schedule (module docstring): ``start()`` as the first period begins, ``tick()``
    after each step's work; counts overruns and keeps each period's work time and jitter."""

    def __init__(self, period: float, spin_s: float, capacity: int):
        self.period, self.spin_s = period, spin_s
        self.jitter, self.work = _Buffer(capacity), _Buffer(capacity)
        self.overruns = 0
        self.t_start = self.prev_tick = self.deadline = time.monotonic()

    def start(self) -> None:
        self.t_start = self.prev_tick = self.deadline = time.monotonic()

    def _sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.monotonic() < deadline:
            pass

    def tick(self) -> None:
        self.deadline += self.period
        now = time.monotonic()
        self.work.add((now - self.prev_tick) * 1e3)
        if now > self.deadline:
            self.overruns += 1
            self.deadline = now  # resync: never fire a burst of late steps
        else:
            self._sleep_until(self.deadline)
        tick = time.monotonic()
        self.jitter.add((tick - self.prev_tick - self.period) * 1e3)
        self.prev_tick = tick


class ControlLoop:
    """Runs ``source.act(obs) -> action`` against ``arm`` at ``hz``.

    recorder: an ``EpisodeRecorder``; the loop calls start/record/finish (or discard).
    on_step: ``f(step, obs: Observation, applied: np.ndarray)`` after each send (keep it cheap).
    keep_on_interrupt: on Ctrl-C/request_stop/errors, write the partial episode (True) or discard it.
    spin_s: busy-wait tail before each deadline; trades CPU for sub-millisecond accuracy.
    record_states: when recording on an arm with ``get_state()`` (simulators), store the
        state of every step too, so the episode can be replayed exactly. Rewards come from
        the arm's ``reward()`` when it has one (simulated tasks), else 0.
    realtime_priority: run the loop thread under SCHED_FIFO at this priority (1-99) while
        ``run`` lasts, so other processes cannot delay its wake-ups by milliseconds (needs
        root or CAP_SYS_NICE; without it a warning is logged and the loop runs normally).
        Linux's RT throttling still leaves 5 % of each core to everything else.
    """

    def __init__(
        self,
        arm: Arm,
        source: Any,
        hz: float,
        recorder: Any = None,
        on_step: Callable[[int, Observation, np.ndarray], None] | None = None,
        keep_on_interrupt: bool = True,
        spin_s: float = 0.0005,
        reset_source: bool = True,
        realtime_priority: int | None = None,
        record_states: bool = True,
    ):
        # An infinite rate is a zero period: the loop would send as fast as it can.
        self.arm, self.source = arm, source
        self.hz = require_number("ControlLoop", "hz", hz, positive=True)
        self.period = 1.0 / self.hz
        self.recorder, self.on_step = recorder, on_step
        self.keep_on_interrupt = keep_on_interrupt
        self.spin_s = require_number("ControlLoop", "spin_s", spin_s, at_least=0.0)
        self.reset_source = reset_source
        self.realtime_priority = None if realtime_priority is None else require_int("ControlLoop", "realtime_priority", realtime_priority, at_least=0)
        self.record_states = record_states
        self._plant: ArmPlant | None = None
        self.realtime_active = False
        self._stop = threading.Event()

    @property
    def last_obs(self) -> Observation | None:
        """The arm's last observation (of the current or the last run)."""
        return self._plant.last if self._plant is not None else None

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step. Safe from any thread or signal handler."""
        self._stop.set()

    def _enter_realtime(self):
        prev = enter_realtime(self.realtime_priority)
        self.realtime_active = prev is not None
        return prev

    def _leave_realtime(self, prev) -> None:
        leave_realtime(prev)
        self.realtime_active = False

    def run(self, max_steps: int | None = None, stop_when: Callable[[Mapping[str, np.ndarray]], bool] | None = None) -> LoopStats:
        """Run until ``max_steps``, ``stop_when(obs)``, ``request_stop()`` or Ctrl-C (SIGINT, also
        where the process was started with it ignored; called from the main thread).

        Ctrl-C is handled (arm stopped, episode kept or discarded) and reported as
        ``stopped_by == "interrupt"`` rather than re-raised, so callers can still print
        a summary; other exceptions are re-raised after the same clean-up.
        """
        if max_steps is not None:
            max_steps = require_int("ControlLoop.run", "max_steps", max_steps, at_least=0)
        self._stop.clear()
        stats = LoopStats(hz=self.hz)
        cap = max_steps if max_steps is not None else int(self.hz * 60)
        clock = DeadlineClock(self.period, self.spin_s, cap)
        recorder, user_on_step = self.recorder, self.on_step
        # Simulated task arms can give the reward of each step and the simulator state (for exact replay).
        plant = ArmPlant(self.arm, rewards=recorder is not None, states=recorder is not None and self.record_states)
        self._plant = plant
        on_step = None if user_on_step is None else (lambda step, obs, applied: user_on_step(step, plant.last, applied))
        progress = EpisodeProgress()
        finished_ok = False
        prev_sched = self._enter_realtime()
        try:
            # Ctrl-C reaches the loop even in a process started with SIGINT ignored (``interrupts_raise``).
            with interrupts_raise():
                if recorder is not None:
                    recorder.start()
                run_episode(plant, self.source, reset_actor=self.reset_source, max_steps=max_steps, stop_on_success=False,
                            stop_when=stop_when, stop_requested=self._stop.is_set, recorder=recorder, on_step=on_step,
                            pacer=clock, progress=progress)
            stats.stopped_by = progress.ended_by
            finished_ok = True
        except KeyboardInterrupt:
            stats.stopped_by = "interrupt"
            log.warning("control loop interrupted after %d steps", progress.steps)
        except BaseException as exc:
            self._leave_realtime(prev_sched)
            stats.stopped_by = "error"
            stats.error = f"{type(exc).__name__}: {exc}"
            self._finish(stats, progress, keep=self.keep_on_interrupt, clock=clock)
            raise
        self._leave_realtime(prev_sched)
        self._finish(stats, progress, keep=finished_ok or self.keep_on_interrupt, clock=clock)
        return stats

    def _finish(self, stats: LoopStats, progress: EpisodeProgress, keep: bool, clock: DeadlineClock) -> None:
        step, obs = progress.steps, progress.obs
        stats.steps = step
        stats.overruns = clock.overruns
        stats.duration_s = time.monotonic() - clock.t_start
        j, w = clock.jitter.values(), clock.work.values()
        if j.size:
            stats.jitter_p50_ms = float(np.percentile(j, 50))
            stats.jitter_p99_ms = float(np.percentile(j, 99))
            stats.jitter_max_ms = float(j.max())
            stats.abs_jitter_p99_ms = float(np.percentile(np.abs(j), 99))
            stats.mean_rate_hz = float(j.size / ((j.sum() / 1e3) + j.size * self.period))
        if w.size:
            stats.work_p50_ms = float(np.percentile(w, 50))
            stats.work_p99_ms = float(np.percentile(w, 99))
        try:
            self.arm.stop()
        except Exception as exc:  # the arm may be gone (server killed); report, keep cleaning up
            log.error("arm.stop() failed while stopping the loop: %s", exc)
        success = None
        fn = getattr(self.arm, "success", None)
        if callable(fn):
            try:
                v = fn()
                success = None if v is None else bool(v)
            except Exception as exc:
                log.warning("arm.success() failed: %s", exc)
        stats.success = success
        rec = self.recorder
        if rec is None or not getattr(rec, "recording", False):
            return
        if keep and step > 0 and obs is not None:
            try:
                final_state = None
                if self._plant is not None and self._plant.get_state is not None:
                    try:
                        final_state = self._plant.get_state()
                    except Exception as exc:  # the episode matters more than its last state
                        log.warning("could not read the final simulator state: %s", exc)
                path: Path = rec.finish(obs, bool(success), final_timestamp=progress.timestamp, final_state=final_state)
                stats.episode_path = str(path)
                log.info("episode written to %s", path)
            except Exception as exc:
                log.error("could not write the episode: %s", exc)
                rec.discard()
                if stats.error is None:
                    raise
        else:
            rec.discard()
