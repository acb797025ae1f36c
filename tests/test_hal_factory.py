"""make_arm: backends by name, the shield from the controller YAML, clear config errors."""
import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.hal.factory import make_arm
from robolearn.hal.noop_arm import NoopArm
from robolearn.hal.shield import SafetyShield


def test_noop_from_default_controller_is_shielded():
    arm = make_arm("noop")
    assert isinstance(arm, SafetyShield) and isinstance(arm.arm, NoopArm)
    assert arm.config.workspace_high == [0.4, 0.4, 1.3] and arm.pos_scale == 0.05
    raw = make_arm("noop", shield=False)
    assert isinstance(raw, NoopArm)


def test_backend_from_yaml_and_param_override(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("arm: noop\ncontrol_hz: 50\npos_scale: 0.01\nparams: {home_pos: [0, 0, 1]}\n"
                 "shield: {workspace_low: [-1, -1, 0], workspace_high: [1, 1, 2]}\n")
    arm = make_arm(None, y, home_pos=(0.1, 0.0, 1.0))
    assert arm.spec.control_hz == 50 and arm.pos_scale == 0.01
    arm.connect()
    np.testing.assert_allclose(arm.observe().data["robot0_eef_pos"], [0.1, 0, 1])
    arm.close()


@pytest.mark.parametrize("text,field", [
    ("arm: noop\n", "shield"),
    ("arm: noop\nshield: {}\nspeed: 3\n", "speed"),
    ("arm: kuka\nshield: {}\n", "arm"),
    ("arm: noop\npos_scale: -1\nshield: {workspace_low: [0, 0, 0], workspace_high: [1, 1, 1]}\n", "pos_scale"),
    ("arm: noop\nparams: {bogus: 1}\nshield: {workspace_low: [0, 0, 0], workspace_high: [1, 1, 1]}\n", "params"),
])
def test_config_errors_name_file_and_field(tmp_path, text, field):
    y = tmp_path / "bad.yaml"
    y.write_text(text)
    with pytest.raises(ConfigError) as info:
        make_arm(None, y)
    assert str(y) in str(info.value) and f"'{field}" in str(info.value)


def test_arm_name_must_match_file(tmp_path):
    with pytest.raises(ConfigError, match="configures arm 'noop'"):
        make_arm("pybullet", "controllers/noop.yaml")
    with pytest.raises(ConfigError, match="unknown arm backend"):
        make_arm("kuka")
