"""ControlLoop: one fixed-rate loop for teleoperation, evaluation and deployment.

Why a deadline schedule: sleeping ``period`` after each step adds the step's own time
to every period, so the real rate drifts below the nominal one (LeRobot once recorded
timestamps that claimed a rate the loop never ran at). Here step k starts at
``t0 + k * period`` on the monotonic clock; the loop sleeps until the deadline, minus a
short busy-wait tail for sub-millisecond accuracy. A step that finishes after its next
deadline is an overrun: it is counted and the schedule resyncs to now instead of firing
a burst of late steps to catch up.

Each period starts with ``arm.observe()``, then ``source.act(obs)`` and ``arm.send``: the
action is computed from the state at the start of its own period, not from one left over
from before the sleep. The recorded row k is that observation and the command applied.
The source is any actor of the runtime (``robolearn.runtime.rollout``: a policy, a
pipelined planner, an operator, a teleop device) and its episode starts as in ``rollout``
(``start_episode``: reset, then ``prime`` on the first observation). The step itself stays
here: on an arm it is observe-act-send against the clock, where ``rollout`` steps a
simulated task as fast as it goes and reads the task's reward, success and end from it.

Each period's jitter (actual start-to-start interval minus the nominal period) goes into
a preallocated array; the hot path does no I/O and no allocation beyond what the
command source, the arm and the recorder need.

Stopping: ``request_stop()`` (any thread), ``stop_when(obs)``, ``max_steps``, Ctrl-C
(KeyboardInterrupt) or an exception from the arm or the source. Every way out calls
``arm.stop()`` and either finishes or discards the episode being recorded, so a
deployment interrupted by the operator still leaves a readable demo folder.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from robolearn.hal.arm import Arm, Observation
from robolearn.hal.shield import require_int, require_number
from robolearn.runtime.rollout import start_episode

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
        self._get_state = None
        self.realtime_active = False
        self._stop = threading.Event()
        self.last_obs: Observation | None = None

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

    def _sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.monotonic() < deadline:
            pass

    def run(self, max_steps: int | None = None, stop_when: Callable[[Mapping[str, np.ndarray]], bool] | None = None) -> LoopStats:
        """Run until ``max_steps``, ``stop_when(obs)``, ``request_stop()`` or Ctrl-C.

        Ctrl-C is handled (arm stopped, episode kept or discarded) and reported as
        ``stopped_by == "interrupt"`` rather than re-raised, so callers can still print
        a summary; other exceptions are re-raised after the same clean-up.
        """
        if max_steps is not None:
            max_steps = require_int("ControlLoop.run", "max_steps", max_steps, at_least=0)
        self._stop.clear()
        stats = LoopStats(hz=self.hz)
        cap = max_steps if max_steps is not None else int(self.hz * 60)
        jitter, work = _Buffer(cap), _Buffer(cap)
        arm, source, recorder, on_step = self.arm, self.source, self.recorder, self.on_step
        # Simulated task arms can give the reward of each step and the simulator state (for exact replay).
        reward_fn = getattr(arm, "reward", None) if recorder is not None else None
        reward_fn = reward_fn if callable(reward_fn) else None
        get_state = getattr(arm, "get_state", None) if (recorder is not None and self.record_states) else None
        get_state = get_state if callable(get_state) else None
        self._get_state = get_state
        period, stop = self.period, self._stop
        step = 0
        finished_ok = False
        obs: Observation | None = None
        t_start = time.monotonic()
        prev_sched = self._enter_realtime()
        try:
            obs = arm.observe()
            self.last_obs = obs
            # The source is reset and primed as every episode loop does it (a pipelined planner
            # makes its first plan here, while the arm holds still, before the clock starts).
            start_episode(source, obs.data, reset=self.reset_source)
            if recorder is not None:
                recorder.start()
            prev_tick = time.monotonic()
            deadline = prev_tick
            t_start = prev_tick
            while True:
                if step > 0:
                    # Observe at the start of the period: the action is chosen from the freshest
                    # state (a real arm moved while the loop slept), and the row is stamped now.
                    obs = arm.observe()
                    self.last_obs = obs
                    if stop_when is not None and stop_when(obs.data):
                        stats.stopped_by = "stop_when"
                        break
                if max_steps is not None and step >= max_steps:
                    stats.stopped_by = "max_steps"
                    break
                if stop.is_set():
                    stats.stopped_by = "request_stop"
                    break
                action = source.act(obs.data)
                state = get_state() if get_state is not None else None
                applied = arm.send(action)
                if recorder is not None:
                    reward = float(reward_fn()) if reward_fn is not None else 0.0
                    recorder.record(obs.data, applied, reward=reward, timestamp=obs.timestamp, state=state)
                if on_step is not None:
                    on_step(step, obs, applied)
                step += 1
                deadline += period
                now = time.monotonic()
                work.add((now - prev_tick) * 1e3)
                if now > deadline:
                    stats.overruns += 1
                    deadline = now  # resync: never fire a burst of late steps
                else:
                    self._sleep_until(deadline)
                tick = time.monotonic()
                jitter.add((tick - prev_tick - period) * 1e3)
                prev_tick = tick
            finished_ok = True
        except KeyboardInterrupt:
            stats.stopped_by = "interrupt"
            log.warning("control loop interrupted after %d steps", step)
        except BaseException as exc:
            self._leave_realtime(prev_sched)
            stats.stopped_by = "error"
            stats.error = f"{type(exc).__name__}: {exc}"
            self._finish(stats, step, obs, keep=self.keep_on_interrupt, t_start=t_start, jitter=jitter, work=work)
            raise
        self._leave_realtime(prev_sched)
        self._finish(stats, step, obs, keep=finished_ok or self.keep_on_interrupt, t_start=t_start, jitter=jitter, work=work)
        return stats

    def _finish(self, stats: LoopStats, step: int, obs: Observation | None, keep: bool, t_start: float,
                jitter: _Buffer, work: _Buffer) -> None:
        stats.steps = step
        stats.duration_s = time.monotonic() - t_start
        j, w = jitter.values(), work.values()
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
                if self._get_state is not None:
                    try:
                        final_state = self._get_state()
                    except Exception as exc:  # the episode matters more than its last state
                        log.warning("could not read the final simulator state: %s", exc)
                path: Path = rec.finish(obs.data, bool(success), final_timestamp=obs.timestamp, final_state=final_state)
                stats.episode_path = str(path)
                log.info("episode written to %s", path)
            except Exception as exc:
                log.error("could not write the episode: %s", exc)
                rec.discard()
                if stats.error is None:
                    raise
        else:
            rec.discard()
