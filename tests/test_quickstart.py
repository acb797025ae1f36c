"""The quickstart end to end on Lift (real MuJoCo, real child processes), on a tiny budget."""
from __future__ import annotations

import json
import os

import pytest

from robolearn.quickstart import main as quickstart
from robolearn.quickstart import osmesa_available
from robolearn.video import read_mp4_info


def test_lift_quickstart_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "qs"
    assert quickstart(["--out", str(out), "--episodes", "2", "--steps", "5", "--eval-episodes", "1",
                       "--horizon", "12"]) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "| IRIS |" in report and "| BC-RNN |" in report
    assert "robolearn collect lift --operator suboptimal --episodes 2 --seed 0 --workers 2" in report
    assert report in printed and "[IRIS] train done" in printed and "[BC-RNN] eval done" in printed
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "report.json").read_text())
    cores_each = max(1, len(os.sched_getaffinity(0)) // 2)  # side by side: half the cores per algorithm
    assert [st["stage"] for st in summary["stages"]] == ["collect", "iris_train", "iris_eval", "bc_rnn_train",
                                                          "bc_rnn_eval"]
    assert all(st["cpu_s"] > 0 for st in summary["stages"])
    for algo in ("iris", "bc_rnn"):
        r = summary["results"][algo]
        assert r["task"] == "lift" and r["episodes"] == 1 and r["train_steps"] == 5 and r["threads"] == cores_each
        assert r["mean_length"] <= 12
        assert (out / algo / "eval.json").exists() and (out / "logs" / f"{algo}_train.log").exists()
        if osmesa_available():
            videos = sorted((out / algo / "videos").glob("*.mp4"))
            assert [v.name for v in videos] == ["episode_0000.mp4"]
            frames, width, height = read_mp4_info(videos[0])
            assert frames >= 2 and width > 0 and height > 0


def test_one_after_the_other_gives_each_algorithm_every_core_and_keeps_the_logs(tmp_path):
    out = tmp_path / "qs"
    assert quickstart(["--task", "graph_reach", "--out", str(out), "--episodes", "2", "--steps", "5",
                       "--eval-episodes", "1", "--video-episodes", "0", "--jobs", "1"]) == 0
    summary = json.loads((out / "report.json").read_text())
    assert summary["jobs"] == 1
    for algo in ("iris", "bc_rnn"):
        r = summary["results"][algo]
        assert r["train_steps"] == 5 and r["threads"] == len(os.sched_getaffinity(0))
        assert (out / "logs" / f"{algo}_train.log").exists() and (out / "logs" / f"{algo}_eval.log").exists()


def test_a_failing_stage_stops_the_run_with_one_line_naming_it_and_its_log(tmp_path, capsys):
    out = tmp_path / "qs"
    code = quickstart(["--task", "graph_reach", "--out", str(out), "--episodes", "2", "--steps", "5",
                       "--eval-episodes", "1", "--set", "iris:algo.lr=-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("quickstart: IRIS train failed with exit status 2: ") and "got -1" in err[0]
    assert str(out / "logs" / "iris_train.log") in err[0]
    assert not (out / "report.md").exists()


@pytest.mark.parametrize("args, problem", [
    (["--set", "algo.lr=1"], "expected ALGO:KEY=VALUE"),
    (["--set", "hbc:algo.lr=1"], "expected ALGO:KEY=VALUE"),
    (["--episodes", "0"], "--episodes: expected a positive integer, got 0"),
    (["--seed", "-1"], "--seed: expected a non-negative integer, got -1"),
])
def test_bad_arguments_are_refused_before_anything_runs(tmp_path, capsys, args, problem):
    with pytest.raises(SystemExit) as exc:
        quickstart(["--out", str(tmp_path / "qs"), *args])
    assert exc.value.code == 2 and problem in capsys.readouterr().err
    assert not (tmp_path / "qs").exists()
