"""An in-memory arm that integrates OSC_POSE delta commands into an end-effector pose.

Why it exists: the loop benchmark and the HAL tests need an Arm whose own cost is
negligible (microseconds), so that what they measure is the loop, the shield or the
socket, not a physics engine. It also serves as the arm behind ``robolearn serve-arm
controllers/noop.yaml`` for protocol tests on a machine without a robot.

It integrates rotations with ``robolearn.geometry``, as the PyBullet arm and the vendor
drivers do, so every backend agrees on one quaternion convention.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.geometry import axis_angle_to_quat, quat_mul
from robolearn.hal.arm import ArmError, ArmSpec, Observation, command_scales

EEF_POS, EEF_QUAT, GRIPPER_QPOS = "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"
FINGER_OPEN = 0.04  # metres per finger at gripper = -1 (Panda-like)


def default_obs_spec() -> dict[str, ObsFieldSpec]:
    return {
        EEF_POS: ObsFieldSpec((3,)),
        EEF_QUAT: ObsFieldSpec((4,)),
        GRIPPER_QPOS: ObsFieldSpec((2,)),
    }


class NoopArm:
    """Integrates ``pos += cmd[:3] * pos_scale`` and ``quat = aa(cmd[3:6] * rot_scale) * quat``.

    ``stop()`` and the commands it saw are counted (``stop_count``, ``send_count``,
    ``last_command``) so tests can check what a shield or server did to the arm.
    Thread-safe: the shield's watchdog and an arm server may call ``stop()`` from
    another thread.
    """

    #: stop() may be called from another thread while a call is in progress (SafetyShield watchdog).
    concurrent_stop_safe = True

    def __init__(
        self,
        control_hz: float = 20.0,
        pos_scale: float = 0.05,
        rot_scale: float = 0.5,
        home_pos: tuple[float, float, float] = (0.0, 0.0, 1.0),
        home_quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0),
        name: str = "noop",
    ):
        self.spec = ArmSpec(name=name, obs_spec=default_obs_spec(), action_spec=ActionSpec(dim=7), control_hz=float(control_hz))
        self.pos_scale, self.rot_scale = command_scales(name, pos_scale, rot_scale)
        self._home_pos = np.asarray(home_pos, dtype=np.float64)
        self._home_quat = np.asarray(home_quat, dtype=np.float64)
        self._pos = self._home_pos.copy()
        self._quat = self._home_quat.copy()
        self._fingers = np.full(2, FINGER_OPEN)
        self._connected = False
        self._lock = threading.Lock()
        self.stop_count = 0
        self.send_count = 0
        self.last_command: np.ndarray | None = None
        self.last_stop_time: float | None = None

    def connect(self) -> None:
        self._connected = True
        self.home()

    @property
    def connected(self) -> bool:
        return self._connected

    def _require(self) -> None:
        if not self._connected:
            raise ArmError(f"{self.spec.name}: not connected; call connect() first")

    def observe(self) -> Observation:
        self._require()
        with self._lock:
            data = {
                EEF_POS: self._pos.astype(np.float32),
                EEF_QUAT: self._quat.astype(np.float32),
                GRIPPER_QPOS: self._fingers.astype(np.float32),
            }
        return Observation(time.monotonic(), data)

    def eef_position(self) -> np.ndarray:
        """The integrated position itself (float64), for the SafetyShield's per-command check."""
        self._require()
        with self._lock:
            return self._pos.copy()

    def send(self, command: np.ndarray) -> np.ndarray:
        self._require()
        cmd = np.asarray(command, dtype=np.float64)
        if cmd.shape != (7,):
            raise ArmError(f"{self.spec.name}: command must have shape (7,), got {cmd.shape}")
        with self._lock:
            self._pos = self._pos + cmd[:3] * self.pos_scale
            dq = axis_angle_to_quat(cmd[3:6] * self.rot_scale)
            q = quat_mul(dq, self._quat)
            self._quat = q / np.linalg.norm(q)
            self._fingers[:] = FINGER_OPEN * (1.0 - float(np.clip(cmd[6], -1.0, 1.0))) / 2.0
            self.send_count += 1
            self.last_command = cmd.astype(np.float32)
        return cmd.astype(np.float32)

    def home(self) -> Observation:
        self._require()
        with self._lock:
            self._pos = self._home_pos.copy()
            self._quat = self._home_quat.copy()
            self._fingers[:] = FINGER_OPEN
        return self.observe()

    def stop(self) -> None:
        # Delta commands already hold position when none arrive; a stop only needs recording.
        with self._lock:
            self.stop_count += 1
            self.last_stop_time = time.monotonic()

    def close(self) -> None:
        self._connected = False
