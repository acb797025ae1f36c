"""Franka Emika Panda / FR3 through ``franky`` (package ``franky-control``), as an ``Arm``.

Optional extra: ``pip install 'robolearn[franka]'``; imported only in ``connect()``. Written
against franky-control 2.x (1.x has the same names used here). franky needs a real-time
kernel and the FCI enabled on the robot (see its README): without one, ``connect()`` fails
with libfranka's "Running kernel does not have realtime capabilities". ``realtime: false``
(franky's ``RealtimeConfig.Ignore``) is for a simulator such as franky-sim only.

Translation of our OSC_POSE commands:
* the delta is added to the measured end-effector pose
  (``robot.current_cartesian_state.pose.end_effector_pose``: ``translation``, ``quaternion``
  x, y, z, w) and sent as an absolute ``CartesianMotion(Affine(translation, quaternion),
  ReferenceType.Absolute)`` with ``robot.move(motion, asynchronous=True)``: each new command
  pre-empts the previous motion, and franky's trajectory generator keeps velocity,
  acceleration and jerk inside the robot's limits (scaled by ``relative_dynamics_factor``);
* gripper: when the command crosses 0, ``Gripper.move_async(width, speed)`` to open (0.08 m)
  or closed (``grasp_width``); observed finger positions are ``gripper.width / 2`` each, in
  robosuite's signs (+left, -right);
* ``follower: {rate_hz, max_target_age_ms, ...}`` (``robolearn/hal/interpolation.py``): the
  target pose goes to a ``TargetFollower`` instead, whose thread hands the interpolated path
  to franky as one asynchronous ``CartesianMotion`` per tick (``rate_hz`` up to 1000). Each
  pre-empts the last, and franky's motion generator plans between them at the robot's 1 kHz
  inside libfranka's control loop; stale targets are held, and commanded against achieved
  poses are recorded;
* ``stop()``: halts the follower, then a stop motion (``CartesianStopMotion`` in franky 2.x,
  ``CartesianPoseStopMotion``/``StopMotion`` where that is what the installed franky has).
  libfranka itself aborts when commands stop arriving, which is the robot-side watchdog;
* ``home()``: stops any Cartesian motion first (franky refuses to change the control signal
  type while the robot moves), then a ``JointMotion``.

No Franka exists on the machines this was written on: ``tests/test_franka_sim.py`` drives
this adapter through franky against franky-sim (MuJoCo behind the libfranka network
protocol), and ``tests/test_hal_drivers.py`` against stand-in objects.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from robolearn.config import require_number
from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.geometry import axis_angle_to_quat, quat_mul
from robolearn.hal.arm import ArmError, ArmSpec, Observation, command_scales, position_box
from robolearn.hal.interpolation import FollowerConfig, TargetFollower

FRANKA_HOME_Q = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
GRIPPER_OPEN = 0.08
#: libfranka's control rate: the fastest a follower can usefully hand franky setpoints.
FRANKA_CONTROL_HZ = 1000.0


def _import_franky():
    try:
        import franky
    except ImportError as exc:
        raise ArmError(f"the Franka arm needs franky: pip install 'robolearn[franka]' (package franky-control) ({exc})") from None
    return franky


class FrankaArm:
    def __init__(
        self,
        host: str,
        control_hz: float = 20.0,
        pos_scale: float = 0.05,
        rot_scale: float = 0.5,
        relative_dynamics_factor: float = 0.1,
        gripper_speed: float = 0.05,
        grasp_width: float = 0.0,
        home_q: list[float] | None = None,
        realtime: bool = True,
        follower: Mapping[str, Any] | FollowerConfig | None = None,
        name: str = "franka",
    ):
        if not 0 < relative_dynamics_factor <= 1:
            raise ArmError(f"{name}: relative_dynamics_factor must be in (0, 1], got {relative_dynamics_factor}")
        self.host = host
        self.control_hz = require_number(name, "control_hz", control_hz, positive=True)
        self.pos_scale, self.rot_scale = command_scales(name, pos_scale, rot_scale)
        self.relative_dynamics_factor = float(relative_dynamics_factor)
        self.gripper_speed = require_number(name, "gripper_speed", gripper_speed, positive=True)
        self.grasp_width = require_number(name, "grasp_width", grasp_width, at_least=0.0, at_most=GRIPPER_OPEN)
        self.home_q = list(home_q or FRANKA_HOME_Q)
        if not isinstance(realtime, bool):
            raise ArmError(f"{name}: realtime must be true or false, got {realtime!r}")
        self.realtime = realtime
        if isinstance(follower, FollowerConfig):
            self.follower_config: FollowerConfig | None = follower.validate(name, self.control_hz, FRANKA_CONTROL_HZ)
        else:
            self.follower_config = (None if follower is None
                                    else FollowerConfig.from_mapping(follower, name, self.control_hz, FRANKA_CONTROL_HZ))
        self.follower: TargetFollower | None = None
        self.spec = ArmSpec(
            name=name,
            obs_spec={"robot0_eef_pos": ObsFieldSpec((3,)), "robot0_eef_quat": ObsFieldSpec((4,)),
                      "robot0_gripper_qpos": ObsFieldSpec((2,)), "robot0_joint_pos": ObsFieldSpec((7,))},
            action_spec=ActionSpec(dim=7, names=["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]),
            control_hz=self.control_hz,
        )
        self._f: Any = None
        self._robot: Any = None
        self._gripper: Any = None
        self._closed: bool | None = None

    @property
    def connected(self) -> bool:
        return self._robot is not None

    def connect(self) -> None:
        if self._robot is not None:
            return
        f = _import_franky()
        try:
            # Enforce is franky's default; only a simulator is driven without a real-time kernel.
            robot = f.Robot(self.host) if self.realtime else f.Robot(self.host, realtime_config=f.RealtimeConfig.Ignore)
            robot.relative_dynamics_factor = self.relative_dynamics_factor
            robot.recover_from_errors()
            self._gripper = f.Gripper(self.host)
        except Exception as exc:  # franky raises its own exception types on FCI failures
            raise ArmError(f"{self.spec.name}: cannot connect to the Franka at {self.host}: {exc}") from None
        self._f, self._robot = f, robot
        if self.follower_config is not None:
            self.follower = TargetFollower(self._stream, self._pose, self.follower_config, self.control_hz,
                                           name=self.spec.name, skip_repeats=True)
            self.follower.start()

    def _require(self):
        if self._robot is None:
            raise ArmError(f"{self.spec.name}: not connected; call connect() first")
        return self._robot

    def _pose(self) -> tuple[np.ndarray, np.ndarray]:
        ee = self._robot.current_cartesian_state.pose.end_effector_pose
        return np.asarray(ee.translation, np.float64).reshape(3), np.asarray(ee.quaternion, np.float64).reshape(4)

    def eef_position(self) -> np.ndarray:
        """The measured end-effector position that ``target`` adds the delta to."""
        self._require()
        return self._pose()[0]

    def observe(self) -> Observation:
        robot = self._require()
        pos, quat = self._pose()
        half = float(self._gripper.width) / 2.0
        return Observation(time.monotonic(), {
            "robot0_eef_pos": pos.astype(np.float32),
            "robot0_eef_quat": quat.astype(np.float32),
            "robot0_gripper_qpos": np.array([half, -half], np.float32),
            "robot0_joint_pos": np.asarray(robot.current_joint_state.position, np.float32).reshape(7),
        })

    def target(self, cmd: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The absolute pose a command asks for, from the measured one; with ``box`` (low,
        high), the position is clamped into it."""
        pos, quat = self._pose()
        q = quat_mul(axis_angle_to_quat(cmd[3:6] * self.rot_scale), quat)
        t = pos + cmd[:3] * self.pos_scale
        if box is not None:
            t = np.clip(t, box[0], box[1])
        return t, q / np.linalg.norm(q)

    def send(self, command: np.ndarray) -> np.ndarray:
        return self._send(command, None)

    def send_within(self, command: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``send`` with the target position clamped into [low, high]: the arm keeps moving
        (an asynchronous motion, or the follower's stream) between the shield's read and this one."""
        return self._send(command, position_box(self.spec.name, low, high))

    def _send(self, command: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        self._require()
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.shape != (7,) or not np.all(np.isfinite(cmd)):
            raise ArmError(f"{self.spec.name}: command must be 7 finite numbers, got {np.asarray(command).tolist()}")
        cmd = np.clip(cmd, -1.0, 1.0)
        t, q = self.target(cmd, box)
        if self.follower is not None:
            self.follower.follow(t, q, moves=bool(np.any(cmd[:6])))
        else:
            self._move_to(t, q)
        closed = bool(cmd[6] > 0)
        if closed != self._closed:
            self._gripper.move_async(self.grasp_width if closed else GRIPPER_OPEN, self.gripper_speed)
            self._closed = closed
        return cmd.astype(np.float32)

    def _move_to(self, t: np.ndarray, q: np.ndarray) -> None:
        """An asynchronous absolute CartesianMotion, pre-empting the one running."""
        f = self._f
        motion = f.CartesianMotion(f.Affine(np.asarray(t).tolist(), np.asarray(q).tolist()), f.ReferenceType.Absolute)
        try:
            self._robot.move(motion, asynchronous=True)
        except Exception as exc:
            raise ArmError(f"{self.spec.name}: franky refused the motion: {exc}") from None

    def _stream(self, t: np.ndarray, q: np.ndarray) -> None:
        """One follower setpoint (the follower's thread)."""
        if self._robot is None:
            raise ArmError(f"{self.spec.name}: not connected")
        self._move_to(t, q)

    def home(self) -> Observation:
        robot = self._require()
        self.stop()
        join = getattr(robot, "join_motion", None)
        if callable(join):
            join(5.0)
        robot.move(self._f.JointMotion(self.home_q))
        self._gripper.move(GRIPPER_OPEN, self.gripper_speed)
        self._closed = False
        return self.observe()

    def stop(self) -> None:
        if self._robot is None:
            return
        if self.follower is not None:
            self.follower.halt()  # no setpoint after this returns, so the stop motion is the last word
        f = self._f
        for name in ("CartesianPoseStopMotion", "CartesianStopMotion", "StopMotion"):
            cls = getattr(f, name, None)
            if cls is not None:
                self._robot.move(cls(), asynchronous=True)
                return
        raise ArmError(f"{self.spec.name}: this franky has no stop motion class; cannot stop the arm")

    def close(self) -> None:
        if self._robot is None:
            return
        try:
            self.stop()
        finally:
            if self.follower is not None:
                self.follower.close()
            self.follower = None
            self._robot = self._gripper = self._f = None
