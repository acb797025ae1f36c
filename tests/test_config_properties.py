"""Property-based tests of the config loader on the real config classes.

``from_dict`` is the one door every launch, algorithm and task setting comes through, so its
promises are checked over generated input rather than a handful of examples: any JSON-ish value
gives either a config or a ConfigError (never another exception), and a number that breaks what a
field declares (a bool, NaN, infinity, a negative or zero count) is always refused, naming the
source and the dotted field.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robolearn.algos.bc import BCConfig
from robolearn.algos.bc_rnn import BCRNNConfig
from robolearn.algos.bcq import BCQConfig, BCQCriticConfig
from robolearn.algos.hbc import HBCConfig
from robolearn.algos.iql import IQLConfig
from robolearn.algos.iris import IRISConfig
from robolearn.config import CHECKS, ConfigError, from_dict
from robolearn.launch import DataConfig, EvalConfig, LaunchConfig, TrainConfig
from robolearn.tasks.graph_reach import GraphReachConfig, GraphReachOperatorConfig
from robolearn.tasks.pybullet_lift import PyBulletLiftConfig
from robolearn.tasks.robosuite_common import RobosuiteTaskConfig

CLASSES = [TrainConfig, EvalConfig, DataConfig, LaunchConfig, BCConfig, BCRNNConfig, BCQConfig, BCQCriticConfig,
           HBCConfig, IQLConfig, IRISConfig, GraphReachConfig, GraphReachOperatorConfig, PyBulletLiftConfig, RobosuiteTaskConfig]
SOURCE = "launch/generated.yaml"
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=8)


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init and f.metadata.get("config_key", True)]


def settings_for(cls):
    """Mappings that mostly use the class's own keys (so values reach the type checks), now and
    then an unknown one."""
    keys = st.one_of(st.sampled_from(field_names(cls)), st.text(max_size=5))
    return st.dictionaries(keys, json_values, max_size=4)


def checked_number_fields() -> list[tuple[type, str, str, type]]:
    """(class, field, check, int or float) for every scalar number field that declares a check."""
    out = []
    for cls in CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if typing.get_origin(hint) in (typing.Union, types.UnionType):
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            if f.metadata.get("check") and hint in (int, float):
                out.append((cls, f.name, f.metadata["check"], hint))
    return out


CHECKED = checked_number_fields()
CHECKED_CLASSES = sorted({cls for cls, _, _, _ in CHECKED}, key=lambda c: c.__name__)


def checked_field_of(cls):
    return st.sampled_from([(name, check, kind) for c, name, check, kind in CHECKED if c is cls])


def required(cls) -> dict:
    return {"task": "graph_reach"} if cls is LaunchConfig else {}


def test_every_config_declares_checks_for_its_counts():
    """The inventory the other tests run over is not empty by accident (one check per kind at least)."""
    assert {c for _, _, c, _ in CHECKED} == set(CHECKS)
    assert ("TrainConfig", "steps") in {(cls.__name__, name) for cls, name, _, _ in CHECKED}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_any_json_value_gives_a_config_or_a_config_error(cls, data):
    raw = {**required(cls), **data.draw(settings_for(cls))}
    try:
        cfg = from_dict(cls, raw, SOURCE)
    except ConfigError as exc:
        assert str(exc).startswith(f"{SOURCE}: field '") and isinstance(exc.field, str)
        return
    assert isinstance(cfg, cls)


@pytest.mark.parametrize("cls", CHECKED_CLASSES, ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_a_number_against_its_declared_meaning_is_refused(cls, data):
    name, check, kind = data.draw(checked_field_of(cls))
    ok, _ = CHECKS[check]
    bad = data.draw(st.one_of(
        st.booleans(),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not ok(v)),
        st.integers(-10**9, 10**9).filter(lambda v: not ok(v)),
        st.text(max_size=4),
    ))
    with pytest.raises(ConfigError) as info:
        from_dict(cls, {**required(cls), name: bad}, SOURCE)
    assert info.value.field == name and str(info.value).startswith(f"{SOURCE}: field '{name}'")


@pytest.mark.parametrize("cls", CHECKED_CLASSES, ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_a_number_that_means_what_the_field_says_is_kept(cls, data):
    name, check, kind = data.draw(checked_field_of(cls))
    ok, _ = CHECKS[check]
    if kind is int:
        good = data.draw(st.integers(0, 10**6).filter(ok))
    else:
        good = data.draw(st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False).filter(ok))
    cfg = from_dict(cls, {**required(cls), name: good}, SOURCE)
    assert getattr(cfg, name) == good and type(getattr(cfg, name)) is kind


@FAST
@given(steps=st.one_of(st.booleans(), st.integers(max_value=0), st.floats()))
def test_nested_fields_are_named_with_their_dotted_path(steps):
    with pytest.raises(ConfigError) as info:
        from_dict(LaunchConfig, {"task": "x", "train": {"steps": steps}}, SOURCE)
    assert info.value.field == "train.steps"


def test_list_of_counts_is_checked_item_by_item():
    with pytest.raises(ConfigError, match=r"field 'value\.critic_hidden\[1\]': expected a number greater than 0, got 0"):
        from_dict(IRISConfig, {"value": {"critic_hidden": [64, 0]}}, SOURCE)
    with pytest.raises(ConfigError, match=r"field 'hidden\[0\]': expected int, got True"):
        from_dict(BCConfig, {"hidden": [True, 8]}, SOURCE)
