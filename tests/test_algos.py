"""Algorithms on tiny synthetic demos: losses fall, IRIS ranks goals by value, checkpoints
reload exactly, and one seed gives one set of weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.algos.base import algo_class, algo_names
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import Episode
from robolearn.config import ConfigError
from robolearn.models.encoders import ObservationEncoder
from robolearn.policy import Policy, load_policy, save_checkpoint

SMALL = {
    "bc": {"hidden": [64, 64]},
    "bc_rnn": {"hidden": 64, "layers": 1, "seq_len": 5},
    "bcq": {"critic_hidden": [64, 64], "action_vae_hidden": [64, 64], "tau": 0.05},
    "diffusion_policy": {"channels": [16], "step_embed_dim": 16, "groups": 4, "kernel_size": 3, "prediction_horizon": 8,
                         "action_horizon": 4, "lr": 3e-3},
    "hbc": {"subgoal_horizon": 5, "goal_vae_hidden": [64, 64], "low_hidden": 64, "low_layers": 1},
    "iql": {"hidden": [64, 64], "critic_hidden": [64, 64], "target_tau": 0.05},
    "iris": {"subgoal_horizon": 5, "goal_vae_hidden": [64, 64], "low_hidden": 64, "low_layers": 1,
             "num_goal_samples": 16, "num_value_action_samples": 8,
             "value": {"critic_hidden": [64, 64], "action_vae_hidden": [64, 64], "tau": 0.05}},
}


def chain_episodes(n: int = 20, seed: int = 0) -> list[Episode]:
    """A point walks from x≈0 to x=1 in steps of ~0.1; reward 1 on arrival."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n):
        xs = [rng.uniform(0, 0.1)]
        while xs[-1] < 1.0:
            xs.append(min(1.0, xs[-1] + rng.uniform(0.08, 0.12)))
        pos = np.array([[x, 0.5 * x] for x in xs], np.float32)
        actions = np.clip(np.diff(pos, axis=0) * 10 - 1.0 + rng.normal(0, 0.01, (len(xs) - 1, 2)), -1, 1).astype(np.float32)
        T = len(actions)
        rewards = np.zeros(T, np.float32)
        rewards[-1] = 1.0
        dones = np.zeros(T, bool)
        dones[-1] = True
        eps.append(Episode(obs={"pos": pos}, actions=actions, rewards=rewards, dones=dones, success=True))
    return eps


@pytest.fixture(scope="module")
def data():
    return DemoDataset(chain_episodes(), ["pos"])


def features(data, obs) -> torch.Tensor:
    """What an algorithm trained on ``data`` sees of ``obs`` (a dict of arrays or tensors)."""
    return ObservationEncoder(data.obs_spec, data.normalizers)({k: torch.as_tensor(v) for k, v in obs.items()})


def row(data, i: int) -> torch.Tensor:
    """The features of row ``i`` of the dataset."""
    return features(data, data.observations(torch.tensor(i)))


def build(name: str, data, seed: int = 0):
    torch.manual_seed(seed)
    return algo_class(name).build(SMALL[name], data.obs_spec, data.normalizers, data.action_dim)


def first_loss_key(metrics):
    return "loss/policy" if "loss/policy" in metrics else "loss/low" if "loss/low" in metrics else "loss/action_vae"


@pytest.mark.parametrize("name", algo_names())
def test_loss_falls(name, data):
    algo = build(name, data)
    gen = torch.Generator().manual_seed(0)
    history = [algo.train_step(data, gen) for _ in range(150)]
    key = first_loss_key(history[0])
    early = np.mean([m[key] for m in history[:10]])
    late = np.mean([m[key] for m in history[-10:]])
    assert late < 0.7 * early, f"{name}: {key} went from {early:.4f} to {late:.4f}"


def iris_with(kind: str, data):
    torch.manual_seed(0)
    settings = {**SMALL["iris"], "value": {**SMALL["iris"]["value"], "kind": kind}}
    return algo_class("iris").build(settings, data.obs_spec, data.normalizers, data.action_dim)


@pytest.mark.parametrize("kind", ["bcq", "expectile"])
def test_iris_picks_higher_value_goal(data, kind):
    algo = iris_with(kind, data)
    gen = torch.Generator().manual_seed(1)
    for _ in range(600):
        algo.train_step(data, gen)
    near = features(data, {"pos": np.array([0.95, 0.475], np.float32)})
    far = features(data, {"pos": np.array([0.05, 0.025], np.float32)})
    for order in ([near, far], [far, near]):
        candidates = torch.stack(order)
        algo.sample_goals = lambda obs, n, c=candidates: c  # hand-made candidates instead of cVAE samples
        algo.reset_policy(torch.Generator().manual_seed(0))
        chosen = algo.choose_goal(far)
        assert torch.equal(chosen, near), f"scores {algo.last_scores.tolist()}"
        assert algo.last_scores[0 if order[0] is near else 1] > algo.last_scores[1 if order[0] is near else 0]


@pytest.mark.parametrize("tolerance", [None, 0.05])
def test_iris_after_a_stall_passes_over_candidates_towards_the_goal_it_did_not_approach(data, tolerance):
    """The best-scored candidate is the goal. When the next re-plan finds the state where the last
    one was planned (a stall), candidates from the full prior join the clipped ones and those nearer
    to that goal than to here are passed over (with ``stall_tolerance``); once the state moves, the
    best-scored clipped candidate is the goal again."""
    algo = algo_class("iris").build({**SMALL["iris"], "stall_tolerance": tolerance}, data.obs_spec, data.normalizers,
                                    data.action_dim)
    at = {x: features(data, {"pos": np.array(x, np.float32)}) for x in [(0.3, 0.15), (0.6, 0.3), (0.55, 0.3), (0.15, 0.1), (0.2, 0.05)]}
    here, best, beside, other, wide_only = at.values()
    clipped = torch.stack([other, beside, best])  # best scored highest, beside next to it, other the other way
    full_prior = torch.stack([wide_only, best])  # the full prior's: one further the other way
    score = {(0.6, 0.3): 0.9, (0.55, 0.3): 0.8, (0.2, 0.05): 0.5, (0.15, 0.1): 0.1}
    algo.sample_goals = lambda obs, n, clip=True: clipped if clip else full_prior
    algo.score_goals = lambda goals: torch.tensor([next(v for x, v in score.items() if torch.equal(g, at[x])) for g in goals])
    algo.reset_policy(torch.Generator().manual_seed(0))
    first = algo.plan(here)
    assert torch.equal(first.goal, best) and torch.equal(first.origin, here)
    algo.adopt(first)
    stalled = algo.plan(here + 1e-3)  # moved less than the tolerance
    assert torch.equal(stalled.goal, best if tolerance is None else wide_only)
    assert stalled.candidates.shape[0] == (3 if tolerance is None else 5)
    algo.adopt(stalled)
    moved = algo.plan(here + 0.5)
    assert torch.equal(moved.goal, best)
    algo.reset_policy(torch.Generator().manual_seed(0))  # a new episode forgets the pursued goal
    assert torch.equal(algo.plan(here).goal, best)


@pytest.mark.parametrize("name", algo_names())
def test_checkpoint_reload_gives_identical_actions(name, data, tmp_path):
    algo = build(name, data)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        algo.train_step(data, gen)
    save_checkpoint(tmp_path / "ckpt", algo, step=5, meta={"task": "synthetic"})
    original = Policy(algo, {})
    reloaded = load_policy(tmp_path)
    original.reset(seed=3)
    reloaded.reset(seed=3)
    for x in np.linspace(0, 1, 12):
        obs = {"pos": np.array([x, 0.5 * x], np.float32)}
        np.testing.assert_array_equal(original.act(obs), reloaded.act(obs))


def test_iris_expectile_selector_scores_in_sample_and_reloads_to_identical_plans(data, tmp_path):
    algo = iris_with("expectile", data)
    assert not hasattr(algo.value, "action_vae")  # nothing sampled: V(g) is one network
    gen = torch.Generator().manual_seed(0)
    history = [algo.train_step(data, gen) for _ in range(150)]
    assert np.mean([m["loss/state_value"] for m in history[-10:]]) < np.mean([m["loss/state_value"] for m in history[:10]])
    save_checkpoint(tmp_path / "ckpt", algo, step=150, meta={"task": "synthetic"})
    reloaded = load_policy(tmp_path).algo
    obs = row(data, 3)
    for a in (algo, reloaded):
        a.reset_policy(torch.Generator().manual_seed(4))
    plans = [a.plan(obs) for a in (algo, reloaded)]
    assert torch.equal(plans[0].goal, plans[1].goal) and torch.equal(plans[0].scores, plans[1].scores)
    torch.testing.assert_close(plans[0].scores, algo.value.v(plans[0].candidates).squeeze(-1))


def test_goal_batch_size_sizes_the_goal_cvae_and_value_updates_apart_from_the_low_level(data):
    algo = algo_class("iris").build({**SMALL["iris"], "batch_size": 6, "goal_batch_size": 40}, data.obs_spec,
                                    data.normalizers, data.action_dim)
    sizes: dict[str, list[int]] = {}

    class Recording:
        def __getattr__(self, name):
            attr = getattr(data, name)
            if name not in ("goal_pairs", "goal_windows", "transitions"):
                return attr
            return lambda batch, *a, **k: sizes.setdefault(name, []).append(batch) or attr(batch, *a, **k)

    algo.train_step(Recording(), torch.Generator().manual_seed(0))
    assert sizes == {"goal_pairs": [40], "goal_windows": [6], "transitions": [40]}


def test_iris_refuses_an_unknown_value_kind(data):
    with pytest.raises(ConfigError, match=r"value\.kind"):
        algo_class("iris").build({"value": {"kind": "cql"}}, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")


def test_same_seed_same_weights(data):
    def weights(seed):
        algo = build("iris", data, seed)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(10):
            algo.train_step(data, gen)
        return algo.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unknown_config_key_names_it(data):
    from robolearn.config import ConfigError

    with pytest.raises(ConfigError, match="hiden"):
        algo_class("bc").build({"hiden": [3]}, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")


def test_policy_rejects_an_observation_of_the_wrong_shape(data, tmp_path):
    algo = build("bc", data)
    save_checkpoint(tmp_path / "ckpt", algo, step=0, meta={"task": "synthetic"})
    policy = load_policy(tmp_path)
    policy.act({"pos": np.zeros(2, np.float32)})  # the trained shape is accepted
    with pytest.raises(ConfigError) as err:
        policy.act({"pos": np.zeros(3, np.float32)})
    msg = str(err.value)
    assert "checkpoint.json" in msg and "'pos'" in msg and "(3,)" in msg and "(2,)" in msg
    with pytest.raises(ConfigError, match="no key 'pos'"):
        policy.act({"position": np.zeros(2, np.float32)})


def test_return_bounds_sparse_and_dense(data):
    assert data.return_bounds(0.99) == (0.0, 1.0)  # one terminal reward of 1 per episode
    dense = chain_episodes(3)
    for ep in dense:
        ep.rewards[:] = 0.5  # rewards on non-terminal steps: the infinite-horizon bound applies
    lo, hi = DemoDataset(dense, ["pos"]).return_bounds(0.9)
    assert lo == 0.0 and hi == pytest.approx(5.0)


def test_clipped_critic_targets_stay_within_the_return_bounds(data):
    """An optimistic target network (every Q = 3) would teach Q > 1 on sparse-reward data; the
    clipped target cannot exceed the best achievable return, 1."""
    params = {**SMALL["bcq"], "clip_target_to_return_bounds": True, "mc_return_floor": False}
    algo = algo_class("bcq").build(params, data.obs_spec, data.normalizers, data.action_dim)
    with torch.no_grad():
        for p in algo.bcq.target.parameters():
            p.zero_()
        for critic in algo.bcq.target.critics:
            list(critic.parameters())[-1].fill_(3.0)  # the output bias: Q = 3 everywhere
    gen = torch.Generator().manual_seed(0)
    batch = algo.bcq.sample(data, 64, gen, algo.encode)
    m = algo.bcq.update(batch, gen)
    assert m["value/target_mean"] <= 1.0 + 1e-6
    algo_plain = algo_class("bcq").build({**params, "clip_target_to_return_bounds": False}, data.obs_spec, data.normalizers, data.action_dim)
    algo_plain.bcq.target.load_state_dict(algo.bcq.target.state_dict())
    m_plain = algo_plain.bcq.update(algo_plain.bcq.sample(data, 64, torch.Generator().manual_seed(0), algo_plain.encode), gen)
    assert m_plain["value/target_mean"] > 2.0  # the same optimistic target, unclipped


def test_policy_to_observation_inverts_the_encoder_with_batch_dims():
    from robolearn.models.encoders import Normalizer, ObsKey

    spec = {"a": ObsKey((1,)), "b": ObsKey((2,))}
    norms = {"a": Normalizer(np.array([1.0], np.float32), np.array([2.0], np.float32)),
             "b": Normalizer(np.array([-2.0, 0.5], np.float32), np.array([0.5, 4.0], np.float32))}
    policy = Policy(algo_class("hbc").build(SMALL["hbc"], spec, norms, 2), {})
    obs = [{"a": np.array([0.3], np.float32), "b": np.array([4.0, -1.0], np.float32)},
           {"a": np.array([-7.0], np.float32), "b": np.array([0.0, 2.5], np.float32)}]
    flat = np.stack([policy.features(o).numpy() for o in obs])
    back = policy.to_observation(torch.from_numpy(flat))
    assert back["a"].shape == (2, 1) and back["b"].shape == (2, 2)
    for i, o in enumerate(obs):
        for k in o:
            np.testing.assert_allclose(back[k][i], o[k], rtol=1e-6)
    single = policy.to_observation(flat[1])
    np.testing.assert_allclose(single["b"], obs[1]["b"], rtol=1e-6)


@pytest.mark.parametrize("replan_every, expected", [(None, [0, 5, 10]), (2, [0, 2, 4, 6, 8, 10]), (1, list(range(12)))])
def test_hbc_replans_every_replan_every_steps_and_resets_the_lstm(data, replan_every, expected):
    """Goals stay subgoal_horizon (5) steps ahead; only how often the high level picks one changes."""
    algo = algo_class("iris").build({**SMALL["iris"], "replan_every": replan_every}, data.obs_spec, data.normalizers, data.action_dim)
    algo.reset_policy(torch.Generator().manual_seed(0))
    plans, fresh_lstm = [], []
    plan, low = algo.plan, algo.low.forward

    def counted(obs):
        plans.append(algo.steps)
        return plan(obs)

    def recorded(x, state=None):
        fresh_lstm.append(state is None)
        return low(x, state)

    algo.plan, algo.low.forward = counted, recorded
    for _ in range(12):
        algo.act(row(data, 0))
    assert plans == expected
    assert [t for t in range(12) if algo.needs_plan(t)] == expected  # the schedule a pipelined runner reads
    assert [t for t, fresh in enumerate(fresh_lstm) if fresh] == expected


@pytest.mark.parametrize("name", ["hbc", "iris"])
def test_act_is_plan_adopt_and_act_on_plan_composed(name, data):
    """``act`` and the planning interface called step by step give the same actions from the same
    seed: a runner that drives the pieces itself (the pipelined planner, the Lift probe) acts as
    the policy does."""
    algo = algo_class(name).build({**SMALL[name], "replan_every": 2}, data.obs_spec, data.normalizers, data.action_dim)
    obs = [row(data, i) for i in range(7)]
    algo.reset_policy(torch.Generator().manual_seed(4))
    composed = [algo.act(o) for o in obs]
    algo.reset_policy(torch.Generator().manual_seed(4))
    pieces, chosen = [], []
    for t, o in enumerate(obs):
        if algo.needs_plan(t):
            p = algo.plan(o)
            chosen.append(p)
            algo.adopt(p)
        pieces.append(algo.act_on_plan(o))
    for a, b in zip(composed, pieces):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(chosen) == 4 and algo.steps == 7
    if name == "iris":  # the plan carries what it was chosen from
        p = chosen[0]
        assert p.candidates.shape[0] == SMALL["iris"]["num_goal_samples"] and p.scores.shape == p.candidates.shape[:1]
        torch.testing.assert_close(p.goal, p.candidates[p.scores.argmax()])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_hbc_replan_every_must_be_a_positive_step_count(data, bad):
    with pytest.raises(ConfigError, match="replan_every"):
        algo_class("hbc").build({**SMALL["hbc"], "replan_every": bad}, data.obs_spec, data.normalizers, data.action_dim)



@pytest.mark.parametrize("name", ["hbc", "iris"])
def test_retired_low_goal_input_loads_at_its_default_and_is_refused_otherwise(name, data, tmp_path):
    """Checkpoints written before ``low_goal_input`` went state ``goal``: they still load and act
    as before; ``offset`` asked for a behaviour that is gone and is refused, naming the key."""
    import json

    algo = algo_class(name).build({**SMALL[name], "low_goal_input": "goal"}, data.obs_spec, data.normalizers, data.action_dim)
    assert not hasattr(algo.cfg, "low_goal_input")
    save_checkpoint(tmp_path / "ckpt", algo, step=1, meta={"task": "synthetic"})
    info_path = tmp_path / "ckpt" / "checkpoint.json"
    info = json.loads(info_path.read_text())
    info["algo_config"]["low_goal_input"] = "goal"
    info_path.write_text(json.dumps(info))
    original, reloaded = Policy(algo, {}), load_policy(tmp_path / "ckpt")
    original.reset(seed=3)
    reloaded.reset(seed=3)
    for x in np.linspace(0, 1, 6):
        obs = {"pos": np.array([x, 0.5 * x], np.float32)}
        np.testing.assert_array_equal(original.act(obs), reloaded.act(obs))
    with pytest.raises(ConfigError, match="launch/x.yaml: algo.*low_goal_input.*was removed"):
        algo_class(name).build({**SMALL[name], "low_goal_input": "offset"}, data.obs_spec, data.normalizers,
                               data.action_dim, "launch/x.yaml: algo")
