"""Image policies end to end on tiny synthetic camera episodes: a coloured blob whose position in
the frame determines the action. The keypoint head finds the blob, crops are random in training
and central in evaluation, frames stay uint8 until the encoder, every algorithm trains on image
keys (the encoder's weights with it) and reloads from its checkpoint to identical actions, and
hierarchical goals are made of low-dimensional keys only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robolearn.algos.base import algo_class
from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import Episode
from robolearn.models.vision import CropRandomizer, ImageEncoderConfig, ImageKeyEncoder, SpatialSoftmax
from robolearn.policy import Policy, load_policy, save_checkpoint

SIZE = 24
#: A small encoder: tests train it for a few dozen steps in a second or two.
TINY_IMAGE = {"channels": [8, 16], "downsample": 2, "keypoints": 4, "feature_dim": 8, "crop_size": [20, 20]}
HBC = {"subgoal_horizon": 3, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1, "goal_keys": ["pos"]}
PARAMS = {
    "bc": {"hidden": [32]},
    "bc_rnn": {"hidden": 16, "layers": 1, "seq_len": 4},
    "bcq": {"critic_hidden": [16], "action_vae_hidden": [16], "policy_action_samples": 4, "target_action_samples": 3},
    "diffusion_policy": {"channels": [8], "step_embed_dim": 8, "groups": 4, "kernel_size": 3, "prediction_horizon": 4,
                         "action_horizon": 2},
    "hbc": HBC,
    "iql": {"hidden": [16], "critic_hidden": [16]},
    "iris": {**HBC, "num_goal_samples": 4, "num_value_action_samples": 3,
             "value": {"critic_hidden": [16], "action_vae_hidden": [16], "target_action_samples": 3}},
}


@pytest.fixture(autouse=True)
def one_thread():
    """Convolutions over a few dozen frames: one thread is faster than two fighting a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def frame_with_blob(row: int, col: int, size: int = SIZE) -> np.ndarray:
    """A dark uint8 frame with a 3 x 3 red blob centred at (row, col)."""
    img = np.full((size, size, 3), 20, np.uint8)
    img[row - 1 : row + 2, col - 1 : col + 2] = (230, 40, 40)
    return img


def blob_episodes(n: int = 4, length: int = 10, seed: int = 0, cameras: tuple[str, ...] = ("cam",)) -> list[Episode]:
    """The blob drifts across the frame; each action points from the frame's centre to the blob,
    so only the image says what to do. ``pos`` is a low-dimensional key (a gripper stand-in)."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n):
        start, step = rng.integers(4, SIZE - 5, 2), rng.choice([-1, 1], 2)
        path = np.clip(start + step * np.arange(length + 1)[:, None], 2, SIZE - 3)
        frames = np.stack([frame_with_blob(r, c) for r, c in path])
        centre = (SIZE - 1) / 2
        actions = ((path[:-1, ::-1] - centre) / centre).astype(np.float32)
        obs = {"pos": rng.normal(size=(length + 1, 2)).astype(np.float32), **{c: frames for c in cameras}}
        dones = np.zeros(length, bool)
        dones[-1] = True
        eps.append(Episode(obs=obs, actions=actions, rewards=dones.astype(np.float32), dones=dones, success=True))
    return eps


def build(name: str, data: DemoDataset, **image):
    torch.manual_seed(0)
    params = {**PARAMS[name], "batch_size": 8, "lr": 3e-3, "image_encoder": {**TINY_IMAGE, **image}}
    return algo_class(name).build(params, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")


def observation(row: int = 8, col: int = 15, cameras: tuple[str, ...] = ("cam",)) -> dict[str, np.ndarray]:
    return {"pos": np.array([0.1, -0.2], np.float32), **{c: frame_with_blob(row, col) for c in cameras}}


def same_actions(a: Policy, b: Policy, obs: dict[str, np.ndarray], steps: int = 4) -> None:
    for p in (a, b):
        p.reset(seed=3)
    for _ in range(steps):
        np.testing.assert_array_equal(a.act(obs), b.act(obs))


# --- building blocks ----------------------------------------------------------------------------

def test_spatial_softmax_keypoints_follow_a_blob():
    head = SpatialSoftmax(channels=1, height=9, width=9, keypoints=1, temperature=0.05)
    with torch.no_grad():
        head.to_keypoints.weight.fill_(1.0)
        head.to_keypoints.bias.zero_()

    def keypoint(row: int, col: int) -> np.ndarray:
        maps = torch.zeros(1, 1, 9, 9)
        maps[0, 0, row, col] = 1.0
        return head(maps)[0].detach().numpy()

    grid = np.linspace(-1, 1, 9)
    for row, col in [(0, 0), (4, 6), (8, 2)]:
        np.testing.assert_allclose(keypoint(row, col), [grid[col], grid[row]], atol=1e-3)  # (x, y)
    assert SpatialSoftmax(16, 5, 7, keypoints=6)(torch.rand(3, 16, 5, 7)).shape == (3, 12)


def test_image_encoder_keeps_leading_dimensions_and_takes_only_uint8_frames():
    enc = ImageKeyEncoder("cam", (SIZE, SIZE, 3), ImageEncoderConfig(**TINY_IMAGE))
    frames = torch.from_numpy(np.stack([frame_with_blob(5, 5)] * 6)).reshape(2, 3, SIZE, SIZE, 3)
    assert enc(frames).shape == (2, 3, 8) and enc(frames[0, 0]).shape == (8,)
    with pytest.raises(ConfigError, match="observation encoder: field 'cam': expected uint8 frames, got torch.float32"):
        enc(frames.float())
    with pytest.raises(ConfigError, match=r"field 'cam': expected frames of shape \[24, 24, 3\]"):
        enc(frames.permute(0, 1, 4, 2, 3))


def test_crops_are_random_windows_in_training_and_the_centre_in_eval():
    frames = torch.arange(4 * 10 * 12 * 3, dtype=torch.int64).reshape(4, 10, 12, 3).to(torch.uint8)
    crop = CropRandomizer(10, 12, 6, 8)
    crops = crop(frames, torch.Generator().manual_seed(0))
    assert crops.shape == (4, 6, 8, 3) and crops.dtype == torch.uint8
    windows = {(i, top, left) for i in range(4) for top in range(5) for left in range(5)
               if torch.equal(crops[i], frames[i, top : top + 6, left : left + 8])}
    assert {i for i, _, _ in windows} == set(range(4))  # every crop is a window of its own frame
    again = crop(frames, torch.Generator().manual_seed(0))
    assert torch.equal(again, crops)  # drawn from the generator: a seed reproduces them
    offsets = [crop(frames[:1], torch.Generator().manual_seed(s)) for s in range(8)]
    assert len({o.numpy().tobytes() for o in offsets}) > 1
    crop.eval()
    centre = crop(frames, torch.Generator().manual_seed(5))
    assert centre.shape == crops.shape and torch.equal(centre, frames[:, 2:8, 2:10])


def test_frames_stay_uint8_in_every_batch_until_the_encoder():
    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    gen = torch.Generator().manual_seed(0)
    assert data.obs["cam"].dtype == torch.uint8 and "cam" not in data.normalizers
    assert data.transitions(5, gen)["obs"]["cam"].shape == (5, SIZE, SIZE, 3)
    for batch in (data.transitions(5, gen), data.sequences(5, 4, gen), data.goal_windows(5, 3, gen), data.goal_pairs(5, 3, gen)):
        for part in ("obs", "next_obs", "goal"):
            if part in batch:
                assert batch[part]["cam"].dtype == torch.uint8 and batch[part]["pos"].dtype == torch.float32


def test_normalisers_are_buffers_that_move_with_the_module_but_stay_out_of_the_weights():
    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    algo = build("bc", data)
    names = dict(algo.named_buffers())
    assert "encoder.key_encoders.pos._mean" in names and "encoder.key_encoders.pos._mean" not in algo.state_dict()
    algo.to("meta")
    assert algo.encoder.key_encoders["pos"]._std.device.type == "meta"


# --- training and reloading ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bc", "bc_rnn"])
def test_image_policy_learns_end_to_end_and_reloads_to_identical_actions(name, tmp_path):
    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    algo = build(name, data)
    conv = algo.encoder.key_encoders["cam"].core.trunk[0].weight
    before = conv.detach().clone()
    gen = torch.Generator().manual_seed(0)
    losses = [algo.train_step(data, gen)["loss/policy"] for _ in range(40)]
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8]), losses
    assert not torch.equal(conv.detach(), before)  # the encoder trains with the policy's loss
    save_checkpoint(tmp_path / "ckpt", algo, step=40, meta={}, gen=gen)
    info = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert info["algo_config"]["image_encoder"] == {**ImageEncoderConfig().__dict__, **TINY_IMAGE}
    assert info["obs_spec"]["cam"] == {"shape": [SIZE, SIZE, 3], "dtype": "uint8"}
    same_actions(Policy(algo, {}), load_policy(tmp_path / "ckpt"), observation())


@pytest.mark.parametrize("name", ["bcq", "hbc", "iql", "iris"])
def test_every_algorithm_trains_on_image_keys_and_reloads(name, tmp_path):
    """Two cameras with one shared encoder; the image weights train with the algorithm's loss (the
    low level's for HBC and IRIS, the critic's for BCQ, the policy's for IQL); hierarchical goals are the ``pos`` key."""
    cams = ("front", "wrist")
    data = DemoDataset(blob_episodes(cameras=cams), ["pos", *cams])
    algo = build(name, data, share_across_cameras=True)
    cores = {id(algo.encoder.key_encoders[c].core) for c in cams}
    assert len(cores) == 1 and algo.obs_dim == 2 + 2 * 8
    conv = algo.encoder.key_encoders["front"].core.trunk[0].weight
    before = conv.detach().clone()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert all(np.isfinite(v) for v in algo.train_step(data, gen).values())
    assert not torch.equal(conv.detach(), before)
    save_checkpoint(tmp_path / "ckpt", algo, step=3, meta={})
    reloaded = load_policy(tmp_path / "ckpt")
    same_actions(Policy(algo, {}), reloaded, observation(cameras=cams))
    if name in ("hbc", "iris"):
        assert reloaded.goal_keys == ["pos"] and list(reloaded.current_goal) == ["pos"]


def test_goals_default_to_the_low_dimensional_keys_and_image_goal_keys_are_refused():
    data = DemoDataset(blob_episodes(), ["cam", "pos"])
    params = {**PARAMS["iris"], "goal_keys": None, "image_encoder": TINY_IMAGE}
    algo = algo_class("iris").build(params, data.obs_spec, data.normalizers, data.action_dim)
    assert algo.goal_keys == ["pos"] and algo.goal_dim == 2
    for name in ("hbc", "iris"):
        bad = {**PARAMS[name], "goal_keys": ["pos", "cam"], "image_encoder": TINY_IMAGE}
        with pytest.raises(ConfigError) as info:
            algo_class(name).build(bad, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")
        text = str(info.value)
        assert text.startswith("launch/x.yaml: algo: field 'goal_keys': 'cam' is an image key") and "\n" not in text
    only_images = DemoDataset(blob_episodes(), ["cam"])
    with pytest.raises(ConfigError, match=r"field 'goal_keys': the observation has only image keys \['cam'\]"):
        algo_class("hbc").build({**PARAMS["hbc"], "goal_keys": None, "image_encoder": TINY_IMAGE},
                                only_images.obs_spec, only_images.normalizers, only_images.action_dim)


def with_blob_position(episodes: list[Episode]) -> list[Episode]:
    """Each episode also records ``blob``, the blob's position (what a pose estimator would have
    logged beside the frames): a key for goals, which the policy never reads."""
    for ep in episodes:
        frames = ep.obs["cam"].astype(np.int32)
        red = (frames[..., 0] > 200).astype(np.float32)
        rows, cols = np.indices(red.shape[1:])
        ep.obs["blob"] = np.stack([(red * rows).sum((1, 2)), (red * cols).sum((1, 2))], -1) / red.sum((1, 2))[:, None]
    return episodes


def test_goal_only_keys_train_the_goals_and_the_policy_acts_without_them(tmp_path):
    """``goal_only_keys``: the goals hold a recorded key the policy does not read. Training sees it
    (goals, the value); acting needs only the cameras and proprioception, and the reloaded policy
    plans the same goals, which decode to both goal keys."""
    data = DemoDataset(with_blob_position(blob_episodes()), ["pos", "cam", "blob"])
    params = {**PARAMS["iris"], "goal_keys": ["pos", "blob"], "goal_only_keys": ["blob"], "batch_size": 8,
              "image_encoder": TINY_IMAGE}
    torch.manual_seed(0)
    algo = algo_class("iris").build(params, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")
    assert algo.encoder.keys == ["pos", "cam"] and algo.goal_dim == 4 and algo.obs_dim == 2 + 8
    gen = torch.Generator().manual_seed(0)
    history = [algo.train_step(data, gen) for _ in range(30)]
    assert np.mean([m["loss/goal_vae"] for m in history[-5:]]) < np.mean([m["loss/goal_vae"] for m in history[:5]])
    save_checkpoint(tmp_path / "ckpt", algo, step=30, meta={})
    reloaded = load_policy(tmp_path / "ckpt")
    assert reloaded.obs_keys == ["pos", "cam"]
    same_actions(Policy(algo, {}), reloaded, observation())  # no "blob" in the observation
    goal = reloaded.current_goal
    assert list(goal) == ["pos", "blob"] and goal["blob"].shape == (2,) and np.all(np.isfinite(goal["blob"]))


def test_goal_only_keys_that_are_missing_images_or_not_goals_are_refused():
    data = DemoDataset(with_blob_position(blob_episodes()), ["pos", "cam", "blob"])
    base = {**PARAMS["iris"], "goal_keys": ["pos", "blob"], "goal_only_keys": ["blob"], "image_encoder": TINY_IMAGE}
    cases = [({"goal_only_keys": ["blob", "arm"]}, "goal_only_keys", "expected distinct keys recorded in the demos"),
             ({"goal_only_keys": ["blob", "cam"]}, "goal_only_keys", "'cam' is an image key; goals are low-dimensional"),
             ({"goal_keys": ["pos"]}, "goal_only_keys", "'blob' is not one of goal_keys ['pos']"),
             ({"stall_tolerance": 0.05}, "stall_tolerance", "goal_only_keys ['blob'] are not observed")]
    for change, field, problem in cases:
        with pytest.raises(ConfigError) as info:
            algo_class("iris").build({**base, **change}, data.obs_spec, data.normalizers, data.action_dim, "launch/x.yaml: algo")
        text = str(info.value)
        assert text.startswith(f"launch/x.yaml: algo: field '{field}'") and problem in text and "\n" not in text, text


def test_training_with_goal_only_keys_from_a_demo_folder_reads_them_and_refuses_them_as_inputs(tmp_path):
    import yaml

    from robolearn.data.format import ActionSpec, DemoMeta, DemoWriter, ObsFieldSpec
    from robolearn.train import train_from_launch

    meta = DemoMeta(task="lift", control_hz=20.0, action_spec=ActionSpec(dim=2),
                    obs_spec={"pos": ObsFieldSpec((2,)), "cam": ObsFieldSpec((SIZE, SIZE, 3), "uint8"), "blob": ObsFieldSpec((2,))})
    with DemoWriter(tmp_path / "demos", meta) as writer:
        for ep in with_blob_position(blob_episodes()):
            writer.write_episode(obs=ep.obs, actions=ep.actions, rewards=ep.rewards, dones=ep.dones, success=True)
    algo = {"name": "iris", **PARAMS["iris"], "goal_keys": ["pos", "blob"], "goal_only_keys": ["blob"], "batch_size": 8,
            "image_encoder": TINY_IMAGE}

    def launch(obs_keys):
        path = tmp_path / "lift_iris_tiny_image.yaml"
        path.write_text(yaml.safe_dump({"task": "lift", "data": {"path": str(tmp_path / "demos"), "obs_keys": obs_keys},
                                        "algo": algo, "train": {"steps": 4, "log_every": 2, "checkpoint_every": 4, "threads": 1}}))
        return path

    run = train_from_launch(launch(["pos", "cam"]), tmp_path / "run", progress=False)
    policy = load_policy(run)
    assert policy.obs_keys == ["pos", "cam"] and policy.goal_keys == ["pos", "blob"]
    assert np.all(np.isfinite(policy.act(observation())))
    with pytest.raises(ConfigError, match=r"field 'algo.goal_only_keys': 'blob' is in data.obs_keys too"):
        train_from_launch(launch(["pos", "cam", "blob"]), tmp_path / "run2", progress=False)


def test_policy_refuses_frames_that_are_not_the_trained_uint8_hwc(tmp_path):
    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    save_checkpoint(tmp_path / "ckpt", build("bc", data), step=0, meta={})
    policy = load_policy(tmp_path / "ckpt")
    obs = observation()
    with pytest.raises(ConfigError, match=r"checkpoint.json: field 'cam': frame 'cam' is float32; .* uint8"):
        policy.act({**obs, "cam": obs["cam"].astype(np.float32) / 255})
    with pytest.raises(ConfigError, match=r"field 'cam': frame 'cam' has shape \(3, 24, 24\)"):
        policy.act({**obs, "cam": obs["cam"].transpose(2, 0, 1).copy()})


def test_bad_image_encoder_settings_name_the_field():
    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    for setting, match in [({"crop_size": [30, 20]}, "image_encoder.crop_size': .* larger than the 24 x 24 frames of 'cam'"),
                           ({"crop_size": [20]}, r"image_encoder.crop_size': expected \[height, width\]"),
                           ({"downsample": 3}, "image_encoder.downsample': 3 stride-2 layers"),
                           ({"channels": []}, "image_encoder.channels': expected at least one convolution"),
                           ({"crop": False}, "image_encoder.crop_size': \\[20, 20\\] is set but image_encoder.crop is false"),
                           ({"keypoints": 0}, "image_encoder.keypoints': expected a number greater than 0"),
                           ({"group_norm": 1}, "image_encoder.group_norm': expected bool")]:
        with pytest.raises(ConfigError, match=f"launch/x.yaml: algo: field '{match}"):
            build("bc", data, **setting)


def test_training_from_an_image_demo_folder_writes_a_policy_that_acts_on_camera_frames(tmp_path):
    """The whole path: a demo folder with a camera key on disk, ``robolearn train``'s entry point on
    a launch file that names it, the checkpoint it writes, and that checkpoint acting on a frame."""
    import yaml

    from robolearn.data.format import ActionSpec, DemoMeta, DemoWriter, ObsFieldSpec
    from robolearn.train import train_from_launch

    meta = DemoMeta(task="lift", control_hz=20.0, action_spec=ActionSpec(dim=2),
                    obs_spec={"pos": ObsFieldSpec((2,)), "cam": ObsFieldSpec((SIZE, SIZE, 3), "uint8")})
    with DemoWriter(tmp_path / "demos", meta) as writer:
        for ep in blob_episodes():
            writer.write_episode(obs=ep.obs, actions=ep.actions, rewards=ep.rewards, dones=ep.dones, success=True)
    algo = {"name": "bc_rnn", **PARAMS["bc_rnn"], "batch_size": 8, "lr": 3e-3, "image_encoder": TINY_IMAGE}
    launch = tmp_path / "lift_bc_rnn_tiny_image.yaml"
    launch.write_text(yaml.safe_dump({"task": "lift", "data": {"path": str(tmp_path / "demos"), "obs_keys": ["pos", "cam"]},
                                      "algo": algo, "train": {"steps": 40, "log_every": 10, "checkpoint_every": 40, "threads": 1}}))
    run = train_from_launch(launch, tmp_path / "run", progress=False)
    losses = [json.loads(line)["loss/policy"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    policy = load_policy(run)
    assert policy.obs_spec["cam"].kind == "image"
    action = policy.act(observation())
    assert action.shape == (2,) and np.all(np.isfinite(action))


def test_resumed_training_draws_the_same_crops_as_an_unbroken_run(tmp_path):
    """Crops come from the training generator, which checkpoints save: 6 steps in one go and 3 + 3
    across a checkpoint give the same weights, bit for bit."""
    from robolearn.policy import load_algo, restore_training_state

    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    unbroken, gen = build("bc", data), torch.Generator().manual_seed(0)
    for _ in range(6):
        unbroken.train_step(data, gen)
    first, gen = build("bc", data), torch.Generator().manual_seed(0)
    for _ in range(3):
        first.train_step(data, gen)
    save_checkpoint(tmp_path / "ckpt", first, step=3, meta={}, gen=gen)
    resumed, info, ckpt = load_algo(tmp_path / "ckpt")
    resumed.train()
    gen = torch.Generator().manual_seed(99)
    assert restore_training_state(resumed, ckpt, info, gen) == 3
    for _ in range(3):
        resumed.train_step(data, gen)
    for name, tensor in unbroken.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


@pytest.mark.parametrize("shape", [[100_000, 100_000, 3], [0, 24, 3]])
def test_a_checkpoint_claiming_huge_or_empty_frames_is_refused_before_allocating(tmp_path, shape):
    """The keypoint grids grow with the frame while no weight does: a crafted observation spec
    must not make loading allocate what the weights file never paid for."""
    from robolearn.policy import CheckpointError

    data = DemoDataset(blob_episodes(), ["pos", "cam"])
    save_checkpoint(tmp_path / "ckpt", build("bc", data), step=0, meta={})
    info_path = tmp_path / "ckpt" / "checkpoint.json"
    info = json.loads(info_path.read_text())
    info["obs_spec"]["cam"]["shape"] = shape
    info["algo_config"]["image_encoder"]["crop_size"] = None
    info_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"checkpoint.json: field 'obs_spec.cam': frames of shape .* expected height"):
        load_policy(tmp_path / "ckpt")
