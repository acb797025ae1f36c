"""Vendor adapters (ur_rtde, franky) against stand-in modules with the vendors' class and
method names and signatures. No UR or Franka arm exists here: these tests check the
numbers and motions the adapters hand to the vendor APIs, and the clear errors."""
import sys
import types

import numpy as np
import pytest

from robolearn.hal.arm import ArmError
from robolearn.hal.factory import make_arm
from robolearn.geometry import axis_angle_to_quat, quat_mul, quat_to_axis_angle
from robolearn.hal.shield import SafetyShield

DOWN = [np.pi, 0.0, 0.0]  # tool pointing down: 180 deg about x


# ---------------------------------------------------------------- ur_rtde stand-in
class FakeRTDEReceive:
    def __init__(self, host):
        self.host, self.pose, self.q = host, [0.1, -0.4, 0.3] + DOWN, [0.0] * 6

    def getActualTCPPose(self):
        return list(self.pose)

    def getActualQ(self):
        return list(self.q)

    def disconnect(self):
        pass


class FakeRTDEControl:
    def __init__(self, host):
        self.host, self.calls = host, []

    def servoL(self, pose, speed, acceleration, time, lookahead_time, gain):
        self.calls.append(("servoL", list(pose), speed, acceleration, time, lookahead_time, gain))
        return True

    def speedL(self, xd, acceleration, time=0.0):
        self.calls.append(("speedL", list(xd), acceleration, time))
        return True

    def moveJ(self, q, speed=1.05, acceleration=1.4, asynchronous=False):
        self.calls.append(("moveJ", list(q)))
        return True

    def servoStop(self, a=10.0):
        self.calls.append(("servoStop",))

    def speedStop(self, a=10.0):
        self.calls.append(("speedStop",))

    def setWatchdog(self, min_frequency=10.0):
        self.calls.append(("setWatchdog", min_frequency))
        return True

    def kickWatchdog(self):
        self.calls.append(("kickWatchdog",))
        return True

    def stopScript(self):
        self.calls.append(("stopScript",))

    def disconnect(self):
        pass


class FakeRTDEIO:
    def __init__(self, host):
        self.outputs = {}

    def setStandardDigitalOut(self, output_id, signal_level):
        self.outputs[output_id] = signal_level
        return True


@pytest.fixture
def fake_ur(monkeypatch):
    mods = {}
    for name, attr, cls in (("rtde_control", "RTDEControlInterface", FakeRTDEControl),
                            ("rtde_receive", "RTDEReceiveInterface", FakeRTDEReceive),
                            ("rtde_io", "RTDEIOInterface", FakeRTDEIO)):
        m = types.ModuleType(name)
        setattr(m, attr, cls)
        monkeypatch.setitem(sys.modules, name, m)
        mods[name] = m
    return mods


def test_ur_servol_translation(fake_ur):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    arm = URRtdeArm("10.0.0.2", control_hz=20, pos_scale=0.02, rot_scale=0.2, gripper="digital_out", gripper_output=3)
    arm.connect()
    c = arm._c
    assert c.calls[0] == ("setWatchdog", 10.0)  # half the command rate
    obs = arm.observe()
    np.testing.assert_allclose(obs.data["robot0_eef_pos"], [0.1, -0.4, 0.3], atol=1e-6)
    np.testing.assert_allclose(np.abs(obs.data["robot0_eef_quat"]), [1, 0, 0, 0], atol=1e-6)
    arm.send(np.array([1, 0, -0.5, 0, 0, 0.5, 1], np.float32))
    name, pose, speed, acc, dt, lookahead, gain = c.calls[1]
    assert name == "servoL" and dt == pytest.approx(0.05) and (lookahead, gain) == (0.1, 300.0)
    np.testing.assert_allclose(pose[:3], [0.12, -0.4, 0.29], atol=1e-9)
    # Rotation: 0.1 rad about world z applied to the measured orientation.
    expect = quat_to_axis_angle(quat_mul(axis_angle_to_quat([0, 0, 0.1]), axis_angle_to_quat(DOWN)))
    np.testing.assert_allclose(pose[3:], expect, atol=1e-9)
    assert c.calls[2] == ("kickWatchdog",)
    assert arm._io.outputs == {3: True}
    arm.send(np.array([0, 0, 0, 0, 0, 0, -1], np.float32))
    assert arm._io.outputs == {3: False}
    arm.stop()
    assert c.calls[-1] == ("servoStop",)
    arm.close()
    assert not arm.connected


def test_ur_speedl_translation(fake_ur):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    arm = URRtdeArm("10.0.0.2", control_hz=20, pos_scale=0.02, rot_scale=0.2, mode="speedL")
    arm.connect()
    arm.send(np.array([0.5, 0, 0, 0, 0, -1, 0], np.float32))
    name, xd, acc, dt = arm._c.calls[1]
    np.testing.assert_allclose(xd, [0.2, 0, 0, 0, 0, -4.0])  # 0.01 m and -0.2 rad per 0.05 s
    arm.stop()
    assert arm._c.calls[-1] == ("speedStop",)


def test_ur_rejects_bad_commands_and_settings(fake_ur):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    with pytest.raises(ArmError, match="servoL or speedL"):
        URRtdeArm("x", mode="moveL")
    arm = URRtdeArm("x")
    with pytest.raises(ArmError, match="not connected"):
        arm.send(np.zeros(7))
    arm.connect()
    with pytest.raises(ArmError, match="7 finite numbers"):
        arm.send(np.full(7, np.nan))


def test_ur_missing_package_is_clear(monkeypatch):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    monkeypatch.setitem(sys.modules, "rtde_control", None)
    with pytest.raises(ArmError, match=r"pip install 'robolearn\[ur\]'"):
        URRtdeArm("x").connect()


def test_factory_builds_shielded_ur(fake_ur):
    arm = make_arm("ur", host="10.1.1.1")
    assert isinstance(arm, SafetyShield) and arm.arm.host == "10.1.1.1" and arm.pos_scale == 0.02
    arm.connect()
    arm.observe()
    # A command that would leave the ur5e.yaml box (y <= -0.15) is clipped before servoL.
    arm.arm._r.pose = [0.1, -0.16, 0.3] + DOWN
    arm.observe()
    arm.send(np.array([0, 1, 0, 0, 0, 0, 0], np.float32))
    assert arm.arm._c.calls[-2][1][1] == pytest.approx(-0.15)
    assert arm.stats.clipped_workspace == 1
    arm.close()


# ---------------------------------------------------------------- franky stand-in
def fake_franky():
    f = types.ModuleType("franky")

    class Affine:
        def __init__(self, translation=(0, 0, 0), quaternion=(0, 0, 0, 1)):
            self.translation, self.quaternion = np.asarray(translation), np.asarray(quaternion)

    class ReferenceType:
        Absolute, Relative = "Absolute", "Relative"

    class CartesianMotion:
        def __init__(self, target, reference_type=ReferenceType.Absolute, relative_dynamics_factor=1.0):
            self.target, self.reference_type = target, reference_type

    class JointMotion:
        def __init__(self, target):
            self.target = target

    class CartesianPoseStopMotion:
        pass

    class Robot:
        def __init__(self, fci_ip):
            self.fci_ip, self.moves, self.relative_dynamics_factor = fci_ip, [], 1.0
            ee = Affine([0.4, 0.0, 0.4], axis_angle_to_quat(DOWN))
            self.current_cartesian_state = types.SimpleNamespace(pose=types.SimpleNamespace(end_effector_pose=ee))
            self.current_joint_state = types.SimpleNamespace(position=np.zeros(7))

        def recover_from_errors(self):
            return True

        def move(self, motion, asynchronous=False):
            self.moves.append((motion, asynchronous))

    class Gripper:
        def __init__(self, fci_ip):
            self.width, self.calls = 0.08, []

        def move(self, width, speed):
            self.calls.append(("move", width, speed))
            self.width = width
            return True

        def move_async(self, width, speed):
            self.calls.append(("move_async", width, speed))

    for obj in (Affine, ReferenceType, CartesianMotion, JointMotion, CartesianPoseStopMotion, Robot, Gripper):
        setattr(f, obj.__name__, obj)
    return f


def test_franka_translation(monkeypatch):
    monkeypatch.setitem(sys.modules, "franky", fake_franky())
    from robolearn.hal.drivers.franka import FrankaArm

    arm = FrankaArm("172.16.0.2", pos_scale=0.02, rot_scale=0.2, relative_dynamics_factor=0.1)
    arm.connect()
    robot = arm._robot
    assert robot.relative_dynamics_factor == 0.1
    obs = arm.observe()
    np.testing.assert_allclose(obs.data["robot0_gripper_qpos"], [0.04, -0.04])
    arm.send(np.array([0, 0.5, -1, 0, 0, 0, 1], np.float32))
    motion, asynchronous = robot.moves[-1]
    assert asynchronous and motion.reference_type == "Absolute"
    np.testing.assert_allclose(motion.target.translation, [0.4, 0.01, 0.38])
    np.testing.assert_allclose(np.abs(motion.target.quaternion), [1, 0, 0, 0], atol=1e-9)
    assert arm._gripper.calls[-1] == ("move_async", 0.0, 0.05)
    arm.send(np.array([0, 0, 0, 0, 0, 0, 1], np.float32))
    assert len(arm._gripper.calls) == 1  # gripper commanded only on a change
    arm.stop()
    assert type(robot.moves[-1][0]).__name__ == "CartesianPoseStopMotion"
    arm.home()
    assert robot.moves[-1][0].target == arm.home_q


def test_franka_missing_package_is_clear(monkeypatch):
    from robolearn.hal.drivers.franka import FrankaArm

    monkeypatch.setitem(sys.modules, "franky", None)
    with pytest.raises(ArmError, match=r"pip install 'robolearn\[franka\]'"):
        FrankaArm("x").connect()
