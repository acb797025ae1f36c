"""Demos that fail: `robolearn collect --failure-rate P --keep-failures` keeps episodes in which the
scripted operator failed the way real operators do, with their sparse rewards and success false."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.collect import CollectConfig, OperatorActor, _init_state, _record, record_episode
from robolearn.config import ConfigError
from robolearn.data.format import DemoReader
from robolearn.inspect_report import summarize
from robolearn.runtime.rollout import rollout
from robolearn.runtime.seeds import demonstration_seeds
from robolearn.tasks.base import make_env
from robolearn.tasks.operator_failures import draw_failure

#: sha256 of obs, actions and rewards of Graph Reach suboptimal episodes 0-11, seed 0, recorded by
#: the operator before it could fail: a failure rate of 0 must not change one bit of them.
GRAPH_REACH_SEED0_DIGEST = "501caa2be98d662a544edc094a451d43eb97e61f0db1e1a001a867393014b6b1"
#: sha256 of the actions of Lift's proficient episode 0, seed 0, up to its success (37 steps), likewise.
LIFT_PROFICIENT_SEED0_DIGEST = "ea49aa5fe137116314234206840b92b66ea573384efd078d60f09e326b2781ae"


def digest(episodes: list[dict]) -> str:
    h = hashlib.sha256()
    for ep in episodes:
        for key in sorted(ep["obs"]):
            h.update(np.ascontiguousarray(ep["obs"][key]).tobytes())
        h.update(ep["actions"].tobytes())
        h.update(ep["rewards"].tobytes())
    return h.hexdigest()


def same_episode(a: dict, b: dict) -> bool:
    return (np.array_equal(a["actions"], b["actions"]) and np.array_equal(a["rewards"], b["rewards"])
            and all(np.array_equal(a["obs"][k], b["obs"][k]) for k in a["obs"]) and a["success"] == b["success"])


@pytest.fixture(scope="module")
def graph_reach():
    env = make_env("graph_reach")
    yield env
    env.close()


def test_rate_zero_records_todays_operator_bit_for_bit(graph_reach):
    plain = [record_episode(graph_reach, "graph_reach", "suboptimal", 0, i) for i in range(12)]
    zero = [record_episode(graph_reach, "graph_reach", "suboptimal", 0, i, failure_rate=0.0) for i in range(12)]
    assert digest(plain) == digest(zero) == GRAPH_REACH_SEED0_DIGEST
    assert all("failure_mode" not in ep["extra"] for ep in zero)


def test_half_the_graph_reach_episodes_fail_and_the_rest_are_unchanged(graph_reach):
    n = 40
    for kind in ("suboptimal", "proficient"):
        modes = {}
        for i in range(n):
            ep = record_episode(graph_reach, "graph_reach", kind, 0, i, failure_rate=0.5)
            mode = str(ep["extra"]["failure_mode"])
            modes[mode] = modes.get(mode, 0) + 1
            if mode:
                # A failure ends without success, at the horizon, with no reward at all.
                assert not ep["success"] and ep["rewards"].sum() == 0.0 and len(ep["actions"]) == graph_reach.horizon
            else:
                assert ep["success"] and ep["rewards"][-1] == 1.0
                assert same_episode(ep, record_episode(graph_reach, "graph_reach", kind, 0, i))
        failed = n - modes.get("", 0)
        assert 0.3 * n <= failed <= 0.7 * n, modes
        assert set(modes) == {"", "wrong_turn", "timeout"}, modes


def test_wrong_turn_stays_in_a_dead_end(graph_reach):
    i = next(i for i in range(40) if draw_failure(demonstration_seeds(0, i).actor, 1.0, ("wrong_turn", "timeout")) == "wrong_turn")
    ep = record_episode(graph_reach, "graph_reach", "suboptimal", 0, i, failure_rate=1.0)
    end = ep["obs"]["pos"][-1]
    dead_ends = [graph_reach.map.nodes[d] for d in graph_reach.map.dead_ends(exclude=("S", "G"))]
    assert min(np.linalg.norm(end - d) for d in dead_ends) < 0.3
    assert np.allclose(ep["obs"]["pos"][-20:], end)  # it stopped there and never turned back


def test_collect_keeps_failures_with_their_mode_and_inspect_counts_them(tmp_path, capsys):
    out = tmp_path / "half"
    args = ["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "12", "--seed", "3", "--out", str(out),
            "--no-progress", "--failure-rate", "0.5"]
    assert main([*args, "--keep-failures"]) == 0
    eps = list(DemoReader(out))
    assert len(eps) == 12
    failed = [e for e in eps if not e.success]
    assert failed and all(str(e.extra["failure_mode"]) for e in failed)
    assert all(e.rewards.sum() == 0 and e.dones[-1] for e in failed)
    assert all(str(e.extra["failure_mode"]) == "" for e in eps if e.success)
    assert json.loads((out / "meta.json").read_text())["extra"]["failure_rate"] == 0.5
    s, _ = summarize(out, progress=False)
    assert sum(s.failure_modes.values()) == len(failed) and s.success_rate == pytest.approx(1 - len(failed) / 12)
    assert main(["inspect", str(out), "--quiet"]) == 0
    assert f"{12 - len(failed)} of 12 episodes succeeded" in capsys.readouterr().out
    # --keep-failed is the same flag; without either, the failures are dropped.
    alias, dropped = tmp_path / "alias", tmp_path / "dropped"
    assert main([*args[:-5], "--out", str(alias), "--no-progress", "--failure-rate", "0.5", "--keep-failed"]) == 0
    for a, b in zip(DemoReader(out), DemoReader(alias)):
        assert np.array_equal(a.actions, b.actions) and str(a.extra["failure_mode"]) == str(b.extra["failure_mode"])
    assert main([*args[:-5], "--out", str(dropped), "--no-progress", "--failure-rate", "0.5"]) == 0
    assert len(list(DemoReader(dropped))) == 12 - len(failed)


def test_worker_processes_play_the_same_failures(graph_reach):
    """What a worker process runs (its state from the pool's init arguments, then one episode)
    records the episode this process records: the rate travels with the worker's arguments."""
    worker = _init_state("graph_reach", "suboptimal", {}, 3, 0.5)
    try:
        for i in range(6):
            here, there = record_episode(graph_reach, "graph_reach", "suboptimal", 3, i, 0.5), _record(worker, i)
            assert same_episode(here, there) and str(here["extra"]["failure_mode"]) == str(there["extra"]["failure_mode"])
    finally:
        worker["env"].close()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "inf"])
def test_a_bad_failure_rate_is_a_one_line_error(tmp_path, capsys, value):
    out = tmp_path / "bad"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "2", "--out", str(out),
                 "--no-progress", f"--failure-rate={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--failure-rate" in err[0] and "failure_rate" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("value", [True, "0.5", None])
def test_a_failure_rate_that_is_not_a_number_is_refused(value):
    with pytest.raises(ConfigError, match="failure_rate"):
        CollectConfig(task="graph_reach", operator="suboptimal", episodes=1, out="x", failure_rate=value).validate()


def test_lift_failure_modes_fail_and_successes_are_unchanged():
    """Each manipulation failure mode, played by the proficient operator (which lifts the cube in
    37 steps on this seed), ends without success over twice that horizon; an episode not chosen to
    fail is the operator's episode from before it could fail, bit for bit."""
    env = make_env("lift", horizon=80)
    try:
        seeds = demonstration_seeds(0, 0)
        unchanged = ForcedFailure("lift", "proficient", env, "")
        r = rollout(env, unchanged, seeds, obs_keys=list(env.obs_spec))
        assert r.success and hashlib.sha256(r.actions.tobytes()).hexdigest() == LIFT_PROFICIENT_SEED0_DIGEST
        for mode in ("dropped_object", "missed_grasp", "timeout"):
            actor = ForcedFailure("lift", "proficient", env, mode)
            r = rollout(env, actor, seeds, stop_on_success=False, obs_keys=list(env.obs_spec))
            assert not r.success and r.rewards.sum() == 0.0 and r.length == 80, mode
            assert str(actor.episode_info()["failure_mode"]) == mode
            assert f"fail:{mode}" in [name for _, name in actor.operator.events]
    finally:
        env.close()


class ForcedFailure(OperatorActor):
    """The collect actor with the failure mode chosen by the test instead of drawn."""

    def __init__(self, task, kind, env, mode):
        super().__init__(task, kind, env)
        self.mode = mode

    def reset(self, seed):
        from robolearn.tasks.base import make_operator

        self.operator = make_operator(self.task, self.env, self.kind, np.random.default_rng(seed))
        self.operator.plan_failure(self.mode)
        self.operator.reset()


def test_training_takes_every_episode_or_the_successes_alone(tmp_path, capsys):
    from robolearn.launch import load_launch
    from robolearn.paths import LAUNCH_DIR
    from robolearn.train import load_dataset

    out = tmp_path / "half"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "8", "--seed", "1", "--out", str(out),
                 "--no-progress", "--failure-rate", "0.5", "--keep-failures"]) == 0
    successes = sum(e.success for e in DemoReader(out))
    assert 0 < successes < 8
    launch = LAUNCH_DIR / "graph_reach_bc.yaml"
    _, every, _, data = load_dataset(load_launch(launch, [f"data.path={out}"]))
    assert len(every) == 8 and float(data.rewards.sum()) == successes
    _, ok, _, _ = load_dataset(load_launch(launch, [f"data.path={out}", "data.success_only=true"]))
    assert len(ok) == successes and all(e.success for e in ok)
    failed = tmp_path / "failed"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "2", "--out", str(failed),
                 "--no-progress", "--failure-rate", "1", "--keep-failures"]) == 0
    with pytest.raises(ConfigError, match="data.success_only"):
        load_dataset(load_launch(launch, [f"data.path={failed}", "data.success_only=true"]))
    with pytest.raises(ConfigError, match="success_only"):
        load_launch(launch, [f"data.path={out}", "data.success_only=1"])
