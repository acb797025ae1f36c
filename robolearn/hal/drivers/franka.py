"""Franka Emika Panda / FR3 through ``franky`` (package ``franky-control``), as an ``Arm``.

Optional extra: ``pip install 'robolearn[franka]'``; imported only in ``connect()``. franky
needs a real-time kernel and the FCI enabled on the robot (see its README).

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
* ``stop()``: a stop motion (``CartesianPoseStopMotion``, or the older ``CartesianStopMotion``/
  ``StopMotion`` where that is what the installed franky has). libfranka itself aborts when
  commands stop arriving, which is the robot-side watchdog.

No Franka exists on the machines this was written on: the tests drive this adapter
against stand-in objects with franky's class and method names and check the motions it
builds, not a robot.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.geometry import axis_angle_to_quat, quat_mul
from robolearn.hal.arm import ArmError, ArmSpec, Observation
from robolearn.hal.noop_arm import command_scales
from robolearn.hal.shield import require_number

FRANKA_HOME_Q = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
GRIPPER_OPEN = 0.08


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
            robot = f.Robot(self.host)
            robot.relative_dynamics_factor = self.relative_dynamics_factor
            robot.recover_from_errors()
            self._gripper = f.Gripper(self.host)
        except Exception as exc:  # franky raises its own exception types on FCI failures
            raise ArmError(f"{self.spec.name}: cannot connect to the Franka at {self.host}: {exc}") from None
        self._f, self._robot = f, robot

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

    def target(self, cmd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = self._pose()
        q = quat_mul(axis_angle_to_quat(cmd[3:6] * self.rot_scale), quat)
        return pos + cmd[:3] * self.pos_scale, q / np.linalg.norm(q)

    def send(self, command: np.ndarray) -> np.ndarray:
        robot = self._require()
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.shape != (7,) or not np.all(np.isfinite(cmd)):
            raise ArmError(f"{self.spec.name}: command must be 7 finite numbers, got {np.asarray(command).tolist()}")
        cmd = np.clip(cmd, -1.0, 1.0)
        t, q = self.target(cmd)
        f = self._f
        motion = f.CartesianMotion(f.Affine(t.tolist(), q.tolist()), f.ReferenceType.Absolute)
        try:
            robot.move(motion, asynchronous=True)
        except Exception as exc:
            raise ArmError(f"{self.spec.name}: franky refused the motion: {exc}") from None
        closed = bool(cmd[6] > 0)
        if closed != self._closed:
            self._gripper.move_async(self.grasp_width if closed else GRIPPER_OPEN, self.gripper_speed)
            self._closed = closed
        return cmd.astype(np.float32)

    def home(self) -> Observation:
        robot = self._require()
        robot.move(self._f.JointMotion(self.home_q))
        self._gripper.move(GRIPPER_OPEN, self.gripper_speed)
        self._closed = False
        return self.observe()

    def stop(self) -> None:
        if self._robot is None:
            return
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
            self._robot = self._gripper = self._f = None
