"""SafetyShield: an Arm that wraps another Arm and stands between every command source
and the hardware. ON by default (``controllers/<arm>.yaml`` under ``shield:``).

Why a wrapper rather than checks inside each backend: LeRobot, ur_rtde and Polymetis
users get clipping only where a backend remembered it, clipping is off by default and
most arms have no command watchdog. One shield, configured per arm, gives every
backend (simulated, remote, vendor) the same guarantees:

* workspace box: a translation that would take the end effector out of the box is
  shortened so the target stays inside (an arm already outside may only move back in).
  Every backend adds the delta to the end-effector position it measures when the command
  arrives, so the shield measures that same position immediately before clipping each
  command (``measure_eef``), under its lock: a position remembered from an earlier
  ``observe()`` or ``home()`` would let a burst of sends walk out of the box. An arm that
  moves between the two measurements (a real arm still travelling, a follower thread
  streaming setpoints) would add the delta to a position the shield never saw, so such
  arms offer ``send_within(command, low, high)`` and clamp their absolute target into the
  box the shield clipped against;
* per-step translation (metres) and rotation (radians) limits, gripper limits, and the
  action bounds [-1, 1];
* NaN/inf or wrongly shaped commands are rejected: the arm holds position (zero motion,
  last gripper command) and ``ShieldError`` is raised after ``max_rejects_in_row``;
* a command watchdog in a background thread: when no valid command arrives for
  ``watchdog_ms`` the arm is stopped, even if the command source hangs completely;
* an e-stop latch: after ``estop()`` every send/home raises ``EStopError`` and the arm
  is held until ``reset_estop()`` is called explicitly.

Every intervention increments a counter in ``ShieldStats`` and is logged.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from robolearn.config import ConfigError, from_dict, require_int, require_number
from robolearn.hal.arm import Arm, ArmError, ArmSpec, Observation, position_box

log = logging.getLogger(__name__)
EEF_POS = "robot0_eef_pos"
STOP_LOCK_WAIT_S = 1.0  # longest a stop waits for a send in another thread before stopping the arm anyway


def measure_eef(arm: Any) -> np.ndarray:
    """The arm's end-effector position (metres) measured now.

    Arms that can read it cheaply offer ``eef_position()`` (the in-memory arm, the
    simulators and the vendor drivers all do); for any other arm this costs one
    ``observe()``. Raises ShieldError when there is no finite position to measure, since
    the workspace box cannot be enforced without one."""
    read = getattr(arm, "eef_position", None)
    pos = read() if callable(read) else arm.observe().data.get(EEF_POS)
    name = getattr(getattr(arm, "spec", None), "name", type(arm).__name__)
    if pos is None:
        raise ShieldError(f"{name}: the arm's observation has no '{EEF_POS}'; the workspace box cannot be enforced")
    pos = np.asarray(pos, dtype=np.float64).reshape(-1)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise ShieldError(f"{name}: measured end-effector position {pos.tolist()} is not 3 finite numbers; "
                          "the workspace box cannot be enforced")
    return pos


class ShieldError(ArmError):
    """The shield refused to go on (repeated invalid commands, e-stop, missing eef position)."""


class EStopError(ShieldError):
    """The e-stop latch is set; only ``reset_estop()`` clears it."""


@dataclass
class ShieldConfig:
    """Per-arm safety limits. Lengths in metres, angles in radians, in the arm's base frame."""

    #: False turns off the workspace box and the step/gripper limits only: NaN/shape
    #: rejection, the e-stop latch and the watchdog (``watchdog_ms``) always stay on.
    enabled: bool = True
    #: End-effector workspace box (metres). Required when ``enabled``.
    workspace_low: list[float] | None = None
    workspace_high: list[float] | None = None
    #: Largest end-effector translation per control step (metres).
    max_step_pos: float = 0.05
    #: Largest rotation per control step (radians).
    max_step_rot: float = 0.5
    gripper_low: float = -1.0
    gripper_high: float = 1.0
    #: Consecutive rejected (NaN/inf, wrong shape) commands before ShieldError.
    max_rejects_in_row: int = 3
    #: No valid command for this long -> arm.stop(). 0 disables (never do that on hardware).
    watchdog_ms: float = 500.0

    def validate(self, source: str = "shield") -> None:
        """Refuse limits that would not limit. The parts that stay on while ``enabled`` is
        False (reject streak, watchdog) are checked either way, and so is every limit that
        is given; only the box is required, and only while the shield is enabled."""
        if not isinstance(self.enabled, (bool, np.bool_)):
            raise ConfigError(source, "enabled", f"expected true or false, got {self.enabled!r}")
        require_int(source, "max_rejects_in_row", self.max_rejects_in_row, at_least=1)
        require_number(source, "watchdog_ms", self.watchdog_ms, at_least=0.0)
        self._validate_box(source)
        for name in ("max_step_pos", "max_step_rot"):
            require_number(source, name, getattr(self, name), positive=True)
        for name in ("gripper_low", "gripper_high"):
            require_number(source, name, getattr(self, name), at_least=-1.0, at_most=1.0)
        if not self.gripper_low <= self.gripper_high:
            raise ConfigError(source, "gripper_low", f"expected gripper_low <= gripper_high, got {self.gripper_low} > {self.gripper_high}")

    def _validate_box(self, source: str) -> None:
        for name in ("workspace_low", "workspace_high"):
            v = getattr(self, name)
            if v is None:
                if self.enabled:
                    raise ConfigError(source, name, "required while the shield is enabled: a list of 3 numbers (metres)")
                continue
            if not isinstance(v, (list, tuple)) or len(v) != 3:
                raise ConfigError(source, name, f"expected a list of 3 finite numbers, got {v!r}")
            for i, x in enumerate(v):
                require_number(source, f"{name}[{i}]", x)
        if self.workspace_low is None or self.workspace_high is None:
            return
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high)):
            raise ConfigError(source, "workspace_low", f"must be below workspace_high on every axis: {self.workspace_low} vs {self.workspace_high}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str = "shield") -> "ShieldConfig":
        cfg = from_dict(cls, data, source)
        cfg.validate(source)
        return cfg


@dataclass
class ShieldStats:
    """How often the shield stepped in. ``interventions`` sums everything but ``commands``."""

    commands: int = 0
    clipped_bounds: int = 0
    clipped_workspace: int = 0
    clipped_step_pos: int = 0
    clipped_step_rot: int = 0
    clipped_gripper: int = 0
    rejected_nonfinite: int = 0
    rejected_shape: int = 0
    refused_estop: int = 0
    watchdog_stops: int = 0
    estops: int = 0

    @property
    def interventions(self) -> int:
        return sum(v for k, v in asdict(self).items() if k != "commands")

    def to_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["interventions"] = self.interventions
        return d


class SafetyShield:
    """Wraps ``arm``; is itself an Arm. ``pos_scale``/``rot_scale`` are the controller's
    metres and radians per command unit (robosuite OSC_POSE: 0.05 and 0.5), needed to
    turn per-step limits and the workspace box into command units. They must be the
    scales the arm itself applies: an arm that exposes ``pos_scale``/``rot_scale`` and
    disagrees is refused. ``source`` names the controller file in configuration errors."""

    def __init__(self, arm: Arm, config: ShieldConfig | None = None, pos_scale: float = 0.05, rot_scale: float = 0.5,
                 source: str = "shield"):
        self.arm = arm
        self.config = config if config is not None else ShieldConfig()
        self.config.validate(source)
        self.pos_scale = require_number(source, "pos_scale", pos_scale, positive=True)
        self.rot_scale = require_number(source, "rot_scale", rot_scale, positive=True)
        self._check_arm_scales(source)
        self.stats = ShieldStats()
        self._lock = threading.RLock()
        self._estop = False
        self._rejects_in_row = 0
        self._last_gripper = -1.0
        self._last_valid = time.monotonic()
        self._wd_armed = False  # armed by the first valid command; disarmed by a trip until the next one
        self._wd_stop = threading.Event()
        self._wd_thread: threading.Thread | None = None
        if self.config.enabled:
            self._low = np.asarray(self.config.workspace_low, dtype=np.float64)
            self._high = np.asarray(self.config.workspace_high, dtype=np.float64)
        lo, hi = arm.spec.action_spec.bounds()
        self._act_low, self._act_high = lo.astype(np.float64), hi.astype(np.float64)
        self._dim = arm.spec.action_spec.dim

    # -- Arm protocol -----------------------------------------------------------------
    @property
    def spec(self) -> ArmSpec:
        return self.arm.spec

    @property
    def connected(self) -> bool:
        return self.arm.connected

    def connect(self) -> None:
        self.arm.connect()
        self._start_watchdog()

    def observe(self) -> Observation:
        with self._lock:
            return self.arm.observe()

    def eef_position(self) -> np.ndarray:
        """The wrapped arm's end-effector position, measured now (so shields and task
        wrappers can be stacked without losing the cheap measurement)."""
        with self._lock:
            return measure_eef(self.arm)

    def send(self, command: np.ndarray) -> np.ndarray:
        return self._send(command, None)

    def send_within(self, command: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``send`` for a wrapper above (another shield) that has already bounded the absolute
        position target to [low, high]: that box is intersected with this shield's own, so a
        caller can only tighten the limits, never widen them."""
        return self._send(command, self._caller_bounds(low, high))

    def _send(self, command: np.ndarray, outer: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        with self._lock:
            if self._estop:
                self.stats.refused_estop += 1
                self._hold()
                raise EStopError(f"{self.spec.name}: e-stop is latched; command refused (call reset_estop() to resume)")
            self.stats.commands += 1
            cmd = self._check(command)
            if cmd is None:
                return self._reject()
            self._rejects_in_row = 0
            bounds = outer
            if self.config.enabled:
                cmd, bounds = self._clip(cmd, outer)
            applied = self._dispatch(cmd.astype(np.float32), bounds)
            self._last_gripper = float(cmd[6]) if self._dim >= 7 else self._last_gripper
            self._mark_valid()
            return applied

    def _dispatch(self, cmd: np.ndarray, bounds: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """Hand the clipped command to the arm. An arm that can move between the shield's
        measurement and its own (a real arm, one streamed by a follower thread) offers
        ``send_within`` and clamps the absolute target it computes from its own measurement
        into the box the command was clipped against; any other arm only moves when sent to,
        so the position the shield measured is the one it adds the delta to."""
        within = getattr(self.arm, "send_within", None) if bounds is not None else None
        if callable(within):
            return within(cmd, bounds[0], bounds[1])
        return self.arm.send(cmd)

    def _caller_bounds(self, low: Any, high: Any) -> tuple[np.ndarray, np.ndarray]:
        """[low, high] from a caller (``position_box``), or ShieldError with the arm stopped."""
        try:
            return position_box(self.spec.name, low, high)
        except ArmError as exc:
            self.arm.stop()
            raise ShieldError(f"{exc}; arm stopped") from None

    def home(self) -> Observation:
        with self._lock:
            if self._estop:
                self.stats.refused_estop += 1
                raise EStopError(f"{self.spec.name}: e-stop is latched; home refused (call reset_estop() first)")
            self._wd_armed = False  # homing is not commanded motion; re-armed by the next command
            obs = self.arm.home()
        self._last_gripper = -1.0
        return obs

    def stop(self) -> None:
        """Stop now. The arm is then deliberately idle: the watchdog re-arms with the next command.

        Never at the same time as the watchdog's stop of the same arm (see ``_stop_arm``)."""
        self._wd_armed = False
        self._stop_arm()

    def close(self) -> None:
        self._wd_stop.set()
        if self._wd_thread is not None and self._wd_thread is not threading.current_thread():
            self._wd_thread.join(timeout=2.0)
        self._wd_thread = None
        try:
            self._stop_arm()  # the join above may have timed out with the watchdog still stopping the arm
        except ArmError:
            pass
        self.arm.close()

    # Pass optional methods of the wrapped arm through (success(), get_state(), ...).
    def __getattr__(self, name: str):
        if name.startswith("_") or name == "arm":
            raise AttributeError(name)
        return getattr(self.arm, name)

    # -- e-stop -----------------------------------------------------------------------
    def estop(self) -> None:
        """Latch the e-stop and stop the arm now. Safe from any thread or signal handler."""
        self._estop = True
        self.stats.estops += 1
        log.critical("%s: E-STOP latched; arm stopped", self.spec.name)
        inner = getattr(self.arm, "estop", None)
        if callable(inner):
            try:
                inner()  # e.g. a RemoteArm: latch the robot-side shield too (own connection, no lock needed)
                return
            except ArmError as exc:
                log.critical("%s: could not latch the inner arm's e-stop (%s); stopping it instead", self.spec.name, exc)
        self._stop_arm()

    def _stop_arm(self) -> None:
        """``arm.stop()`` under the lock the watchdog holds while it stops the arm, so two threads
        never stop a driver at once; after ``STOP_LOCK_WAIT_S`` (a send stuck in another thread)
        the arm is stopped without it: a stop is never left waiting."""
        got = self._lock.acquire(timeout=STOP_LOCK_WAIT_S)
        try:
            self.arm.stop()
        finally:
            if got:
                self._lock.release()

    def reset_estop(self) -> None:
        with self._lock:
            inner = getattr(self.arm, "reset_estop", None)
            if callable(inner):
                inner()
            if self._estop:
                log.warning("%s: e-stop reset by operator", self.spec.name)
            self._estop = False
            self._rejects_in_row = 0
            self._wd_armed = False

    @property
    def estopped(self) -> bool:
        return self._estop

    # -- internals --------------------------------------------------------------------
    def _check_arm_scales(self, source: str) -> None:
        """The box is enforced in metres through ``pos_scale``: if the arm moved further per
        command unit than the shield assumes, a clipped target would still leave the box."""
        for name, mine in (("pos_scale", self.pos_scale), ("rot_scale", self.rot_scale)):
            theirs = getattr(self.arm, name, None)
            if isinstance(theirs, (int, float)) and not isinstance(theirs, bool) and not math.isclose(float(theirs), mine, rel_tol=1e-9):
                raise ConfigError(source, name, f"the shield assumes {mine:g} per command unit but arm "
                                  f"{self.arm.spec.name!r} applies {theirs!r}; they must be the same")

    def _measure_eef(self) -> np.ndarray:
        """Measured now, never remembered: see the module docstring (workspace box). On a
        failed measurement the arm is stopped and the command is not sent."""
        try:
            return measure_eef(self.arm)
        except ShieldError:
            self.arm.stop()
            raise

    def _log(self, counter: str, level: int, msg: str, *args) -> None:
        """Log the 1st, 10th, 100th, ... intervention of a kind: a policy pushing against the
        box every step must not flood the log or slow the loop, but every kind is reported."""
        n = getattr(self.stats, counter)
        if n == 1 or (n >= 10 and str(n).strip("0") == "1"):
            log.log(level, "%s: " + msg + " [%s #%d]", self.spec.name, *args, counter, n)

    def _check(self, command: np.ndarray) -> np.ndarray | None:
        try:
            cmd = np.asarray(command, dtype=np.float64)
        except (TypeError, ValueError):
            self.stats.rejected_shape += 1
            self._log("rejected_shape", logging.WARNING, "rejected a command that is not numeric: %r", command)
            return None
        if cmd.shape != (self._dim,):
            self.stats.rejected_shape += 1
            self._log("rejected_shape", logging.WARNING, "rejected a command of shape %s (expected (%d,))", cmd.shape, self._dim)
            return None
        if not np.all(np.isfinite(cmd)):
            self.stats.rejected_nonfinite += 1
            self._log("rejected_nonfinite", logging.WARNING, "rejected a NaN/inf command %s; holding position", np.array2string(cmd, precision=3))
            return None
        return cmd

    def _reject(self) -> np.ndarray:
        self._rejects_in_row += 1
        applied = self._hold()
        if self._rejects_in_row >= self.config.max_rejects_in_row:
            self.arm.stop()
            raise ShieldError(
                f"{self.spec.name}: {self._rejects_in_row} invalid commands in a row "
                f"(limit max_rejects_in_row={self.config.max_rejects_in_row}); arm stopped"
            )
        return applied

    def _hold(self) -> np.ndarray:
        """Zero motion, gripper unchanged: holds position on delta-command arms and keeps a simulator stepping."""
        hold = np.zeros(self._dim, dtype=np.float32)
        if self._dim >= 7:
            hold[6] = self._last_gripper
        try:
            return self.arm.send(hold)
        except ArmError:
            self.arm.stop()
            raise

    def _clip(self, cmd: np.ndarray, outer: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The command within every limit, and the box (metres) its position target was
        clipped into: the workspace box widened to the measured position (an arm outside may
        move back in), intersected with ``outer`` when a wrapper above handed one down."""
        cfg = self.config
        out = np.clip(cmd, self._act_low, self._act_high)
        if not np.array_equal(out, cmd):
            self.stats.clipped_bounds += 1
            self._log("clipped_bounds", logging.INFO, "command clipped to the action bounds")
        # Translation: per-step limit, then the workspace box, in metres.
        d = out[:3] * self.pos_scale
        n = float(np.linalg.norm(d))
        if n > cfg.max_step_pos:
            d *= cfg.max_step_pos / n
            self.stats.clipped_step_pos += 1
            self._log("clipped_step_pos", logging.INFO, "step translation %.4f m limited to %.4f m", n, cfg.max_step_pos)
        eef = self._measure_eef()
        # An arm already outside the box may stay or move back in, never further out.
        low, high = np.minimum(self._low, eef), np.maximum(self._high, eef)
        if outer is not None:
            low, high = np.maximum(low, outer[0]), np.minimum(high, outer[1])
            empty = low > high  # the two boxes do not meet on this axis: hold it where it is
            low[empty] = high[empty] = eef[empty]
        target = np.clip(eef + d, low, high)
        if not np.array_equal(target, eef + d):  # exact: a relative tolerance would let micrometres through
            self.stats.clipped_workspace += 1
            self._log("clipped_workspace", logging.WARNING, "target %s outside the workspace box; clipped to %s", np.round(eef + d, 4), np.round(target, 4))
            d = target - eef
        # Shortening a translation per axis keeps it between the arm and its clipped target, so
        # the last clip to the action bounds (against rounding at extreme scales) stays in the box.
        out[:3] = np.clip(d / self.pos_scale, self._act_low[:3], self._act_high[:3])
        if self._dim >= 6:
            r = out[3:6] * self.rot_scale
            n = float(np.linalg.norm(r))
            if n > cfg.max_step_rot:
                out[3:6] *= cfg.max_step_rot / n
                self.stats.clipped_step_rot += 1
                self._log("clipped_step_rot", logging.INFO, "step rotation %.3f rad limited to %.3f rad", n, cfg.max_step_rot)
        if self._dim >= 7:
            g = float(np.clip(out[6], cfg.gripper_low, cfg.gripper_high))
            if g != out[6]:
                self.stats.clipped_gripper += 1
                self._log("clipped_gripper", logging.INFO, "gripper %.3f clipped to %.3f", out[6], g)
                out[6] = g
        return out, (low, high)

    def _mark_valid(self) -> None:
        self._last_valid = time.monotonic()
        self._wd_armed = True

    def _start_watchdog(self) -> None:
        if self.config.watchdog_ms <= 0 or self._wd_thread is not None:
            if self.config.watchdog_ms <= 0:
                log.warning("%s: command watchdog disabled (watchdog_ms = 0)", self.spec.name)
            return
        self._wd_stop.clear()
        self._wd_thread = threading.Thread(target=self._watchdog, name=f"shield-watchdog-{self.spec.name}", daemon=True)
        self._wd_thread.start()

    def _watchdog(self) -> None:
        limit = self.config.watchdog_ms / 1000.0
        poll = min(max(limit / 5.0, 0.002), 0.05)
        while not self._wd_stop.wait(poll):
            if not self._wd_armed or time.monotonic() - self._last_valid <= limit:
                continue
            # Do not wait forever for a lock held by a hung send(). Without the lock, stop only
            # arms that declare stop() safe to call concurrently (NoopArm, RemoteArm).
            got = self._lock.acquire(timeout=limit)
            try:
                if not self._wd_armed or time.monotonic() - self._last_valid <= limit:
                    continue
                if not got and not getattr(self.arm, "concurrent_stop_safe", False):
                    log.critical("%s: watchdog: the arm has been busy in one call for over %.0f ms and cannot be "
                                 "stopped safely from another thread; relying on its own timeouts", self.spec.name, 1e3 * limit)
                    continue
                self._wd_armed = False
                self.stats.watchdog_stops += 1
                log.error(
                    "%s: watchdog: no valid command for %.0f ms (limit %.0f ms); arm stopped",
                    self.spec.name, 1000 * (time.monotonic() - self._last_valid), self.config.watchdog_ms,
                )
                try:
                    self.arm.stop()
                except Exception as exc:  # the watchdog must survive a failing stop and keep trying later
                    log.critical("%s: watchdog could not stop the arm: %s", self.spec.name, exc)
                    self._wd_armed = True
            finally:
                if got:
                    self._lock.release()
