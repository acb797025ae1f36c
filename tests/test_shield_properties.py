"""Property-based tests of the SafetyShield: whatever a command source does, in any order
(bursts of sends without observing, sends right after home, NaN/inf/huge commands, stops,
e-stops), the in-memory arm's true end-effector position stays in the workspace box; and
controller scales or shield limits that would not limit are refused with a ConfigError."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robolearn.config import ConfigError
from robolearn.hal.factory import make_arm
from robolearn.hal.noop_arm import NoopArm
from robolearn.hal.shield import EStopError, SafetyShield, ShieldConfig, ShieldError

#: float32 commands carry ~6e-8 relative rounding of a step of at most a few cm.
TOL = 1e-6

any_float = st.floats(allow_nan=True, allow_infinity=True, width=32)
huge_or_small = st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 3.4e38, -3.4e38, 1.0, -1.0, 0.5, -0.5])
command = st.lists(st.one_of(any_float, huge_or_small, st.floats(-1.5, 1.5)), min_size=7, max_size=7)
operation = st.one_of(
    st.tuples(st.just("send"), command),
    st.tuples(st.just("burst"), command, st.integers(2, 40)),
    st.tuples(st.just("observe")),
    st.tuples(st.just("home")),
    st.tuples(st.just("stop")),
    st.tuples(st.just("estop")),
    st.tuples(st.just("reset_estop")),
)


@st.composite
def boxed_arms(draw, start_inside: bool = True):
    """A random box, a home position inside it (or outside), the controller's scale and step limit."""
    low = np.array([draw(st.floats(-1.0, 0.5)) for _ in range(3)])
    size = np.array([draw(st.floats(0.01, 1.0)) for _ in range(3)])
    high = low + size
    frac = np.array([draw(st.floats(0.0, 1.0) if start_inside else st.floats(-2.0, 3.0)) for _ in range(3)])
    home = low + frac * size
    pos_scale = draw(st.sampled_from([1e-4, 0.015, 0.05, 0.5, 3.0]))
    max_step = draw(st.sampled_from([0.001, 0.02, 0.05, 1.0, 10.0]))
    return low, high, home, pos_scale, max_step


def shielded(low, high, home, pos_scale, max_step):
    arm = NoopArm(home_pos=tuple(home), pos_scale=pos_scale)
    cfg = ShieldConfig(workspace_low=low.tolist(), workspace_high=high.tolist(), max_step_pos=max_step, watchdog_ms=0.0)
    shield = SafetyShield(arm, cfg, pos_scale=pos_scale, rot_scale=0.5)
    arm.connect()  # the inner arm only: no watchdog thread per example
    return arm, shield


def apply(shield: SafetyShield, op: tuple, after_each_send) -> None:
    kind = op[0]
    try:
        if kind == "send":
            shield.send(np.asarray(op[1], dtype=np.float32))
            after_each_send()
        elif kind == "burst":
            for _ in range(op[2]):
                shield.send(np.asarray(op[1], dtype=np.float32))
                after_each_send()
        elif kind == "observe":
            shield.observe()
        elif kind == "home":
            shield.home()
        elif kind == "stop":
            shield.stop()
        elif kind == "estop":
            shield.estop()
        elif kind == "reset_estop":
            shield.reset_estop()
    except (ShieldError, EStopError):
        pass  # refusing is allowed; moving out of the box is not


def excursion(pos: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """How far outside the box the position is on each axis (0 inside)."""
    return np.maximum(0.0, np.maximum(low - pos, pos - high))


@settings(max_examples=150, deadline=None)
@given(boxed_arms(), st.lists(operation, min_size=1, max_size=25))
def test_eef_never_leaves_the_box_whatever_the_order(setup, ops):
    low, high, home, pos_scale, max_step = setup
    arm, shield = shielded(low, high, home, pos_scale, max_step)

    def inside():
        pos = arm.eef_position()
        assert np.all(np.isfinite(pos)), pos
        assert np.all(pos >= low - TOL) and np.all(pos <= high + TOL), (pos, low, high)
        applied = arm.last_command  # what reached the arm: finite and inside the action bounds
        assert applied is None or (np.all(np.isfinite(applied)) and np.all(np.abs(applied) <= 1.0))

    for op in ops:
        apply(shield, op, inside)
        inside()


@settings(max_examples=100, deadline=None)
@given(boxed_arms(start_inside=False), st.lists(operation, min_size=1, max_size=20))
def test_arm_outside_the_box_never_moves_further_out(setup, ops):
    low, high, home, pos_scale, max_step = setup
    arm, shield = shielded(low, high, home, pos_scale, max_step)
    before = excursion(arm.eef_position(), low, high)

    def no_further():
        nonlocal before
        now = excursion(arm.eef_position(), low, high)
        assert np.all(now <= before + TOL), (now, before)
        before = now

    for op in ops:
        if op[0] == "home":
            continue  # home is the arm's own fixed pose, outside this box by construction here
        apply(shield, op, no_further)
        no_further()


# ----------------------------------------------------------------------------- refused settings

NOT_A_LIMIT = [math.inf, -math.inf, math.nan, True, False, -2.0, "1"]
NOT_POSITIVE = [0, 0.0]
NOOP_SHIELD = {"workspace_low": [-0.4, -0.4, 0.8], "workspace_high": [0.4, 0.4, 1.3], "max_step_pos": 0.05,
               "max_step_rot": 0.5, "gripper_low": -1.0, "gripper_high": 1.0, "max_rejects_in_row": 3, "watchdog_ms": 500}
#: key -> values that must be refused, beyond NOT_A_LIMIT.
SHIELD_KEYS = {
    "max_step_pos": NOT_POSITIVE,
    "max_step_rot": NOT_POSITIVE,
    "watchdog_ms": [-1],
    "max_rejects_in_row": [0, 2.5, 3.0],
    "gripper_low": [-1.5],
    "gripper_high": [1.5],
}


def write_controller(folder: Path, top: dict, shield: dict) -> Path:
    path = folder / "bad_noop.yaml"
    path.write_text(yaml.safe_dump({"arm": "noop", "control_hz": 20, "pos_scale": 0.05, "rot_scale": 0.5,
                                    "params": {"home_pos": [0.0, 0.0, 1.0]}, "shield": shield, **top}))
    return path


def assert_refused(path: Path, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_arm(None, path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and field in text, text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["pos_scale", "rot_scale"]), st.sampled_from(NOT_A_LIMIT + NOT_POSITIVE))
def test_controller_scales_that_are_not_numbers_are_refused(key, value):
    with tempfile.TemporaryDirectory() as d:
        assert_refused(write_controller(Path(d), {key: value}, NOOP_SHIELD), key)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(SHIELD_KEYS)), st.data(), st.booleans())
def test_shield_limits_that_would_not_limit_are_refused(key, data, enabled):
    value = data.draw(st.sampled_from(NOT_A_LIMIT + SHIELD_KEYS[key]))
    with tempfile.TemporaryDirectory() as d:
        assert_refused(write_controller(Path(d), {}, {**NOOP_SHIELD, "enabled": enabled, key: value}), key)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["workspace_low", "workspace_high"]), st.integers(0, 2),
       st.sampled_from([math.inf, -math.inf, math.nan, True, "0.1", None]))
def test_workspace_corners_must_be_finite_numbers(key, axis, value):
    box = {k: list(v) if isinstance(v, list) else v for k, v in NOOP_SHIELD.items()}
    box[key][axis] = value
    with tempfile.TemporaryDirectory() as d:
        assert_refused(write_controller(Path(d), {}, box), key)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["pos_scale", "rot_scale"]), st.sampled_from(NOT_A_LIMIT + NOT_POSITIVE))
def test_shield_constructed_in_code_refuses_the_same_scales(key, value):
    cfg = ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 2])
    scales = {"pos_scale": 0.05, "rot_scale": 0.5, key: value}
    with pytest.raises(ConfigError, match=key):
        SafetyShield(NoopArm(), cfg, **scales)
