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


# --- the speed mechanisms the bench measures: same results, less work --------------------------

def test_a_loaded_policy_builds_no_optimiser_until_one_is_used(tmp_path):
    import torch

    from robolearn.algos.base import DeferredOptimizer, algo_class
    from robolearn.data.dataset import DemoDataset
    from robolearn.policy import load_algo, load_policy, restore_training_state, save_checkpoint

    bench = load_bench()
    data = DemoDataset(bench.synthetic_episodes("graph_reach", 3, 12), ["pos"])
    small = {"subgoal_horizon": 3, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1, "num_goal_samples": 4,
             "num_value_action_samples": 2, "value": {"critic_hidden": [16], "action_vae_hidden": [16]}}
    algo = algo_class("iris").build(small, data.obs_spec, data.normalizers, data.action_dim)
    gen = torch.Generator().manual_seed(0)
    algo.train_step(data, gen)
    save_checkpoint(tmp_path / "a", algo, step=1, meta={}, gen=gen)
    policy = load_policy(tmp_path / "a")
    opts = policy.algo.optimizers()
    assert set(opts) == {"goal_vae", "low", "critic", "action_vae"}
    assert all(isinstance(o, DeferredOptimizer) and not o.built for o in opts.values())
    policy.reset(0)
    policy.act({"pos": data.obs["pos"][0].numpy()})
    assert not any(o.built for o in opts.values())  # acting steps no optimiser
    # Resuming from a loaded algorithm builds the optimisers, with the saved moments in them.
    loaded, info, ckpt = load_algo(tmp_path / "a")
    assert restore_training_state(loaded, ckpt, info, torch.Generator()) == 1
    for name, opt in loaded.optimizers().items():
        assert opt.built and opt.state_dict()["state"], name
        saved = algo.optimizers()[name].state_dict()["state"]
        for pid, st in opt.state_dict()["state"].items():
            assert torch.equal(st["exp_avg"], saved[pid]["exp_avg"])
    save_checkpoint(tmp_path / "b", loaded, step=1, meta={})  # a loaded policy saves like any other


def test_an_acting_lstm_step_is_the_sequence_s_step():
    """``LSTMPolicy`` steps one observation at a time (no gradients, CPU) through its fused
    per-layer weights: the same outputs as the whole sequence through ``nn.LSTM``, to float
    rounding, also after the weights change; training is untouched."""
    import torch

    from robolearn.models.nets import LSTMPolicy

    torch.manual_seed(0)
    net = LSTMPolicy(5, 3, 32, 2)
    x = torch.randn(4, 7, 5)
    with torch.no_grad():
        whole, (h, c) = net(x)
        state, steps = None, []
        for t in range(x.shape[1]):
            out, state = net(x[:, t : t + 1], state)
            steps.append(out)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-6)
    assert torch.allclose(state[0], h, atol=1e-6) and torch.allclose(state[1], c, atol=1e-6)
    out, _ = net(x[:, :1])  # with gradients: nn.LSTM, differentiable
    out.sum().backward()
    assert net.lstm.weight_hh_l0.grad is not None
    # The step's fused weights follow the parameters: after an optimiser step and after loading
    # other weights, steps are again the sequence's.
    torch.optim.SGD(net.parameters(), lr=0.5).step()
    other = LSTMPolicy(5, 3, 32, 2).state_dict()
    for change in (lambda: None, lambda: net.load_state_dict(other)):
        change()
        with torch.no_grad():
            whole, _ = net(x)
            state, steps = None, []
            for t in range(x.shape[1]):
                out, state = net(x[:, t : t + 1], state)
                steps.append(out)
        assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-6)
