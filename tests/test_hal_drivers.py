"""Vendor adapters (ur_rtde, franky) against stand-in modules with the vendors' class and
method names and signatures. No UR or Franka arm exists here: these tests check the
numbers and motions the adapters hand to the vendor APIs, and the clear errors."""
import sys
import time
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
    # ur5e.yaml streams through the follower: its last setpoint is the clipped target, and no
    # servoL on the way went past it.
    wait_until(arm.arm.follower.settled)
    servo_y = wait_for_setpoint(arm.arm._c, lambda pose: pose[1] == pytest.approx(-0.15))
    assert max(servo_y) <= -0.15 + 1e-12
    assert arm.stats.clipped_workspace == 1
    arm.close()


def wait_until(condition, within_s: float = 5.0) -> None:
    """Poll ``condition`` (the follower streams from its own thread); fail after ``within_s``."""
    end = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def servo_poses(control) -> list:
    return [c[1] for c in list(control.calls) if c[0] == "servoL"]


def wait_for_setpoint(control, reached) -> list[float]:
    """The y of every servoL pose sent, once one of them satisfies ``reached``."""
    wait_until(lambda: any(reached(p) for p in servo_poses(control)))
    return [p[1] for p in servo_poses(control)]


# ---------------------------------------------------------------- ur_rtde follower
class IntegratingRTDEControl(FakeRTDEControl):
    """servoL moves the stand-in arm: each call the TCP covers the fraction ``time /
    lookahead_time`` of the way to the servo target (a first-order lag, as UR's servoL
    smooths with its lookahead). Stands in for the robot, so commanded and achieved differ."""

    receive = None

    def servoL(self, pose, speed, acceleration, time, lookahead_time, gain):
        super().servoL(pose, speed, acceleration, time, lookahead_time, gain)
        r = IntegratingRTDEControl.receive
        if r is not None:
            k = min(time / lookahead_time, 1.0)
            now = np.asarray(r.pose, np.float64)
            r.pose = list(now + k * (np.asarray(pose) - now))
        return True


class TrackedRTDEReceive(FakeRTDEReceive):
    def __init__(self, host):
        super().__init__(host)
        IntegratingRTDEControl.receive = self


@pytest.fixture
def integrating_ur(fake_ur):
    fake_ur["rtde_control"].RTDEControlInterface = IntegratingRTDEControl
    fake_ur["rtde_receive"].RTDEReceiveInterface = TrackedRTDEReceive
    yield fake_ur
    IntegratingRTDEControl.receive = None


def ur_follower_arm(**follower):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    cfg = {"rate_hz": 125, "max_target_age_ms": 150, **follower}
    return URRtdeArm("10.0.0.2", control_hz=20, pos_scale=0.02, rot_scale=0.2, lookahead_time=0.03, follower=cfg)


def on_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fraction along a->b, distance off the line) of each point."""
    d = b - a
    alpha = (points - a) @ d / float(d @ d)
    off = np.linalg.norm(points - (a + alpha[:, None] * d), axis=1)
    return alpha, off


def test_ur_follower_streams_servol_between_targets_and_never_past_them(integrating_ur):
    arm = ur_follower_arm()
    arm.connect()
    try:
        c = arm._c
        start = np.array(arm._r.pose[:3])
        arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))  # +2 cm in x
        target = start + [0.02, 0, 0]
        wait_until(lambda: any(np.allclose(p[:3], target, atol=1e-12) for p in servo_poses(c)))
        poses = np.array(servo_poses(c))
        assert len(poses) > 2  # a path of setpoints, not one jump
        alpha, off = on_segment(poses[:, :3], start, target)
        assert np.all(off < 1e-9) and alpha.min() >= -1e-9 and alpha.max() <= 1 + 1e-9
        assert np.all(np.diff(alpha) >= -1e-12)  # monotone along the segment
        servo = [call for call in c.calls if call[0] == "servoL"]
        assert all(call[4] == pytest.approx(1 / 125) for call in servo)  # time = one servo period
        assert {(call[5], call[6]) for call in servo} == {(0.03, 300.0)}
        assert ("kickWatchdog",) in c.calls
        # The integrating stand-in arm follows: commanded and achieved paths are recorded.
        wait_until(lambda: np.allclose(arm._r.pose[:3], target, atol=1e-5))
        summary = arm.follower.summary()
        assert summary["ticks"] > 2 and summary["pos_err_max_mm"] > 0 and np.isfinite(summary["pos_err_rms_mm"])
        path = arm.follower.record.arrays()
        assert path["commanded"].shape == path["achieved"].shape and np.all(np.diff(path["t"]) > 0)
    finally:
        arm.close()


def test_ur_follower_inside_the_shield_keeps_every_setpoint_in_the_box(integrating_ur, tmp_path):
    import yaml

    from robolearn.paths import CONTROLLERS_DIR

    cfg = yaml.safe_load((CONTROLLERS_DIR / "ur5e.yaml").read_text())
    cfg["params"]["follower"]["rate_hz"] = 125
    path = tmp_path / "ur.yaml"
    path.write_text(yaml.safe_dump(cfg))
    arm = make_arm("ur", path, host="10.0.0.3")
    arm.connect()
    try:
        arm.arm._r.pose = [0.1, -0.155, 0.3] + DOWN
        rng = np.random.default_rng(0)
        for _ in range(6):
            arm.send(np.concatenate([rng.uniform(-1, 1, 3), np.zeros(3), [0]]).astype(np.float32))
            arm.send(np.array([0, 1, 0, 0, 0, 0, 0], np.float32))  # pushes at the box's y = -0.15 face
        wait_until(arm.arm.follower.settled)
        poses = np.array(servo_poses(arm.arm._c))
        low, high = np.array(cfg["shield"]["workspace_low"]), np.array(cfg["shield"]["workspace_high"])
        assert np.all(poses[:, :3] >= low - 1e-12) and np.all(poses[:, :3] <= high + 1e-12)
        assert arm.stats.clipped_workspace >= 1
    finally:
        arm.close()


class DriftingRTDEReceive(FakeRTDEReceive):
    """A TCP still travelling in +y, as a real arm is between the shield's read and the
    adapter's: every read finds it 0.6 mm further on. ``reads``: the y of every read."""

    def __init__(self, host):
        super().__init__(host)
        self.reads: list[float] = []

    def getActualTCPPose(self):
        pose = list(self.pose)
        self.reads.append(pose[1])
        self.pose[1] += 0.0006
        return pose


def drifting_ur(fake_ur, mode="servoL"):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    fake_ur["rtde_receive"].RTDEReceiveInterface = DriftingRTDEReceive
    raw = URRtdeArm("10.0.0.2", control_hz=20, pos_scale=0.02, rot_scale=0.2, mode=mode)
    raw.connect()
    raw._r.pose[1] = -0.17
    return raw


def box_shield(arm, high_y: float):
    from robolearn.hal.shield import ShieldConfig

    return SafetyShield(arm, ShieldConfig(workspace_low=[-0.6, -0.6, 0.05], workspace_high=[0.6, high_y, 0.6],
                                          max_step_pos=0.02, watchdog_ms=0), pos_scale=0.02, rot_scale=0.2)


@pytest.mark.parametrize("mode", ["servoL", "speedL"])
def test_ur_moving_between_the_shields_read_and_its_own_stays_in_the_box(fake_ur, mode):
    raw = drifting_ur(fake_ur, mode)
    arm = box_shield(raw, high_y=-0.15)
    try:
        for _ in range(5):  # pushes at the box's y = -0.15 face while the arm keeps moving
            arm.send(np.array([0, 1, 0, 0, 0, 0, 0], np.float32))
            call = raw._c.calls[-2]  # the motion, then the watchdog kick
            if mode == "servoL":
                assert call[0] == "servoL" and call[1][1] <= -0.15
            else:  # where the velocity ends the period, from the TCP read just before it
                assert call[0] == "speedL" and raw._r.reads[-1] + call[1][1] * raw.dt <= -0.15 + 1e-12
        assert arm.stats.clipped_workspace >= 1
    finally:
        arm.close()


def test_a_shield_over_a_shield_keeps_the_outer_box_and_a_caller_cannot_widen_the_inner(fake_ur):
    from robolearn.hal.shield import ShieldError

    raw = drifting_ur(fake_ur)
    raw._r.pose[1] = -0.21
    inner = box_shield(raw, high_y=-0.15)
    outer = box_shield(inner, high_y=-0.2)
    push = np.array([0, 1, 0, 0, 0, 0, 0], np.float32)
    try:
        for _ in range(4):
            outer.send(push)
        ys = [p[1] for p in servo_poses(raw._c)]
        assert max(ys) == -0.2 and outer.stats.clipped_workspace >= 1
        raw._r.pose[1] = -0.16
        for _ in range(3):  # a box handed down is intersected with the inner shield's own
            inner.send_within(push, [-10, -10, -10], [10, 10, 10])
        assert max(p[1] for p in servo_poses(raw._c)) == -0.15
        n = len(servo_poses(raw._c))
        with pytest.raises(ShieldError, match="send_within"):
            inner.send_within(push, [0, 0, float("nan")], [1, 1, 1])
        assert len(servo_poses(raw._c)) == n and raw._c.calls[-1] == ("servoStop",)
    finally:
        outer.close()


def test_franka_moving_between_the_shields_read_and_its_own_stays_in_the_box(monkeypatch):
    f = fake_franky()
    monkeypatch.setitem(sys.modules, "franky", f)
    from robolearn.hal.drivers.franka import FrankaArm

    raw = FrankaArm("172.16.0.2", pos_scale=0.02, rot_scale=0.2)
    raw.connect()
    ee = raw._robot.current_cartesian_state.pose.end_effector_pose
    ee.translation = np.array([0.4, -0.17, 0.4])

    class Drifting:  # every read finds the flange 0.6 mm further on in +y
        @property
        def pose(self):
            now = f.Affine(ee.translation.copy(), ee.quaternion.copy())
            ee.translation[1] += 0.0006
            return types.SimpleNamespace(end_effector_pose=now)

    raw._robot.current_cartesian_state = Drifting()
    arm = box_shield(raw, high_y=-0.15)
    try:
        for _ in range(5):
            arm.send(np.array([0, 1, 0, 0, 0, 0, 0], np.float32))
            assert raw._robot.moves[-1][0].target.translation[1] <= -0.15
        assert arm.stats.clipped_workspace >= 1
    finally:
        arm.close()


def shielded_follower_arm(watchdog_ms: float):
    from robolearn.hal.shield import ShieldConfig

    raw = ur_follower_arm()
    arm = SafetyShield(raw, ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 1], watchdog_ms=watchdog_ms),
                       pos_scale=0.02, rot_scale=0.2)
    arm.connect()
    return raw, arm


def test_ur_follower_stop_and_estop_end_streaming(integrating_ur):
    from robolearn.hal.shield import EStopError

    raw, arm = shielded_follower_arm(watchdog_ms=0)
    try:
        arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
        wait_until(lambda: len(servo_poses(raw._c)) >= 2)
        arm.stop()
        assert raw._c.calls[-1] == ("servoStop",) and not raw.follower.active
        n = len(raw._c.calls)
        time.sleep(0.05)  # several servo periods: nothing more is streamed after the stop
        assert len(raw._c.calls) == n
        arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))  # a new target streams again
        wait_until(lambda: len(raw._c.calls) > n + 2)
        arm.estop()
        assert ("servoStop",) in raw._c.calls[n:] and not raw.follower.active
        n = len(raw._c.calls)
        with pytest.raises(EStopError):
            arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
        time.sleep(0.05)
        assert not [call for call in raw._c.calls[n:] if call[0] == "servoL"]
    finally:
        arm.close()


def test_ur_follower_holds_when_the_shield_watchdog_stops_a_silent_policy(integrating_ur):
    raw, arm = shielded_follower_arm(watchdog_ms=100)
    try:
        arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
        wait_until(lambda: arm.stats.watchdog_stops == 1)  # the policy went silent
        assert not raw.follower.active and ("servoStop",) in raw._c.calls
    finally:
        arm.close()


def test_ur_follower_refuses_failing_servol_at_the_next_send(integrating_ur):
    arm = ur_follower_arm()
    arm.connect()
    try:
        arm._c.servoL = lambda *args: False  # protective stop: the controller refuses servoL
        arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
        wait_until(lambda: not arm.follower.active)
        with pytest.raises(ArmError, match="follower stopped streaming.*rejected servoL"):
            arm.send(np.zeros(7, np.float32))
    finally:
        arm.close()


@pytest.mark.parametrize("follower, field", [
    ("{rate_hz: 1000}", "params.follower.rate_hz"),
    ("{rate_hz: 10}", "params.follower.rate_hz"),
    ("{rate_hz: true}", "params.follower.rate_hz"),
    ("{rate_hz: .nan}", "params.follower.rate_hz"),
    ("{max_target_age_ms: 20}", "params.follower.max_target_age_ms"),
    ("{max_target_age_ms: -5}", "params.follower.max_target_age_ms"),
    ("{interpolation_ms: 0}", "params.follower.interpolation_ms"),
    ("{rate_hz: 125, lag: 3}", "params.follower.lag"),
    ("[125]", "params.follower"),
])
def test_bad_follower_settings_name_the_file_and_field(tmp_path, follower, field):
    from robolearn.config import ConfigError

    bad = tmp_path / "ur.yaml"
    bad.write_text(f"arm: ur\ncontrol_hz: 20\npos_scale: 0.02\nrot_scale: 0.2\nparams: {{host: 10.0.0.1, follower: {follower}}}\n"
                   "shield: {workspace_low: [0, 0, 0], workspace_high: [1, 1, 1]}\n")
    with pytest.raises(ConfigError) as err:
        make_arm(None, bad)
    assert f"{bad}: field '{field}'" in str(err.value) and "\n" not in str(err.value)


def test_follower_needs_servol(fake_ur):
    from robolearn.hal.drivers.ur_rtde import URRtdeArm

    with pytest.raises(ArmError, match="needs mode: servoL"):
        URRtdeArm("x", control_hz=20, mode="speedL", follower={"rate_hz": 125})


# ---------------------------------------------------------------- the follower's clock, tick by tick
class Recorder:
    def __init__(self, pose):
        self.pose, self.sent = pose, []

    def sink(self, p, q):
        self.sent.append((p.copy(), q.copy()))

    def measure(self):
        return self.pose


class SteppedClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def stepped_follower(**cfg):
    """A follower on a clock the test steps, ticked by the test (no thread)."""
    from robolearn.hal.interpolation import FollowerConfig, TargetFollower

    rec, clock = Recorder((np.zeros(3), np.array([0, 0, 0, 1.0]))), SteppedClock()
    config = FollowerConfig(**{"rate_hz": 100, "max_target_age_ms": 150, **cfg}).validate("test", 20, 1000)
    follower = TargetFollower(rec.sink, rec.measure, config, control_hz=20, clock=clock)

    def tick_at(dt):
        clock.t = 100.0 + dt
        follower._tick(clock.t)

    return follower, rec, clock, tick_at


def test_follower_interpolates_over_one_period_then_holds_the_target():
    from robolearn.hal.interpolation import rotation_between

    f, rec, _, tick_at = stepped_follower()
    q1 = axis_angle_to_quat([0, 0, 0.2])
    f.set_target([0.01, 0, 0], q1)
    for dt in (0.0, 0.025, 0.05, 0.1):
        tick_at(dt)
    xs = [p[0] for p, _ in rec.sent]
    np.testing.assert_allclose(xs, [0.0, 0.005, 0.01, 0.01], atol=1e-12)  # 50 ms = one period at 20 Hz
    assert rotation_between(np.array([0, 0, 0, 1.0]), rec.sent[1][1]) == pytest.approx(0.1)
    np.testing.assert_array_equal(rec.sent[-1][1], q1 / np.linalg.norm(q1))  # ends exactly on the target
    assert f.stats.ticks == 4 and f.record.arrays()["commanded"].shape == (4, 7)


def test_follower_drops_a_stale_target_and_holds_where_it_is():
    f, rec, _, tick_at = stepped_follower(interpolation_ms=150, max_target_age_ms=100)
    f.set_target([0.03, 0, 0], [0, 0, 0, 1.0])
    tick_at(0.075)  # half way
    tick_at(0.2)  # a late tick: the target expired at 100 ms, two thirds of the way
    tick_at(0.3)
    xs = [p[0] for p, _ in rec.sent]
    np.testing.assert_allclose(xs, [0.015, 0.02, 0.02], atol=1e-12)  # held, never finished nor passed
    assert f.stats.stale_drops == 1
    f.set_target([0.0, 0, 0], [0, 0, 0, 1.0])  # a fresh target moves again, from the held setpoint
    assert f._segment.start[0][0] == pytest.approx(0.02)


def test_follower_next_target_starts_from_the_setpoint_not_the_measurement():
    f, rec, clock, tick_at = stepped_follower()
    f.set_target([0.01, 0, 0], [0, 0, 0, 1.0])
    tick_at(0.025)
    rec.pose = (np.array([0.5, 0.5, 0.5]), np.array([0, 0, 0, 1.0]))  # a lagging or noisy measurement
    f.set_target([0.02, 0, 0], [0, 0, 0, 1.0])
    np.testing.assert_allclose(f._segment.start[0], [0.005, 0, 0])  # where the path was
    f.halt()
    assert f.setpoint() is None
    n = len(rec.sent)
    tick_at(0.05)
    assert len(rec.sent) == n  # halted: nothing is sent
    f.set_target([0.03, 0, 0], [0, 0, 0, 1.0])  # after a halt: from the measured pose
    np.testing.assert_array_equal(f._segment.start[0], [0.5, 0.5, 0.5])


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
