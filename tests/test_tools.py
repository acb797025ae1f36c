"""inspect, merge and split on small synthetic demo folders with known figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoReader, DemoWriter, ObsFieldSpec


def point_meta(task="graph_reach", hz=10.0, dim=2):
    return DemoMeta(task=task, control_hz=hz, obs_spec={"pos": ObsFieldSpec((dim,))}, action_spec=ActionSpec(dim=dim))


def synthetic_folder(path, lengths=(10, 20, 30, 40, 50, 60), successes=(1, 1, 1, 0, 1, 0), detour=True):
    """Episodes move in a straight line: odd ones along +x, even ones along +y (two approach modes).
    Episode 5 takes a detour (out and back along -y first)."""
    w = DemoWriter(path, point_meta())
    for i, (T, ok) in enumerate(zip(lengths, successes)):
        d = np.array([1.0, 0.0]) if i % 2 else np.array([0.0, 1.0])
        steps = np.tile(d * 0.1, (T, 1))
        if i == 5 and detour:
            steps[:10] = [0.0, -0.1]
            steps[10:20] = [0.0, 0.1]
        pos = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        actions = np.clip(steps * 10, -1, 1) * 0.5
        actions[0] = [-0.9, 0.8]  # known extremes
        w.write_episode(obs={"pos": pos}, actions=actions, success=bool(ok))
    return path


def test_inspect_reports_known_figures(tmp_path):
    from robolearn.inspect_report import InspectConfig, write_report

    folder = synthetic_folder(tmp_path / "demos")
    s = write_report(folder, tmp_path / "report", InspectConfig(approach_steps=5), progress=False)
    assert s.episodes == 6 and s.success_rate == pytest.approx(4 / 6)
    assert (s.length_min, s.length_median, s.length_max) == (10, 35, 60)
    L = np.array([10, 20, 30, 40, 50, 60])
    assert s.length_cv == pytest.approx(L.std() / L.mean())
    assert s.action_min == pytest.approx([-0.9, -0.5]) and s.action_max == pytest.approx([0.5, 0.8])
    assert s.obs_ranges["pos"]["max"] == pytest.approx([4.0, 5.0])
    assert s.obs_ranges["pos"]["min"] == pytest.approx([0.0, -1.0])
    # approach modes: +y (episodes 0, 2, 4), +x (1, 3) and episode 5's detour, which starts along -y
    assert s.approach_clusters == 3 and s.approach_cluster_sizes == [3, 2, 1]
    assert [list(np.round(d)) for d in s.approach_cluster_directions] == [[0, 1], [1, 0], [0, -1]]
    # the detour episode walks 6 units for a 4-unit displacement
    assert s.per_episode[5]["path_over_straight"] == pytest.approx(6.0 / 4.0)
    assert s.path_over_straight_max == pytest.approx(1.5)
    assert s.path_over_straight_median == pytest.approx(1.0)
    for name in ("report.md", "summary.json", "trajectories.png", "actions.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "success rate **66.7%**" in md and "10 / 35 / 60" in md
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["episodes"] == 6


def test_inspect_two_clusters_exactly(tmp_path):
    from robolearn.inspect_report import InspectConfig, summarize

    folder = synthetic_folder(tmp_path / "d", lengths=(10, 11, 12, 13, 14, 15, 16, 17), successes=(1,) * 8, detour=False)
    s, _ = summarize(folder, InspectConfig(approach_steps=5), progress=False)
    assert s.approach_clusters == 2 and s.approach_cluster_sizes == [4, 4]
    assert s.approach_silhouette > 0.9


def test_inspect_single_mode_reports_one_cluster(tmp_path):
    from robolearn.inspect_report import summarize

    w = DemoWriter(tmp_path / "d", point_meta())
    rng = np.random.default_rng(0)
    for _ in range(8):
        d = np.array([1.0, 0.0]) + rng.normal(0, 0.05, 2)
        pos = np.concatenate([np.zeros((1, 2)), np.cumsum(np.tile(d * 0.1, (12, 1)), 0)])
        w.write_episode(obs={"pos": pos}, actions=np.zeros((12, 2)), success=True)
    s, _ = summarize(tmp_path / "d", progress=False)
    assert s.approach_clusters == 1 and s.approach_cluster_sizes == [8]


def test_inspect_cli(tmp_path, capsys):
    folder = synthetic_folder(tmp_path / "demos")
    assert main(["inspect", str(folder), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "6** episodes" in capsys.readouterr().out
    assert main(["inspect", str(folder), "--pos-key", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


# ----------------------------------------------------------------------------- replay


def graph_reach_folder(path, n=2, T=25):
    """Real Graph Reach rollouts with recorded simulator states, as `robolearn collect` writes them."""
    from robolearn.tasks.base import make_env

    env = make_env("graph_reach")
    meta = DemoMeta(task="graph_reach", control_hz=env.control_hz, obs_spec=env.obs_spec, action_spec=env.action_spec, extra={"env": {}})
    w = DemoWriter(path, meta)
    rng = np.random.default_rng(0)
    for i in range(n):
        obs = env.reset(seed=i)
        rows, states, acts = [obs["pos"]], [env.get_state()], []
        for _ in range(T):
            a = rng.uniform(-1, 1, 2).astype(np.float32)
            r = env.step(a)
            acts.append(a)
            rows.append(r.obs["pos"])
            states.append(env.get_state())
        w.write_episode(obs={"pos": np.stack(rows)}, actions=np.stack(acts), states=np.stack(states), success=False)
    env.close()
    return path


def test_replay_actions_and_states_exact_and_detects_drift(tmp_path):
    from robolearn.commands.replay import replay_episode

    folder = graph_reach_folder(tmp_path / "gr")
    d = replay_episode(folder, 1, "actions")
    assert d.steps == 25 and d.max["pos"] == 0.0 and d.per_step["pos"].shape == (26,)
    d = replay_episode(folder, 0, "states")
    assert d.max["pos"] == 0.0
    # tamper with one recorded action: actions replay now drifts from that step on
    p = folder / "episodes" / "episode_000000.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["actions"][10] = -arrays["actions"][10]
    np.savez(p, **arrays)
    d = replay_episode(folder, 0, "actions")
    assert d.max["pos"] > 1e-3 and np.all(d.per_step["pos"][:11] == 0) and d.worst_step["pos"] >= 11


def test_replay_cli_video_and_errors(tmp_path, capsys):
    folder = graph_reach_folder(tmp_path / "gr", n=1, T=8)
    out = tmp_path / "r.mp4"
    assert main(["replay", str(folder), "--episode", "0", "--video", str(out), "--size", "64", "64", "--json", str(tmp_path / "d.json")]) == 0
    assert out.stat().st_size > 0
    assert json.loads((tmp_path / "d.json").read_text())["max"]["pos"] == 0.0
    capsys.readouterr()
    assert main(["replay", str(folder), "--episode", "7"]) == 2
    assert "no episode 7" in capsys.readouterr().err


# ----------------------------------------------------------------------------- merge, split


def test_merge_renumbers_keeps_splits_and_appends(tmp_path):
    from robolearn.data.tools import merge, split

    a = synthetic_folder(tmp_path / "a", lengths=(5, 6, 7), successes=(1, 0, 1))
    b = synthetic_folder(tmp_path / "b", lengths=(8, 9), successes=(1, 1))
    split(b, valid=0.5, seed=0)
    assert main(["merge", str(tmp_path / "m"), str(a), str(b), "--quiet"]) == 0
    r = DemoReader(tmp_path / "m")
    assert r.indices == [0, 1, 2, 3, 4]
    assert [r.load(i).length for i in r.indices] == [5, 6, 7, 8, 9]
    assert [r.load(i).success for i in r.indices] == [True, False, True, True, True]
    vb = DemoReader(b).meta.split["valid"][0]
    assert r.meta.split["valid"] == [3 + vb] and sorted(r.meta.split["train"] + r.meta.split["valid"]) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(r.load(4).obs["pos"], DemoReader(b).load(1).obs["pos"])
    # appending to an existing output resumes its numbering
    c = synthetic_folder(tmp_path / "c", lengths=(5, 6, 7), successes=(1, 0, 1))
    merge(tmp_path / "m", [c], progress=False)
    r = DemoReader(tmp_path / "m")
    assert r.indices == list(range(8)) and r.load(7).length == 7
    assert len(r.meta.extra["merged_from"]) == 3
    # a source already in merged_from is not copied again
    assert merge(tmp_path / "m", [a], progress=False) == {str(a): []}
    assert DemoReader(tmp_path / "m").indices == list(range(8))


def test_merge_refuses_mismatch_and_bad_episodes(tmp_path):
    from robolearn.data.tools import merge

    a = synthetic_folder(tmp_path / "a", lengths=(5, 6), successes=(1, 1))
    w = DemoWriter(tmp_path / "other", point_meta(task="lift"))
    w.write_episode(obs={"pos": np.zeros((3, 2))}, actions=np.zeros((2, 2)))
    with pytest.raises(DemoFormatError, match="task 'lift'") as exc:
        merge(tmp_path / "m", [a, tmp_path / "other"], progress=False)
    assert "other" in str(exc.value)
    w = DemoWriter(tmp_path / "dim3", point_meta(dim=3))
    w.write_episode(obs={"pos": np.zeros((3, 3))}, actions=np.zeros((2, 3)))
    with pytest.raises(DemoFormatError, match="obs_spec"):
        merge(tmp_path / "m", [a, tmp_path / "dim3"], progress=False)
    assert not (tmp_path / "m").exists()
    bad = tmp_path / "a" / "episodes" / "episode_000001.npz"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DemoFormatError, match="episode_000001"):
        merge(tmp_path / "m", [a], progress=False)
    assert not (tmp_path / "m").exists()


def test_split_is_seeded_and_validated(tmp_path, capsys):
    from robolearn.config import ConfigError
    from robolearn.data.tools import split

    f = synthetic_folder(tmp_path / "d", lengths=tuple(range(5, 25)), successes=(1,) * 20)
    assert main(["split", str(f), "--valid", "0.2", "--seed", "3"]) == 0
    r = DemoReader(f)
    tr, va = r.split_indices("train"), r.split_indices("valid")
    assert len(va) == 4 and len(tr) == 16 and sorted(tr + va) == list(range(20))
    assert split(f, 0.2, 3) == {"train": tr, "valid": va}
    assert split(f, 0.2, 4)["valid"] != va
    with pytest.raises(ConfigError, match="fraction"):
        split(f, 1.5)
    assert main(["split", str(f), "--valid", "-1"]) == 2
