"""Universal Robots (CB3 / e-series) through ``ur_rtde`` (SDU Robotics), as an ``Arm``.

Optional extra: ``pip install 'robolearn[ur]'`` (package ``ur-rtde``). It is imported only
in ``connect()``; without it the error says what to install.

Translation of our OSC_POSE commands (7 numbers in [-1, 1]):
* delta position ``cmd[:3] * pos_scale`` metres and delta rotation ``cmd[3:6] * rot_scale``
  radians (axis-angle, base frame, applied on the left like robosuite's OSC) are added to
  the *measured* TCP pose (``RTDEReceiveInterface.getActualTCPPose``: x, y, z, rx, ry, rz);
* ``mode: servoL`` sends the target pose with ``servoL(pose, speed, acceleration, time,
  lookahead_time, gain)``, ``time`` = one control period; ``mode: speedL`` sends the
  equivalent Cartesian velocity with ``speedL(xd, acceleration, time)``;
* ``follower: {rate_hz, max_target_age_ms, ...}`` (servoL only; ``robolearn/hal/interpolation.py``):
  the target pose goes to a ``TargetFollower`` instead, whose thread streams the interpolated
  path with one ``servoL`` per servo tick (``time`` = 1 / ``rate_hz``: 125 Hz on CB3, up to
  500 Hz on e-series), holds when targets go stale, and records commanded against achieved
  TCP poses. The pose handed to it is the one computed from the shield-clipped command,
  clamped into the shield's box (``send_within``);
* gripper: UR arms have none built in; ``gripper: digital_out`` switches a standard
  digital output through ``RTDEIOInterface.setStandardDigitalOut`` when the command
  crosses 0 (+ closed), ``gripper: none`` ignores it.

Safety on top of the SafetyShield: ur_rtde's own controller-side watchdog is armed with
``setWatchdog(min_frequency)`` and kicked after every command, so the robot stops by
itself if this process dies (with a follower, kicked at every streamed setpoint); ``stop()``
halts the follower, then ``servoStop``/``speedStop``. Calls into ``RTDEControlInterface``
come from the caller's thread and the follower's, so they are serialised by one lock.

No UR arm exists on the machines this was written on: the tests drive this adapter
against stand-in objects with ur_rtde's method names and signatures and check the
numbers it sends, not a robot.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

import numpy as np

from robolearn.config import require_number
from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.geometry import axis_angle_to_quat, quat_mul, quat_to_axis_angle
from robolearn.hal.arm import ArmError, ArmSpec, Observation, command_scales, position_box
from robolearn.hal.interpolation import FollowerConfig, TargetFollower

UR_HOME_Q = [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]
#: The e-series servo rate; CB3 controllers run at 125 Hz.
UR_MAX_SERVO_HZ = 500.0


def _import_ur():
    try:
        import rtde_control
        import rtde_receive
    except ImportError as exc:
        raise ArmError(f"the UR arm needs ur_rtde: pip install 'robolearn[ur]' (package ur-rtde) ({exc})") from None
    try:
        import rtde_io
    except ImportError:
        rtde_io = None
    return rtde_control, rtde_receive, rtde_io


class URRtdeArm:
    def __init__(
        self,
        host: str,
        control_hz: float = 125.0,
        pos_scale: float = 0.05,
        rot_scale: float = 0.5,
        mode: str = "servoL",
        speed: float = 0.25,
        acceleration: float = 0.5,
        lookahead_time: float = 0.1,
        gain: float = 300.0,
        watchdog_min_hz: float | None = None,
        home_q: list[float] | None = None,
        gripper: str = "none",
        gripper_output: int = 0,
        follower: Mapping[str, Any] | FollowerConfig | None = None,
        name: str = "ur",
    ):
        if mode not in ("servoL", "speedL"):
            raise ArmError(f"{name}: mode must be servoL or speedL, got {mode!r}")
        if gripper not in ("none", "digital_out"):
            raise ArmError(f"{name}: gripper must be none or digital_out, got {gripper!r}")
        if not 0.03 <= lookahead_time <= 0.2 or not 100 <= gain <= 2000:
            raise ArmError(f"{name}: ur_rtde requires lookahead_time in [0.03, 0.2] s and gain in [100, 2000]")
        self.host, self.mode = host, mode
        self.control_hz = require_number(name, "control_hz", control_hz, positive=True)
        self.dt = 1.0 / self.control_hz
        self.pos_scale, self.rot_scale = command_scales(name, pos_scale, rot_scale)
        self.speed = require_number(name, "speed", speed, positive=True)
        self.acceleration = require_number(name, "acceleration", acceleration, positive=True)
        self.lookahead_time, self.gain = float(lookahead_time), float(gain)
        # Half the command rate: one late command is tolerated, two in a row stop the robot.
        # A NaN or negative rate could leave the controller-side watchdog unarmed.
        self.watchdog_min_hz = (self.control_hz / 2.0 if watchdog_min_hz is None
                                else require_number(name, "watchdog_min_hz", watchdog_min_hz, positive=True))
        self.home_q = list(home_q or UR_HOME_Q)
        self.gripper, self.gripper_output = gripper, int(gripper_output)
        self.follower_config = self._follower_config(follower, name)
        self.follower: TargetFollower | None = None
        self._io_lock = threading.RLock()
        self.spec = ArmSpec(
            name=name,
            obs_spec={"robot0_eef_pos": ObsFieldSpec((3,)), "robot0_eef_quat": ObsFieldSpec((4,)),
                      "robot0_gripper_qpos": ObsFieldSpec((2,)), "robot0_joint_pos": ObsFieldSpec((6,))},
            action_spec=ActionSpec(dim=7, names=["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]),
            control_hz=self.control_hz,
        )
        self._c: Any = None
        self._r: Any = None
        self._io: Any = None
        self._closed_gripper = False
        self.has_watchdog = False

    def _follower_config(self, follower: Any, name: str) -> FollowerConfig | None:
        if follower is None:
            return None
        if self.mode != "servoL":
            raise ArmError(f"{name}: a follower streams servoL setpoints; it needs mode: servoL, not {self.mode}")
        if isinstance(follower, FollowerConfig):
            return follower.validate(name, self.control_hz, UR_MAX_SERVO_HZ)
        return FollowerConfig.from_mapping(follower, name, self.control_hz, UR_MAX_SERVO_HZ)

    # -- Arm protocol -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._c is not None

    def connect(self) -> None:
        if self._c is not None:
            return
        rtde_control, rtde_receive, rtde_io = _import_ur()
        try:
            self._r = rtde_receive.RTDEReceiveInterface(self.host)
            self._c = rtde_control.RTDEControlInterface(self.host)
            if self.gripper == "digital_out":
                if rtde_io is None:
                    raise ArmError(f"{self.spec.name}: gripper: digital_out needs ur_rtde's rtde_io module")
                self._io = rtde_io.RTDEIOInterface(self.host)
        except ArmError:
            raise
        except Exception as exc:  # ur_rtde raises RuntimeError on connection failures
            self._c = self._r = None
            raise ArmError(f"{self.spec.name}: cannot connect to the UR controller at {self.host}: {exc}") from None
        if hasattr(self._c, "setWatchdog"):
            self._c.setWatchdog(self.watchdog_min_hz)
            self.has_watchdog = True
        if self.follower_config is not None:
            self.follower = TargetFollower(self._servo, self._tcp, self.follower_config, self.control_hz, name=self.spec.name)
            self.follower.start()

    def _require(self):
        if self._c is None:
            raise ArmError(f"{self.spec.name}: not connected; call connect() first")
        return self._c

    def _tcp(self) -> tuple[np.ndarray, np.ndarray]:
        pose = np.asarray(self._r.getActualTCPPose(), dtype=np.float64)
        if pose.shape != (6,):
            raise ArmError(f"{self.spec.name}: getActualTCPPose returned {pose.shape} numbers, expected 6")
        return pose[:3], axis_angle_to_quat(pose[3:])

    def eef_position(self) -> np.ndarray:
        """The measured TCP position that ``target_pose`` adds the delta to (one RTDE receive read)."""
        self._require()
        return self._tcp()[0]

    def observe(self) -> Observation:
        self._require()
        pos, quat = self._tcp()
        width = 0.0 if self._closed_gripper else 0.04
        return Observation(time.monotonic(), {
            "robot0_eef_pos": pos.astype(np.float32),
            "robot0_eef_quat": quat.astype(np.float32),
            "robot0_gripper_qpos": np.array([width, -width], np.float32),
            "robot0_joint_pos": np.asarray(self._r.getActualQ(), np.float32),
        })

    def target_pose(self, cmd: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The UR pose [x, y, z, rx, ry, rz] a command asks for, from the measured TCP pose;
        with ``box`` (low, high), the position is clamped into it."""
        pos, quat = self._tcp()
        target_q = quat_mul(axis_angle_to_quat(cmd[3:6] * self.rot_scale), quat)
        target = pos + cmd[:3] * self.pos_scale
        if box is not None:
            target = np.clip(target, box[0], box[1])
        return np.concatenate([target, quat_to_axis_angle(target_q)])

    def send(self, command: np.ndarray) -> np.ndarray:
        return self._send(command, None)

    def send_within(self, command: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``send`` with the target position clamped into [low, high]: the arm keeps moving
        (the follower streams from its own thread) between the shield's TCP read and this one."""
        return self._send(command, position_box(self.spec.name, low, high))

    def _send(self, command: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        c = self._require()
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.shape != (7,) or not np.all(np.isfinite(cmd)):
            raise ArmError(f"{self.spec.name}: command must be 7 finite numbers, got {np.asarray(command).tolist()}")
        cmd = np.clip(cmd, -1.0, 1.0)
        if self.follower is not None:
            pose = self.target_pose(cmd, box)
            self.follower.follow(pose[:3], axis_angle_to_quat(pose[3:]), moves=bool(np.any(cmd[:6])))
        else:
            with self._io_lock:
                if self.mode == "servoL":
                    ok = c.servoL(self.target_pose(cmd, box).tolist(), self.speed, self.acceleration, self.dt,
                                  self.lookahead_time, self.gain)
                else:
                    d = cmd[:3] * self.pos_scale
                    if box is not None:  # the velocity that ends this period inside the box
                        pos = self._tcp()[0]
                        d = np.clip(pos + d, box[0], box[1]) - pos
                    xd = np.concatenate([d, cmd[3:6] * self.rot_scale]) / self.dt
                    ok = c.speedL(xd.tolist(), self.acceleration, self.dt)
                self._check_accepted(ok)
        self._set_gripper(cmd[6] > 0)
        return cmd.astype(np.float32)

    def _check_accepted(self, ok: Any) -> None:
        """A refused motion command raises; an accepted one kicks the controller-side watchdog."""
        if ok is False:
            raise ArmError(f"{self.spec.name}: the UR controller rejected {self.mode} (protective stop or program not running?)")
        if self.has_watchdog:
            self._c.kickWatchdog()

    def _servo(self, position: np.ndarray, quaternion: np.ndarray) -> None:
        """One follower setpoint: servoL over one servo period (the follower's thread)."""
        pose = np.concatenate([position, quat_to_axis_angle(quaternion)]).tolist()
        with self._io_lock:
            c = self._require()
            self._check_accepted(c.servoL(pose, self.speed, self.acceleration, self.follower.period,
                                          self.lookahead_time, self.gain))

    def _set_gripper(self, closed: bool) -> None:
        if self.gripper == "digital_out" and closed != self._closed_gripper:
            self._io.setStandardDigitalOut(self.gripper_output, bool(closed))
        if self.gripper != "none":
            self._closed_gripper = closed

    def home(self) -> Observation:
        c = self._require()
        if self.follower is not None:
            self.follower.halt()
            with self._io_lock:
                c.servoStop()
        with self._io_lock:
            ok = c.moveJ(self.home_q, 0.5, 0.5)
        if ok is False:
            raise ArmError(f"{self.spec.name}: moveJ to home was rejected by the controller")
        self._set_gripper(False)
        return self.observe()

    def stop(self) -> None:
        if self._c is None:
            return
        if self.follower is not None:
            self.follower.halt()  # no setpoint after this returns, so servoStop is the last word
        with self._io_lock:
            if self.mode == "servoL":
                self._c.servoStop()
            else:
                self._c.speedStop()

    def close(self) -> None:
        if self._c is None:
            return
        try:
            self.stop()
            if self.follower is not None:
                self.follower.close()
            self._c.stopScript()
            for iface in (self._c, self._r, self._io):
                if iface is not None and hasattr(iface, "disconnect"):
                    iface.disconnect()
        finally:
            self._c = self._r = self._io = None
            self.follower = None
