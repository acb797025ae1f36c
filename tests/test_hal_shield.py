"""SafetyShield: clipping, rejection, watchdog and e-stop, against the in-memory NoopArm."""
import time

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.hal.noop_arm import NoopArm
from robolearn.hal.shield import EStopError, SafetyShield, ShieldConfig, ShieldError


def make(watchdog_ms=0.0, **kw):
    arm = NoopArm(home_pos=(0.0, 0.0, 1.0))
    cfg = ShieldConfig(workspace_low=[-0.2, -0.2, 0.9], workspace_high=[0.2, 0.2, 1.2], watchdog_ms=watchdog_ms, **kw)
    shield = SafetyShield(arm, cfg, pos_scale=0.05, rot_scale=0.5)
    shield.connect()
    shield.observe()
    return arm, shield


def test_in_box_command_passes_unchanged():
    arm, sh = make()
    cmd = np.array([0.2, -0.1, 0.3, 0.1, 0.0, -0.1, 0.5], np.float32)
    applied = sh.send(cmd)
    np.testing.assert_allclose(applied, cmd, atol=1e-6)
    assert sh.stats.interventions == 0 and sh.stats.commands == 1
    sh.close()


def test_workspace_box_clips_target_inside_and_counts():
    arm, sh = make()
    for _ in range(20):  # push +x at full speed: 0.05 m/step, box edge at 0.2
        sh.observe()
        sh.send(np.array([1, 0, 0, 0, 0, 0, -1], np.float32))
    pos = sh.observe().data["robot0_eef_pos"]
    assert pos[0] == pytest.approx(0.2, abs=1e-6)
    assert sh.stats.clipped_workspace == 16  # steps 1-4 fit (0.05 .. 0.2), the rest are clipped
    sh.close()


def test_arm_outside_box_may_only_move_back_in():
    arm, sh = make()
    arm._pos = np.array([0.5, 0.0, 1.0])  # e.g. started outside
    sh.observe()
    out = sh.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
    assert out[0] == pytest.approx(0.0)  # no further out
    back = sh.send(np.array([-1, 0, 0, 0, 0, 0, 0], np.float32))
    assert back[0] == pytest.approx(-1.0)  # back in is allowed
    sh.close()


def test_step_limits_gripper_and_bounds():
    arm, sh = make(max_step_pos=0.01, max_step_rot=0.1, gripper_low=-1.0, gripper_high=0.5)
    applied = sh.send(np.array([0.6, 0.8, 0, 0, 0, 2.0, 1.0], np.float32))
    assert np.linalg.norm(applied[:3] * 0.05) == pytest.approx(0.01, rel=1e-5)
    np.testing.assert_allclose(applied[:3] / np.linalg.norm(applied[:3]), [0.6, 0.8, 0], atol=1e-5)  # direction kept
    assert np.linalg.norm(applied[3:6] * 0.5) == pytest.approx(0.1, rel=1e-5)
    assert applied[6] == pytest.approx(0.5)
    s = sh.stats
    assert (s.clipped_step_pos, s.clipped_step_rot, s.clipped_gripper, s.clipped_bounds) == (1, 1, 1, 1)
    sh.close()


def test_nan_rejected_holds_position_then_raises():
    arm, sh = make(max_rejects_in_row=3)
    sh.send(np.array([0, 0, 0, 0, 0, 0, 0.7], np.float32))
    before = sh.observe().data["robot0_eef_pos"].copy()
    bad = np.array([np.nan, 0, 0, 0, 0, 0, 0], np.float32)
    held = sh.send(bad)
    np.testing.assert_allclose(held[:6], 0.0)
    assert held[6] == pytest.approx(0.7)  # gripper kept, not dropped to 0
    sh.send(np.array([0, np.inf, 0, 0, 0, 0, 0], np.float32))
    np.testing.assert_allclose(sh.observe().data["robot0_eef_pos"], before)
    with pytest.raises(ShieldError, match="3 invalid commands in a row"):
        sh.send(bad)
    assert sh.stats.rejected_nonfinite == 3 and arm.stop_count >= 1
    sh.close()


def test_valid_command_resets_reject_streak_and_wrong_shape_counted():
    arm, sh = make(max_rejects_in_row=2)
    sh.send(np.full(7, np.nan))
    sh.send(np.zeros(7))
    sh.send(np.zeros(5))
    assert sh.stats.rejected_nonfinite == 1 and sh.stats.rejected_shape == 1
    sh.close()


def test_estop_latches_until_reset():
    arm, sh = make()
    sh.estop()
    assert arm.stop_count >= 1
    for _ in range(3):
        with pytest.raises(EStopError):
            sh.send(np.zeros(7, np.float32))
    with pytest.raises(EStopError):
        sh.home()
    assert sh.stats.refused_estop == 4 and arm.send_count == 3  # refused sends only hold (zero motion)
    np.testing.assert_allclose(arm.last_command[:6], 0.0)
    sh.reset_estop()
    out = sh.send(np.array([0.1, 0, 0, 0, 0, 0, 0], np.float32))
    assert out[0] == pytest.approx(0.1)
    sh.close()


def test_watchdog_stops_arm_when_source_stalls():
    arm, sh = make(watchdog_ms=60)
    sh.send(np.zeros(7, np.float32))
    stops = arm.stop_count
    time.sleep(0.4)  # the command source hangs completely
    assert sh.stats.watchdog_stops == 1  # once per stall, not every poll
    assert arm.stop_count == stops + 1
    sh.send(np.zeros(7, np.float32))
    time.sleep(0.25)
    assert sh.stats.watchdog_stops == 2
    sh.close()


def test_watchdog_quiet_while_commands_flow():
    arm, sh = make(watchdog_ms=100)
    t_end = time.monotonic() + 0.3
    while time.monotonic() < t_end:
        sh.send(np.zeros(7, np.float32))
        time.sleep(0.01)
    assert sh.stats.watchdog_stops == 0
    sh.close()


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="workspace_low"):
        ShieldConfig.from_mapping({"enabled": True}, "controllers/x.yaml:shield")
    with pytest.raises(ConfigError, match="max_step_poss"):
        ShieldConfig.from_mapping({"max_step_poss": 1}, "controllers/x.yaml:shield")
    with pytest.raises(ConfigError, match="workspace_low"):
        ShieldConfig.from_mapping({"workspace_low": [0, 0, 1], "workspace_high": [1, 1, 0.5]})
    cfg = ShieldConfig.from_mapping({"workspace_low": [0, 0, 0], "workspace_high": [1, 1, 1], "max_step_pos": 1})
    assert cfg.max_step_pos == 1.0


def test_disabled_shield_passes_through():
    arm = NoopArm()
    sh = SafetyShield(arm, ShieldConfig(enabled=False, watchdog_ms=0))
    sh.connect()
    out = sh.send(np.array([5, 0, 0, 0, 0, 0, 0], np.float32))
    assert out[0] == 5  # no clipping
    held = sh.send(np.array([np.nan, 0, 0, 0, 0, 0, 0], np.float32))
    assert np.all(held[:6] == 0) and sh.stats.rejected_nonfinite == 1  # NaN is never passed on
    sh.close()


def test_explicit_stop_disarms_watchdog_until_next_command():
    arm, sh = make(watchdog_ms=50)
    sh.send(np.zeros(7, np.float32))
    sh.stop()  # e.g. the loop ended cleanly
    time.sleep(0.2)
    assert sh.stats.watchdog_stops == 0
    sh.send(np.zeros(7, np.float32))
    time.sleep(0.2)
    assert sh.stats.watchdog_stops == 1
    sh.close()


class SlowStopArm(NoopArm):
    """An arm whose stop() takes a while and is not safe to call from two threads at once."""

    concurrent_stop_safe = False

    def __init__(self):
        super().__init__(home_pos=(0.0, 0.0, 1.0))
        self.inside = self.most_inside = 0

    def stop(self):
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.2)
        self.inside -= 1
        super().stop()


def test_stop_waits_for_the_watchdogs_stop_of_the_same_arm():
    arm = SlowStopArm()
    sh = SafetyShield(arm, ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 2], watchdog_ms=50))
    sh.connect()
    sh.send(np.zeros(7, np.float32))
    t_end = time.monotonic() + 2.0
    while arm.inside == 0 and time.monotonic() < t_end:  # the source went silent; the watchdog is stopping the arm
        time.sleep(0.001)
    assert arm.inside == 1 and sh.stats.watchdog_stops == 1
    sh.stop()  # e.g. the loop's clean-up after Ctrl-C, at that moment
    assert arm.most_inside == 1  # one stop() at a time
    sh.close()


class HangingArm(NoopArm):
    def __init__(self, safe):
        super().__init__(home_pos=(0.0, 0.0, 1.0))
        self.concurrent_stop_safe = safe
        self.hang = 0.0

    def send(self, command):
        time.sleep(self.hang)
        return super().send(command)


@pytest.mark.parametrize("safe", [True, False])
def test_watchdog_during_a_hung_send(safe):
    arm = HangingArm(safe)
    sh = SafetyShield(arm, ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 2], watchdog_ms=50))
    sh.connect()
    sh.send(np.zeros(7, np.float32))
    arm.hang = 0.4  # the driver call hangs while holding the shield's lock
    sh.send(np.zeros(7, np.float32))
    # A concurrent-safe arm is stopped while the call hangs; any other is left to its own timeouts.
    assert (sh.stats.watchdog_stops >= 1) == safe
    sh.close()


def test_burst_of_sends_without_observe_stays_in_the_box():
    arm, sh = make()
    for _ in range(30):  # 30 x 5 cm upwards from z 1.0, box top 1.2, never observing
        sh.send(np.array([0, 0, 1, 0, 0, 0, -1], np.float32))
    assert arm.eef_position()[2] == pytest.approx(1.2, abs=1e-9)
    assert sh.stats.clipped_workspace in (26, 27)  # steps 1-3 fit, the 4th lands on the top (up to rounding)
    sh.close()


def test_sends_right_after_home_are_clipped_against_where_the_arm_is():
    arm, sh = make()
    for _ in range(2):
        sh.home()
        for _ in range(10):
            sh.send(np.array([1, 0, 1, 0, 0, 0, -1], np.float32))
        pos = arm.eef_position()
        assert pos[0] <= 0.2 + 1e-9 and pos[2] <= 1.2 + 1e-9
    sh.close()


class ObserveOnlyArm:
    """An Arm with no ``eef_position()``: the shield has to observe before every command."""

    def __init__(self):
        self.inner = NoopArm(home_pos=(0.0, 0.0, 1.0))
        self.spec = self.inner.spec
        self.observes = 0
        self.nan_eef = False

    connected = property(lambda self: self.inner.connected)

    def connect(self):
        self.inner.connect()

    def observe(self):
        self.observes += 1
        obs = self.inner.observe()
        if self.nan_eef:
            obs.data["robot0_eef_pos"] = np.full(3, np.nan, np.float32)
        return obs

    def send(self, command):
        return self.inner.send(command)

    def home(self):
        return self.inner.home()

    def stop(self):
        self.inner.stop()

    def close(self):
        self.inner.close()


def test_arm_without_eef_position_is_observed_before_every_command():
    arm = ObserveOnlyArm()
    sh = SafetyShield(arm, ShieldConfig(workspace_low=[-1, -1, 0.9], workspace_high=[1, 1, 1.2], watchdog_ms=0))
    sh.connect()
    for _ in range(10):
        sh.send(np.array([0, 0, 1, 0, 0, 0, 0], np.float32))
    assert arm.observes == 10
    assert arm.inner.eef_position()[2] == pytest.approx(1.2, abs=1e-9)
    sh.close()


def test_unmeasurable_position_stops_the_arm_and_sends_nothing():
    arm = ObserveOnlyArm()
    sh = SafetyShield(arm, ShieldConfig(workspace_low=[-1, -1, 0.9], workspace_high=[1, 1, 1.2], watchdog_ms=0))
    sh.connect()
    arm.nan_eef = True
    with pytest.raises(ShieldError, match="not 3 finite numbers"):
        sh.send(np.array([0, 0, 1, 0, 0, 0, 0], np.float32))
    assert arm.inner.send_count == 0 and arm.inner.stop_count == 1
    sh.close()


def test_shield_refuses_scales_the_arm_does_not_apply():
    cfg = ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 2])
    with pytest.raises(ConfigError, match="pos_scale"):
        SafetyShield(NoopArm(pos_scale=0.1), cfg, pos_scale=0.05)
    with pytest.raises(ConfigError, match="rot_scale"):
        SafetyShield(NoopArm(rot_scale=1.0), cfg, rot_scale=0.5)


@pytest.mark.parametrize("field, value", [
    ("watchdog_ms", float("inf")), ("watchdog_ms", float("nan")), ("watchdog_ms", True),
    ("max_rejects_in_row", True), ("max_rejects_in_row", 2.5),
    ("max_step_pos", float("inf")), ("max_step_rot", float("nan")),
])
def test_always_on_limits_are_checked_even_when_disabled(field, value):
    with pytest.raises(ConfigError, match=field):
        ShieldConfig(enabled=False, **{field: value}).validate("controllers/x.yaml: shield")


def test_watchdog_zero_still_disables_it_loudly(caplog):
    sh = SafetyShield(NoopArm(), ShieldConfig(enabled=False, watchdog_ms=0))
    sh.connect()
    assert "watchdog disabled" in caplog.text
    sh.close()


@pytest.mark.parametrize("hz", [float("inf"), float("nan"), True, 0, -20])
def test_control_loop_refuses_a_rate_that_is_not_one(hz):
    from robolearn.hal.loop import ControlLoop

    with pytest.raises(ConfigError, match="hz"):
        ControlLoop(NoopArm(), object(), hz)


@pytest.mark.parametrize("old, new, field", [
    ("pos_scale: 0.05", "pos_scale: .inf", "pos_scale"),
    ("pos_scale: 0.05", "pos_scale: 0.01", "pos_scale"),  # OSC_POSE moves 0.05 per unit: the box would not hold
    ("rot_scale: 0.5", "rot_scale: .nan", "rot_scale"),
    ("control_freq: 20 ", "control_freq: .inf ", "control_freq"),
])
def test_robosuite_controller_scales_must_cover_what_osc_pose_moves(tmp_path, old, new, field):
    from robolearn.hal.robosuite_arm import load_controller_config
    from robolearn.paths import CONTROLLERS_DIR

    text = (CONTROLLERS_DIR / "robosuite_panda_osc.yaml").read_text()
    assert old in text
    bad = tmp_path / "osc.yaml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=field) as err:
        load_controller_config(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("arm_name, params, field", [
    ("ur", "{host: 10.0.0.1, speed: .nan}", "params.speed"),
    ("ur", "{host: 10.0.0.1, watchdog_min_hz: .nan}", "params.watchdog_min_hz"),
    ("ur", "{host: 10.0.0.1, watchdog_min_hz: 0}", "params.watchdog_min_hz"),
    ("franka", "{host: 10.0.0.2, gripper_speed: .inf}", "params.gripper_speed"),
    ("pybullet", "{finger_force: 60}", "rot_scale"),
])
def test_driver_settings_that_would_switch_safety_off_are_refused(tmp_path, arm_name, params, field):
    from robolearn.hal.factory import make_arm

    rot = ".inf" if field == "rot_scale" else "0.2"
    bad = tmp_path / f"{arm_name}.yaml"
    bad.write_text(f"arm: {arm_name}\npos_scale: 0.02\nrot_scale: {rot}\nparams: {params}\n"
                   "shield: {workspace_low: [0, 0, 0], workspace_high: [1, 1, 1]}\n")
    with pytest.raises(ConfigError) as err:
        make_arm(None, bad)
    assert f"{bad}: field '{field}'" in str(err.value) and "\n" not in str(err.value)
