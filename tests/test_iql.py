"""IQL on real Graph Reach demos (collected by ``robolearn collect``): the expectile and the
advantage weights are what their definitions say, a few hundred steps lower every loss and rank
states by their distance to the goal, checkpoints reload to identical actions, ``robolearn train``
and ``robolearn eval`` run it, and bad settings are refused in one line."""
from __future__ import annotations

import json
import math
from pathlib import Path

from conftest import collect_graph_reach
import numpy as np
import pytest
import torch

from robolearn.algos.base import algo_class
from robolearn.algos.iql import advantage_weights, expectile_loss
from robolearn.cli import main
from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import DemoReader
from robolearn.paths import LAUNCH_DIR
from robolearn.policy import Policy, load_policy, save_checkpoint
from robolearn.selection import start_state_value

SMALL = {"batch_size": 64, "hidden": [64, 64], "critic_hidden": [64, 64], "target_tau": 0.05, "reward_shift": -1.0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Steps of a few small MLPs: one thread is ~30x faster than two fighting a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return collect_graph_reach(tmp_path_factory, episodes=8)


@pytest.fixture(scope="module")
def data(demos) -> DemoDataset:
    reader = DemoReader(demos)
    return DemoDataset([reader.load(i) for i in range(len(reader))], ["pos"])


def train(data, steps: int, **settings):
    """An IQL trained for ``steps`` steps, with the metrics of every step."""
    torch.manual_seed(0)
    algo = algo_class("iql").build({**SMALL, **settings}, data.obs_spec, data.normalizers, data.action_dim)
    gen = torch.Generator().manual_seed(0)
    return algo, [algo.train_step(data, gen) for _ in range(steps)]


@pytest.fixture(scope="module")
def trained(data):
    return train(data, 300)


def test_expectile_loss_matches_its_definition_on_hand_made_numbers():
    diff = torch.tensor([2.0, -1.0, 0.5, 0.0])  # target - prediction
    # |0.8 - 1(diff < 0)| * diff^2: 0.8 * 4, 0.2 * 1, 0.8 * 0.25, 0
    assert expectile_loss(diff, 0.8).item() == pytest.approx((3.2 + 0.2 + 0.2 + 0.0) / 4)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * diff.pow(2).mean().item())  # half the MSE
    # The minimiser of the expectile loss over a constant is the expectile: above the mean for 0.9.
    targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        expectile_loss(targets - v, 0.9).backward()
        opt.step()
    assert v.item() == pytest.approx(0.75, abs=1e-4)  # 0.9 * 1 * (1 - v) = 0.1 * 3 * v


def test_advantage_weight_is_exp_beta_advantage_clipped_at_max_weight():
    w = advantage_weights(torch.tensor([-1.0, 0.0, 0.5, 1.0, 1e4]), beta=3.0, max_weight=10.0)
    torch.testing.assert_close(w, torch.tensor([math.exp(-3.0), 1.0, math.exp(1.5), 10.0, 10.0]))


def test_an_over_estimated_advantage_is_clipped_in_training(data):
    """A target critic that calls every recorded action worth 1e3 (V is near 0) would give
    weights of exp(3e3) = inf; every weight is the clip instead and the loss stays finite."""
    algo = algo_class("iql").build({**SMALL, "max_weight": 7.0}, data.obs_spec, data.normalizers, data.action_dim)
    with torch.no_grad():
        for critic in algo.target.critics:
            list(critic.parameters())[-1].fill_(1e3)  # the output bias
    m = algo.train_step(data, torch.Generator().manual_seed(0))
    assert m["policy/weight_clipped"] == 1.0 and m["policy/weight_mean"] == pytest.approx(7.0)
    assert math.isfinite(m["loss/policy"])


def test_a_few_hundred_steps_lower_every_loss(data):
    """On the recorded 0/1 reward, so that the TD targets stay in one range while Q fits them (with
    a cost per step they deepen as V learns how far success is, and the critic's loss follows)."""
    _, history = train(data, 300, reward_shift=0.0)
    for key in ("loss/policy", "loss/critic", "loss/value"):
        early = np.mean([m[key] for m in history[5:25]])
        late = np.mean([m[key] for m in history[-20:]])
        assert late < 0.7 * early, f"{key} went from {early:.4f} to {late:.4f}"


def test_value_ranks_states_by_their_distance_to_the_goal(trained, data):
    """With a cost per step, V counts the steps left: states near the goal are worth more than
    the start states, and selection's start value is V at the start states."""
    algo, _ = trained
    start = start_state_value(algo, data, seed=0)
    near_goal = algo.state_value(algo.encode(data.observations(data.ep_end - 1))).mean().item()
    assert near_goal > start + 1.0, (near_goal, start)
    assert start == pytest.approx(algo.state_value(algo.encode(data.observations(data.ep_start))).mean().item())


def test_checkpoint_reloads_to_identical_actions(trained, data, tmp_path):
    algo, _ = trained
    save_checkpoint(tmp_path / "ckpt", algo, step=300, meta={"task": "graph_reach"})
    original, reloaded = Policy(algo, {}), load_policy(tmp_path / "ckpt")
    original.reset(seed=0)
    reloaded.reset(seed=0)
    for i in range(0, int(data.ep_end[-1]), 7):
        obs = {"pos": data.obs["pos"][i].numpy()}
        np.testing.assert_array_equal(original.act(obs), reloaded.act(obs))


@pytest.mark.parametrize("field,value,says", [
    ("expectile", 1.0, "(0, 1)"), ("expectile", 0.0, "(0, 1)"), ("beta", 0.0, "greater than 0"),
    ("beta", True, "expected float"), ("gamma", 1.0, "[0, 1)"), ("max_weight", -1.0, "greater than 0"),
    ("target_tau", 0.0, "(0, 1]"), ("reward_shift", math.nan, "nan"), ("critic_hidden", [64, 0], "greater than 0"),
])
def test_bad_settings_are_one_line_errors_naming_the_field(data, field, value, says):
    with pytest.raises(ConfigError) as info:
        algo_class("iql").build({**SMALL, field: value}, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")
    text = str(info.value)
    assert text.startswith(f"launch/x.yaml: algo: field '{field}") and says in text.lower() and "\n" not in text


def test_robolearn_train_and_eval_run_iql(demos, tmp_path, capsys):
    run = tmp_path / "run"
    sets = [f"data.path={demos}", "train.steps=20", "train.checkpoint_every=10", "train.log_every=5",
            "algo.hidden=[32,32]", "algo.critic_hidden=[32,32]"]
    args = ["train", str(LAUNCH_DIR / "graph_reach_iql.yaml"), "--out", str(run), "--seed", "0", "--quiet"]
    assert main(args + [x for s in sets for x in ("--set", s)]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--episodes", "2", "--seed", "0", "--json", str(out), "--horizon", "20", "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 2 and len(result["per_episode"]) == 2 and 0.0 <= result["success_rate"] <= 1.0
    capsys.readouterr()
    bad = ["train", str(LAUNCH_DIR / "graph_reach_iql.yaml"), "--out", str(tmp_path / "bad"), "--quiet"]
    assert main(bad + ["--set", f"data.path={demos}", "--set", "algo.expectile=1.5"]) != 0
    err = capsys.readouterr().err.strip()
    assert "graph_reach_iql.yaml: algo: field 'expectile'" in err and "(0, 1), got 1.5" in err and "\n" not in err
