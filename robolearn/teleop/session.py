"""A teleoperation session: device -> SafetyShield -> Arm through the HAL's ControlLoop,
recording kept episodes into a demo folder.

States: *idle* (arm held, waiting for "start"), *recording* (the ControlLoop runs the
device as its command source at the task's rate), *review* (the episode hit its step
limit; waiting for save or discard). The operator decides what is kept: an episode is
written only on "save" (atomically, through EpisodeRecorder/DemoWriter), so a session
killed at any moment leaves every saved episode readable and the folder appendable; the
episode in progress is simply lost. Success is the operator's mark when given, else the
task's own success test when the arm has one, else False.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from robolearn.data.format import DemoMeta, DemoWriter
from robolearn.data.recorder import EpisodeRecorder


@dataclass
class SessionConfig:
    hz: float
    max_steps: int | None = None  # per episode; None = until the operator saves or discards
    max_episodes: int | None = None  # stop after this many saved episodes
    status_hz: float = 4.0
    idle_poll_hz: float = 50.0


class DeviceSource:
    """The ControlLoop's command source: polls the device each step and hands its events to
    the session. Also snapshots the simulator state *before* the command is sent, so a
    recorded state lines up with the observation the action was chosen from."""

    def __init__(self, device: Any, on_events: Callable[[list[str]], None], get_state: Callable[[], np.ndarray] | None):
        self.device, self.on_events, self.get_state = device, on_events, get_state
        self.pending_state: np.ndarray | None = None

    def reset(self) -> None:
        self.pending_state = None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.get_state is not None:
            self.pending_state = np.asarray(self.get_state())
        cmd, events = self.device.poll()
        if events:
            self.on_events(events)
        return cmd


class _LoopRecorder:
    """What the ControlLoop sees as its recorder: forwards steps (with the pre-action state)
    but reports ``recording = False`` at the end, so the session, not the loop, decides
    whether the episode is written or discarded."""

    def __init__(self, inner: EpisodeRecorder, source: DeviceSource):
        self.inner, self.source = inner, source

    @property
    def recording(self) -> bool:
        return False

    def start(self) -> None:
        self.inner.start()

    def record(self, obs, action, reward=0.0, done=False, timestamp=None, state=None) -> None:
        self.inner.record(obs, action, reward, done, timestamp, self.source.pending_state if state is None else state)

    def finish(self, *a, **k):  # never called: recording is False
        raise RuntimeError("teleop episodes are finished by the session")

    def discard(self) -> None:
        pass


class TeleopSession:
    def __init__(self, arm: Any, device: Any, writer: DemoWriter, config: SessionConfig, out: TextIO | None = None):
        self.arm, self.device, self.writer, self.config = arm, device, writer, config
        self.out = out if out is not None else sys.stderr
        get_state = getattr(arm, "get_state", None)
        self.get_state = get_state if callable(get_state) else None
        self.source = DeviceSource(device, self._on_events, self.get_state)
        self.recorder = EpisodeRecorder(writer)
        self.loop = None
        self.saved: list[Path] = []
        self.discarded = 0
        self.mark: bool | None = None
        self.decision: str | None = None
        self.quit = False
        self.state = "idle"
        self._step = 0
        self._last_status = 0.0
        self._rate = 0.0
        self._ticks: deque[float] = deque(maxlen=20)

    # ------------------------------------------------------------------ events
    def _on_events(self, events: list[str]) -> None:
        for e in events:
            if e == "success":
                self.mark = True
            elif e == "failure":
                self.mark = False
            elif e in ("save", "discard", "quit") or (e == "start_or_save" and self.state == "recording"):
                # the first decision of a batch wins: "v" then "Q" saves, then quits
                if self.decision is None:
                    self.decision = "discard" if e == "quit" else ("save" if e == "start_or_save" else e)
                self.quit = self.quit or e == "quit"
                if self.loop is not None:
                    self.loop.request_stop()

    # ------------------------------------------------------------------ status line
    def _interventions(self) -> int | None:
        stats = getattr(self.arm, "stats", None)
        return getattr(stats, "interventions", None) if stats is not None else None

    def status(self, force: bool = False) -> str:
        now = time.monotonic()
        if not force and now - self._last_status < 1.0 / self.config.status_hz:
            return ""
        self._last_status = now
        iv = self._interventions()
        mark = {None: "-", True: "success", False: "failure"}[self.mark]
        line = (f"[{self.state}] episode {self.writer.next_index} (saved {len(self.saved)}) step {self._step} "
                f"rate {self._rate:5.1f} Hz shield {iv if iv is not None else 'n/a'} mark {mark}")
        if self.state == "idle":
            line += " | Enter start, Q quit"
        elif self.state == "review":
            line += " | step limit: v save, x discard"
        else:
            line += " | v save, x discard, y/n mark"
        self.out.write("\r\x1b[2K" + line)
        self.out.flush()
        return line

    def _on_step(self, step: int, obs, applied) -> None:
        # loop rate over the last ~20 steps: what the operator actually gets, not the nominal rate
        now = time.monotonic()
        self._ticks.append(now)
        if len(self._ticks) >= 2 and self._ticks[-1] > self._ticks[0]:
            self._rate = (len(self._ticks) - 1) / (self._ticks[-1] - self._ticks[0])
        self._step = step + 1
        self.status()

    def message(self, text: str) -> None:
        self.out.write("\r\x1b[2K" + text + "\n")
        self.out.flush()

    # ------------------------------------------------------------------ states
    def _wait_for(self, wanted: set[str]) -> str:
        """Poll the device while the arm holds, until one of ``wanted`` events arrives."""
        period = 1.0 / self.config.idle_poll_hz
        while True:
            _, events = self.device.poll()
            for e in events:
                if e in ("success", "failure"):
                    self.mark = e == "success"
                if e in wanted:
                    return e
                if e == "start_or_save" and "start" in wanted:
                    return "start"
                if e == "start_or_save" and "save" in wanted:
                    return "save"
            self.status()
            time.sleep(period)

    def _record_episode(self) -> None:
        from robolearn.hal.loop import ControlLoop

        self.mark, self.decision, self._step, self._rate = None, None, 0, 0.0
        self._ticks.clear()
        self.arm.home()
        self.state = "recording"
        self.status(force=True)
        self.loop = ControlLoop(self.arm, self.source, self.config.hz, recorder=_LoopRecorder(self.recorder, self.source),
                                on_step=self._on_step, keep_on_interrupt=False)
        try:
            stats = self.loop.run(max_steps=self.config.max_steps)
        finally:
            self.loop = None
        if stats.stopped_by == "interrupt":
            self.recorder.discard()
            self.quit = True
            self.message(f"interrupted: episode {self.writer.next_index} discarded")
            return
        if self.decision is None:  # step limit reached: ask
            self.state = "review"
            self.status(force=True)
            e = self._wait_for({"save", "discard", "quit"})
            self.decision = "discard" if e == "quit" else e
            self.quit = e == "quit"
        if self.decision == "save" and self.recorder.steps > 0:
            obs = self.arm.observe()
            success = self.mark
            if success is None:
                fn = getattr(self.arm, "success", None)
                success = bool(fn()) if callable(fn) else False
            final_state = np.asarray(self.get_state()) if self.get_state is not None else None
            # A simulated arm reports the seed its episode was reset with: stored, it makes
            # replaying the recorded actions exact (robosuite places the objects from it).
            reset_seed = getattr(self.arm, "last_reset_seed", None)
            extra = {"reset_seed": np.int64(reset_seed)} if isinstance(reset_seed, (int, np.integer)) else None
            path = self.recorder.finish(obs.data, bool(success), final_timestamp=obs.timestamp, final_state=final_state,
                                        extra=extra)
            self.saved.append(path)
            # Camera views (a controller file's cameras: section) are recorded as image keys.
            images = [k for k, s in self.writer.meta.obs_spec.items() if s.is_image]
            frames = f"frames of {', '.join(images)}, " if images else ""
            self.message(f"saved {path.name}: {stats.steps} steps, success {bool(success)}, {frames}"
                         f"mean rate {stats.mean_rate_hz:.1f} Hz, overruns {stats.overruns}")
        else:
            self.recorder.discard()
            self.discarded += 1
            self.message(f"discarded episode ({stats.steps} steps)")

    def run(self) -> dict[str, Any]:
        """Until quit (or ``max_episodes`` saved). Returns a summary."""
        from robolearn.hal.loop import interrupts_raise

        with interrupts_raise():  # Ctrl-C ends the session even where the shell started it with SIGINT ignored
            return self._run()

    def _run(self) -> dict[str, Any]:
        try:
            while not self.quit:
                if self.config.max_episodes is not None and len(self.saved) >= self.config.max_episodes:
                    break
                self.state = "idle"
                self.status(force=True)
                if self._wait_for({"start", "quit"}) == "quit":
                    break
                self._record_episode()
        except KeyboardInterrupt:
            self.recorder.discard()
            self.message("interrupted")
        finally:
            try:
                self.arm.stop()
            finally:
                self.device.close()
        return {"saved": [str(p) for p in self.saved], "discarded": self.discarded, "folder": str(self.writer.folder)}


def meta_for(arm: Any, task: str, hz: float, source: str, extra: dict[str, Any] | None = None, controller: str | None = None) -> DemoMeta:
    spec = arm.spec
    return DemoMeta(task=task, control_hz=float(hz), obs_spec=dict(spec.obs_spec), action_spec=spec.action_spec,
                    robot=spec.name, controller=controller, source=source, extra=dict(extra or {}))
