"""The observation encoder: for low-dimensional keys it is the flattened observation standardised
by one normaliser over the whole vector, bit for bit; keys are read by name; hierarchical
algorithms' goals are made of ``goal_keys``; image keys get a convolutional encoder (its own tests:
tests/test_image_policies.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robolearn.algos.base import algo_class
from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import Episode
from robolearn.models.encoders import Normalizer, ObservationEncoder, ObsKey
from robolearn.policy import Policy, load_policy, save_checkpoint

SHAPES = [(), (1,), (3,), (2, 2)]
HBC = {"subgoal_horizon": 3, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1}
IRIS = {**HBC, "num_goal_samples": 4, "num_value_action_samples": 3,
        "value": {"critic_hidden": [16], "action_vae_hidden": [16]}}


def episodes(shapes: dict[str, tuple[int, ...]], n: int = 3, length: int = 8, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n):
        obs = {k: rng.normal(rng.uniform(-5, 5), rng.uniform(0.01, 3), (length + 1, *s)).astype(np.float32) for k, s in shapes.items()}
        dones = np.zeros(length, bool)
        dones[-1] = True
        eps.append(Episode(obs=obs, actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                           rewards=dones.astype(np.float32), dones=dones, success=True))
    return eps


def flat_reference(eps: list[Episode], keys: list[str]) -> np.ndarray:
    """Every row flattened, keys concatenated in order and standardised by one normaliser fitted on
    the concatenation: the single flat vector the algorithms are trained on."""
    flat = np.concatenate([np.concatenate([ep.obs[k].reshape(len(ep.obs[k]), -1).astype(np.float32) for k in keys], -1)
                           for ep in eps], 0)
    return Normalizer.fit(flat)(flat).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_low_dim_features_are_the_normalised_flat_vector_bit_for_bit(shapes, seed):
    spec = {f"k{i}": s for i, s in enumerate(shapes)}
    eps = episodes(spec, seed=seed)
    keys = list(spec)[::-1]  # the order asked for, not the recorded one
    data = DemoDataset(eps, keys)
    encoder = ObservationEncoder(data.obs_spec, data.normalizers)
    obs = data.observations(torch.arange(len(data.rewards)))
    features = encoder(obs)
    np.testing.assert_array_equal(features.numpy(), flat_reference(eps, keys))
    # ``forward`` standardises the concatenation at once; key by key is the same arithmetic, and
    # float64 inputs (the per-key path, converting each key) give the same numbers too.
    assert torch.equal(encoder.encode_keys(obs, encoder.keys), features)
    assert torch.equal(encoder({k: v.double() for k, v in obs.items()}), features)


def test_policy_reads_keys_by_name_in_the_trained_order(tmp_path):
    """An observation with extra keys, in another order, acts exactly as the trained keys alone."""
    data = DemoDataset(episodes({"a": (2,), "b": (), "c": (3,)}), ["c", "a"])
    torch.manual_seed(0)
    algo = algo_class("bc").build({"hidden": [16]}, data.obs_spec, data.normalizers, data.action_dim)
    save_checkpoint(tmp_path / "ckpt", algo, step=0, meta={})
    policy = load_policy(tmp_path / "ckpt")
    assert policy.obs_keys == ["c", "a"] and policy.obs_spec == {"c": ObsKey((3,)), "a": ObsKey((2,))}
    rng = np.random.default_rng(1)
    for _ in range(3):
        a, c = rng.normal(size=2).astype(np.float32), rng.normal(size=3).astype(np.float32)
        exact = policy.act({"c": c, "a": a})
        np.testing.assert_array_equal(policy.act({"b": np.float32(3.0), "a": a, "c": c, "x": np.zeros(9)}), exact)
    with pytest.raises(ConfigError, match="no key 'c'"):
        policy.act({"a": a})


@pytest.mark.parametrize("name", ["hbc", "iris"])
def test_goal_keys_make_up_the_goal(name, tmp_path):
    """With ``goal_keys`` the goal cVAE proposes only those keys' features, the low level reads them
    beside the whole observation, and the policy's goal is a dict of those keys."""
    data = DemoDataset(episodes({"arm": (3,), "cube": (2,)}), ["arm", "cube"])
    params = {**(HBC if name == "hbc" else IRIS), "goal_keys": ["cube"]}
    torch.manual_seed(0)
    algo = algo_class(name).build(params, data.obs_spec, data.normalizers, data.action_dim)
    assert (algo.obs_dim, algo.goal_dim) == (5, 2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert all(np.isfinite(v) for v in algo.train_step(data, gen).values())
    save_checkpoint(tmp_path / "ckpt", algo, step=3, meta={})
    original, reloaded = Policy(algo, {}), load_policy(tmp_path / "ckpt")
    assert reloaded.goal_keys == ["cube"]
    obs = {"arm": np.ones(3, np.float32), "cube": np.array([0.5, -0.5], np.float32)}
    for p in (original, reloaded):
        p.reset(seed=2)
    for _ in range(4):
        np.testing.assert_array_equal(original.act(obs), reloaded.act(obs))
    goal = reloaded.current_goal
    assert list(goal) == ["cube"] and goal["cube"].shape == (2,)


def test_default_goal_keys_are_the_whole_observation():
    data = DemoDataset(episodes({"arm": (3,), "cube": (2,)}), ["cube", "arm"])
    algo = algo_class("hbc").build(HBC, data.obs_spec, data.normalizers, data.action_dim)
    assert algo.goal_keys == ["cube", "arm"] and algo.goal_dim == algo.obs_dim == 5


@pytest.mark.parametrize("bad", [["wrist"], [], ["cube", "cube"]])
def test_goal_keys_must_be_distinct_observation_keys(bad):
    data = DemoDataset(episodes({"arm": (3,), "cube": (2,)}), ["arm", "cube"])
    with pytest.raises(ConfigError, match=r"launch/x.yaml: algo.*goal_keys"):
        algo_class("hbc").build({**HBC, "goal_keys": bad}, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")


def test_image_keys_get_a_convolutional_encoder_and_bad_crops_are_refused():
    spec = {"pos": ObsKey((2,)), "agentview_image": ObsKey((84, 84, 3), "uint8")}
    norms = {"pos": Normalizer(np.zeros(2, np.float32), np.ones(2, np.float32))}
    algo = algo_class("bc").build({"hidden": [8], "image_encoder": {"feature_dim": 16}}, spec, norms, 2, "launch/x.yaml: algo")
    assert algo.obs_dim == 2 + 16 and algo.encoder.trainable
    with pytest.raises(ConfigError, match=r"launch/x.yaml: algo: field 'image_encoder.crop_size'.*larger than the 84 x 84 frames of 'agentview_image'"):
        algo_class("bc").build({"hidden": [8], "image_encoder": {"crop_size": [90, 80]}}, spec, norms, 2, "launch/x.yaml: algo")


def test_dataset_keeps_image_keys_as_uint8_without_statistics():
    eps = episodes({"pos": (2,)})
    for ep in eps:
        ep.obs["cam"] = np.zeros((len(ep.obs["pos"]), 4, 4, 3), np.uint8)
    data = DemoDataset(eps, ["pos", "cam"])
    assert data.obs_spec["cam"] == ObsKey((4, 4, 3), "uint8") and data.obs["cam"].dtype == torch.uint8
    assert set(data.normalizers) == {"pos"}
