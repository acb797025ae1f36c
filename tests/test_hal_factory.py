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


def test_a_registered_backend_is_built_by_name_and_shielded(tmp_path):
    from robolearn.hal.factory import BACKENDS, Backend, register_backend

    y = tmp_path / "registered.yaml"
    y.write_text("arm: test_registered\nparams: {home_pos: [0, 0, 1]}\n"
                 "shield: {workspace_low: [-1, -1, 0], workspace_high: [1, 1, 2]}\n")

    built = []

    def build(choice):
        built.append(choice.params)
        return NoopArm(control_hz=choice.hz or 20.0, pos_scale=choice.pos_scale, rot_scale=choice.rot_scale,
                       name="registered", **choice.params)

    register_backend("test_registered", Backend(build, str(y)))
    try:
        arm = make_arm("test_registered", home_pos=(0.0, 0.1, 1.0))
        assert isinstance(arm, SafetyShield) and arm.spec.name == "registered"
        assert built == [{"home_pos": (0.0, 0.1, 1.0)}]
    finally:
        del BACKENDS["test_registered"]


def test_the_hal_factory_builds_no_robosuite_arm_without_a_task():
    with pytest.raises(ConfigError, match="robosuite_panda_osc.yaml.*'task'"):
        make_arm("robosuite")


def test_a_task_does_not_change_an_arm_that_has_no_task_scene():
    from robolearn.tasks.task_arm import make_task_arm

    arm = make_task_arm("noop", task="lift")  # no robosuite scene is built for the in-memory arm
    assert isinstance(arm, SafetyShield) and isinstance(arm.arm, NoopArm)


def test_a_task_without_an_arm_is_refused_for_a_simulated_backend():
    from robolearn.tasks.task_arm import make_task_arm

    with pytest.raises(ConfigError, match="graph_reach"):
        make_task_arm("pybullet", task="graph_reach")
