"""`robolearn collect` end to end through the CLI on Graph Reach."""
from __future__ import annotations

import json

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.config import ConfigError
from robolearn.data.format import DemoReader


def collect(out, *extra: str) -> int:
    return main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "5", "--seed", "7",
                 "--out", str(out), "--no-progress", *extra])


def episodes(folder) -> list:
    return list(DemoReader(folder))


def assert_same_episodes(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.actions, y.actions)
        assert np.array_equal(x.obs["pos"], y.obs["pos"])
        assert np.array_equal(x.rewards, y.rewards) and np.array_equal(x.dones, y.dones)
        assert np.array_equal(x.states, y.states) and np.array_equal(x.timestamps, y.timestamps)
        assert x.success == y.success
        assert x.extra.keys() == y.extra.keys()


def test_collect_end_to_end(tmp_path, capsys):
    out = tmp_path / "demos"
    assert collect(out) == 0
    printed = capsys.readouterr().out
    assert "5 episodes kept" in printed and "median length" in printed and "steps/s" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "graph_reach" and meta["source"] == "scripted:suboptimal"
    assert meta["control_hz"] == 10.0 and meta["action_spec"]["dim"] == 2
    assert meta["extra"] == {"env": {}, "episode_horizon": 150, "seed": 7, "operator": "suboptimal"}
    eps = episodes(out)
    assert len(eps) == 5
    for ep in eps:
        T = ep.length
        assert ep.success and ep.rewards[-1] == 1.0 and ep.rewards[:-1].sum() == 0
        assert ep.dones[-1] and not ep.dones[:-1].any()
        assert ep.obs["pos"].shape == (T + 1, 2) and ep.states.shape == (T + 1, 2)
        # States are the exact simulator positions behind the float32 observations.
        assert np.allclose(ep.states, ep.obs["pos"], atol=1e-5)
        assert np.allclose(np.diff(ep.timestamps), 0.1)
        assert "route_index" in ep.extra


def test_same_seed_identical_folder_and_append_continues(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert collect(a) == 0 and collect(b) == 0
    assert (a / "meta.json").read_text() == (b / "meta.json").read_text()
    assert sorted(p.name for p in (a / "episodes").iterdir()) == sorted(p.name for p in (b / "episodes").iterdir())
    assert_same_episodes(episodes(a), episodes(b))
    # A different seed gives different episodes.
    c = tmp_path / "c"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "2", "--seed", "8",
                 "--out", str(c), "--no-progress"]) == 0
    assert not np.array_equal(episodes(c)[0].actions, episodes(a)[0].actions)
    # Appending continues the indices, and 5 + 5 equals 10 collected at once.
    assert collect(a) == 0
    assert DemoReader(a).indices == list(range(10))
    ten = tmp_path / "ten"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "10", "--seed", "7",
                 "--out", str(ten), "--no-progress"]) == 0
    assert_same_episodes(episodes(a), episodes(ten))


def test_workers_give_the_same_episodes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert collect(one, "--workers", "1") == 0
    assert collect(two, "--workers", "2") == 0
    assert_same_episodes(episodes(one), episodes(two))


def test_failed_episodes_dropped_or_kept(tmp_path, capsys):
    # A 10-step horizon is far too short to reach the goal: every episode fails.
    out = tmp_path / "short"
    assert collect(out, "--horizon", "10") == 1
    captured = capsys.readouterr()
    assert "5 failed" in captured.out and "no episode was kept" in captured.err
    kept = tmp_path / "kept"
    assert collect(kept, "--horizon", "10", "--keep-failed") == 0
    eps = episodes(kept)
    assert len(eps) == 5 and not any(e.success for e in eps)
    assert all(e.length == 10 and e.dones[-1] for e in eps)
    meta = json.loads((kept / "meta.json").read_text())
    assert meta["extra"]["env"] == {"horizon": 10}


def test_demo_horizon_is_the_operators_episode_limit():
    from robolearn.collect import with_demo_horizon
    from robolearn.tasks.base import env_spec

    lift = env_spec("lift")
    assert lift["demo_horizon"] > lift["horizon"]  # operators get longer than policies
    assert with_demo_horizon("lift", {}) == {"horizon": lift["demo_horizon"]}
    assert with_demo_horizon("lift", {"horizon": 50}) == {"horizon": 50}  # --horizon wins
    assert with_demo_horizon("graph_reach", {"seed": 1}) == {"seed": 1}  # no demo_horizon: unchanged


def test_demo_horizon_is_recorded_apart_from_what_policies_inherit(tmp_path):
    """Training copies a folder's ``extra.env`` into the policy (train.py), so the operators'
    longer limit must not land there: it is ``extra.episode_horizon``."""
    pytest.importorskip("robosuite")
    out = tmp_path / "lift"
    assert main(["collect", "lift", "--operator", "proficient", "--episodes", "1", "--out", str(out), "--no-progress"]) == 0
    extra = json.loads((out / "meta.json").read_text())["extra"]
    assert extra["env"] == {}
    assert extra["episode_horizon"] == 600


def test_bad_demo_horizon_names_the_file_and_field(monkeypatch):
    import robolearn.collect as collect_module

    monkeypatch.setattr(collect_module, "env_spec", lambda task: {"demo_horizon": "long"})
    with pytest.raises(ConfigError, match=r"lift\.yaml: field 'demo_horizon': expected a positive number of steps, got 'long'"):
        collect_module.with_demo_horizon("lift", {})


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    assert collect(tmp_path / "x", "--workers", "0") == 2
    assert "workers" in capsys.readouterr().err
    assert main(["collect", "graph_reach", "--operator", "teleport", "--episodes", "1",
                 "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "teleport" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert main(["collect", "no_such_task", "--operator", "proficient", "--episodes", "1",
                 "--out", str(tmp_path / "z"), "--no-progress"]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert collect(tmp_path / "w", "--set", "max_speed=-1") == 2
    assert "max_speed" in capsys.readouterr().err


def test_append_refuses_a_different_task_folder(tmp_path, capsys):
    out = tmp_path / "demos"
    assert collect(out) == 0
    meta = json.loads((out / "meta.json").read_text())
    meta["task"] = "lift"
    (out / "meta.json").write_text(json.dumps(meta))
    assert collect(out) == 2
    err = capsys.readouterr().err
    assert "meta.json" in err and "cannot append" in err
    assert len(DemoReader(out)) == 5


@pytest.mark.parametrize("kind", ["proficient", "multimodal"])
def test_other_operators(tmp_path, kind):
    out = tmp_path / kind
    assert main(["collect", "graph_reach", "--operator", kind, "--episodes", "3", "--out", str(out), "--no-progress"]) == 0
    assert len(DemoReader(out)) == 3


def test_recorded_states_replay_exactly(tmp_path):
    from robolearn.tasks import make_env

    out = tmp_path / "demos"
    assert main(["collect", "graph_reach", "--operator", "multimodal", "--episodes", "3", "--out", str(out), "--no-progress"]) == 0
    env = make_env("graph_reach")
    for ep in DemoReader(out):
        env.reset(seed=0)
        env.set_state(ep.states[0])
        for t, a in enumerate(ep.actions):
            res = env.step(a)
            assert np.array_equal(env.get_state(), ep.states[t + 1])
            assert np.array_equal(res.obs["pos"], ep.obs["pos"][t + 1])
        assert res.success == ep.success


def test_lift_action_replay_is_exact_with_the_recorded_reset_seed(tmp_path):
    """robosuite's set_state does not restore the controller's reset-time references; the
    recorded reset seed does, so replaying the recorded actions reproduces every observation."""
    pytest.importorskip("robosuite")
    from robolearn.commands.replay import replay_episode

    out = tmp_path / "lift"
    assert main(["collect", "lift", "--operator", "proficient", "--episodes", "1", "--seed", "3", "--out", str(out),
                 "--no-progress"]) == 0
    assert "reset_seed" in DemoReader(out).load(0).extra
    drift = replay_episode(out, 0, "actions", None, (64, 64), None)
    assert drift.steps == DemoReader(out).load(0).length and max(drift.max.values()) == 0.0
