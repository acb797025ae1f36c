"""bench/throughput.py on its smallest setting: one configuration in its own process, the
roofline, policy latencies, RemoteArm round trips over a real loopback socket and a one-worker
evaluation, written as JSON. Structure only: timings are never asserted."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("throughput_bench", REPO / "bench" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_quick_run_writes_every_section(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "throughput.json"
    code = bench.main(["--quick", "--threads", "1", "--configs", "graph_reach_iris", "--eval-task", "graph_reach",
                       "--eval-algo", "bc", "--eval-workers", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["mode"] == "quick"
    assert len(result["load_average"]["before"]) == 3 and len(result["load_average"]["after"]) == 3
    assert positive(result["roofline"]["gflops"]) and result["roofline"]["threads"] == 1
    assert set(result["robomimic_reference"]) >= {"bc_rnn", "iris"}
    (row,) = result["training"]
    assert row["name"] == "graph_reach_iris" and row["algo"] == "iris" and row["threads"] == 1
    for key in ("steps_per_s", "cpu_ms_per_step", "gflop_per_step", "peak_rss_mib", "roofline_fraction"):
        assert positive(row[key]), key
    assert len(row["window_steps_per_s"]) == bench.SIZES["quick"]["windows"]
    assert len(row["load_average"]["before"]) == 3
    policy = row["policy"]
    assert policy["threads"] == 1 and policy["steps"] + policy["replans"] == bench.SIZES["quick"]["act_steps"]
    assert policy["replans"] > 0  # IRIS re-plans every T steps: both kinds of step are timed
    for part in ("step_ms", "replan_ms"):
        assert positive(policy[part]["p50"]) and policy[part]["p99"] >= policy[part]["p50"]
    remote = result["remote"]
    assert remote["n"] == bench.SIZES["quick"]["remote_n"] and remote["round_trip_ms"]["p99"] >= remote["round_trip_ms"]["p50"] > 0
    ev = result["evaluation"]
    assert ev["task"] == "graph_reach" and set(ev["by_workers"]) == {"1"} and positive(ev["fresh_process_load_s"])
    one = ev["by_workers"]["1"]
    assert [c["episodes"] for c in one["calls"]] == [1, 1 + bench.SIZES["quick"]["eval_episodes"]]
    assert positive(one["env_steps_per_s"]) and positive(one["episodes_per_s"])
    table = capsys.readouterr().out
    assert "| graph_reach_iris | iris | launch |" in table and "fp32 matmul roofline" in table


def test_bc_rnn_paper_step_is_the_issue_s_flop_count():
    """One BC-RNN step with robomimic's paper networks (LSTM 2 x 400 over 10 steps, batch 100, Lift's
    19 observation numbers): 11.70 GFLOP, forward and backward."""
    bench = load_bench()
    assert bench.lstm_flops(100, 10, 19, 400, 2) / 1e9 == pytest.approx(11.70, abs=0.005)


def test_configurations_cover_every_launch_file_and_the_paper_networks():
    bench = load_bench()
    names = {c["name"] for c in bench.configurations()}
    for task in ("graph_reach", "lift"):
        for algo in bench.ALGOS:
            assert f"{task}_{algo}" in names and (REPO / "launch" / f"{task}_{algo}.yaml").is_file()
    assert {"paper_bc_rnn", "paper_iris"} <= names


def test_unknown_configuration_is_named(capsys):
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--configs", "lift_nope"])
    assert "lift_nope" in capsys.readouterr().err
