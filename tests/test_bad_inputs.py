"""A corpus of bad numbers at every door data and settings come in by: demo-folder episodes and
meta.json, robomimic HDF5 files, LeRobot folders, launch files, and a training run whose loss
turns NaN. Each must stop with one error naming the file and the field (the step and the loss for
training), and nothing trained on the bad number may be saved."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.cli import main
from robolearn.config import ConfigError, from_dict
from robolearn.data.format import DemoFormatError, DemoReader, DemoWriter
from robolearn.launch import LaunchConfig, load_launch
from test_format import make_episode, make_meta, raw_arrays, write_raw

# --------------------------------------------------------------------------- demo folders


def _set(key, value):
    def change(arrays):
        arrays[key] = value(arrays) if callable(value) else value
    return change


def _poke(key, index, value):
    def change(arrays):
        arr = arrays[key].copy()
        arr[index] = value
        arrays[key] = arr
    return change


EPISODE_CORPUS = {
    "success stored as the string 'False'": (_set("success", np.asarray("False")), "success", "flag"),
    "success 0.5": (_set("success", np.asarray(0.5)), "success", "flag"),
    "NaN reward": (_poke("rewards", 2, np.nan), "rewards", "NaN"),
    "integer rewards": (_set("rewards", lambda a: a["rewards"].astype(np.int64)), "rewards", "float"),
    "dones of 0.5": (_set("dones", lambda a: np.full(a["dones"].shape, 0.5)), "dones", "0/1"),
    "dones of 2": (_set("dones", lambda a: np.full(a["dones"].shape, 2, np.int64)), "dones", "0/1"),
    "action out of bounds": (_poke("actions", (1, 0), 1.5), "actions", "outside the action spec"),
    "absurd action": (_poke("actions", (3, 1), 1e30), "actions", "outside the action spec"),
    "NaN timestamp": (_poke("timestamps", 2, np.nan), "timestamps", "finite"),
    "timestamps going back": (_poke("timestamps", 3, 0.0), "timestamps", "backwards"),
    "NaN state": (_poke("states", 1, np.nan), "states", "NaN"),
}


@pytest.mark.parametrize("case", sorted(EPISODE_CORPUS))
def test_bad_episode_file_names_the_file_and_field(tmp_path, case):
    change, field, words = EPISODE_CORPUS[case]
    folder = tmp_path / "demos"
    DemoWriter(folder, make_meta()).write_episode(**make_episode())
    ep = make_episode(seed=1)
    arrays = {**raw_arrays(ep), "states": ep["states"], "timestamps": ep["timestamps"]}
    change(arrays)
    write_raw(folder, 1, arrays)
    with pytest.raises(DemoFormatError) as info:
        DemoReader(folder).load(1)
    assert info.value.field == field and Path(info.value.path).name == "episode_000001.npz"
    assert words in info.value.problem and "\n" not in str(info.value)


def test_action_within_the_bound_slack_is_kept(tmp_path):
    folder = tmp_path / "demos"
    ep = make_episode()
    ep["actions"][0, 0] = 1.005  # float rounding / device overshoot, not a wrong unit
    DemoWriter(folder, make_meta()).write_episode(**ep)
    assert DemoReader(folder).load(0).actions[0, 0] == pytest.approx(1.005)


def test_the_writer_refuses_a_nan_reward_before_it_lands(tmp_path):
    ep = make_episode()
    ep["rewards"][1] = np.nan
    writer = DemoWriter(tmp_path / "demos", make_meta())
    with pytest.raises(DemoFormatError, match="rewards"):
        writer.write_episode(**ep)
    assert not list((tmp_path / "demos" / "episodes").glob("*.npz"))


META_CORPUS = {
    "control_hz 0": ({"control_hz": 0}, "control_hz"),
    "control_hz -10": ({"control_hz": -10}, "control_hz"),
    "control_hz as text": ({"control_hz": "20"}, "control_hz"),
    "control_hz true": ({"control_hz": True}, "control_hz"),
    "control_hz NaN": ({"control_hz": float("nan")}, "control_hz"),
    "overlapping splits": ({"split": {"train": [0, 1], "valid": [1]}}, "split.valid"),
    "index listed twice": ({"split": {"train": [0, 0]}}, "split.train"),
    "index as text": ({"split": {"train": ["0"]}}, "split.train"),
    "negative index": ({"split": {"train": [-1]}}, "split.train"),
    "action dim as text": ({"action_spec": {"dim": "2"}}, "action_spec.dim"),
    "action low above high": ({"action_spec": {"dim": 2, "low": 1.0, "high": -1.0}}, "action_spec.low"),
    "action bound infinite": ({"action_spec": {"dim": 2, "high": float("inf")}}, "action_spec.high"),
    "fractional obs shape": ({"obs_spec": {"pos": {"shape": [2.5], "dtype": "float32"}}}, "obs_spec.pos.shape"),
    "format_version true": ({"format_version": True}, "format_version"),
    "extra as a list": ({"extra": ["env"]}, "extra"),
    "recorded env as text": ({"extra": {"env": "horizon=200"}}, "extra.env"),
}


@pytest.mark.parametrize("case", sorted(META_CORPUS))
def test_bad_meta_json_names_the_field(tmp_path, case):
    change, field = META_CORPUS[case]
    folder = tmp_path / "demos"
    w = DemoWriter(folder, make_meta())
    w.write_episode(**make_episode())
    w.write_episode(**make_episode(seed=1))
    meta = {**json.loads((folder / "meta.json").read_text()), **change}
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DemoFormatError) as info:
        DemoReader(folder)
    assert info.value.field == field and info.value.path.endswith("meta.json")


# --------------------------------------------------------------------------- robomimic


h5py = pytest.importorskip("h5py")


def _robomimic(tmp_path: Path, change) -> Path:
    from test_convert import write_robomimic

    src = tmp_path / "src.hdf5"
    write_robomimic(src, n_demos=2)
    with h5py.File(src, "a") as f:
        change(f)
    return src


def _env_args(**kwargs):
    def change(f):
        f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": kwargs})
    return change


def _replace(name, data):
    def change(f):
        del f[name]
        f.create_dataset(name, data=data)
    return change


ROBOMIMIC_CORPUS = {
    "vlen string obs": (_replace("data/demo_0/obs/object", np.array(["a"] * 5, dtype=h5py.string_dtype())),
                        "data/demo_0/obs/object", "variable-length string"),
    "vlen string actions": (_replace("data/demo_1/actions", np.array(["x"] * 6, dtype=h5py.string_dtype())),
                            "data/demo_1/actions", "variable-length string"),
    "control_freq as text": (_env_args(control_freq="20"), "data.attrs.env_args.env_kwargs.control_freq", "positive"),
    "control_freq negative": (_env_args(control_freq=-5), "data.attrs.env_args.env_kwargs.control_freq", "positive"),
    "control_freq true": (_env_args(control_freq=True), "data.attrs.env_args.env_kwargs.control_freq", "positive"),
    "a demo_x group": (lambda f: f.copy("data/demo_1", "data/demo_x"), "data", "demo_x"),
    "success attr 'False'": (lambda f: f["data/demo_0"].attrs.__setitem__("success", "False"), "data/demo_0.attrs.success", "flag"),
    "num_samples as text": (lambda f: f["data/demo_0"].attrs.__setitem__("num_samples", "five"), "data/demo_0.attrs.num_samples",
                            "whole number"),
    "dones of 0.5": (_replace("data/demo_0/dones", np.full(5, 0.5)), "data/demo_0/dones", "0/1"),
    "NaN reward": (_replace("data/demo_1/rewards", np.full(6, np.nan)), "data/demo_1/rewards", "NaN"),
    "train and valid overlap": (_replace("mask/valid", np.array(["demo_0", "demo_1"], dtype="S")), "mask/valid", "demo_0"),
}


@pytest.mark.parametrize("case", sorted(ROBOMIMIC_CORPUS))
def test_bad_robomimic_file_names_the_file_and_dataset(tmp_path, case):
    from robolearn.data.robomimic import import_robomimic

    change, field, words = ROBOMIMIC_CORPUS[case]
    src = _robomimic(tmp_path, change)
    with pytest.raises(DemoFormatError) as info:
        import_robomimic(src, tmp_path / "out", progress=False)
    assert info.value.field == field and info.value.path == str(src), str(info.value)
    assert words in info.value.problem
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- LeRobot


def _info(**change):
    def apply(root: Path):
        p = root / "meta" / "info.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), **change}))
    return apply


def _frames(column, values):
    def apply(root: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = root / "data" / "chunk-000" / "episode_000000.parquet"
        t = pq.read_table(p)
        i = t.column_names.index(column)
        pq.write_table(t.set_column(i, column, pa.array(values(t.num_rows), type=t.schema.field(column).type)), p)
    return apply


LEROBOT_CORPUS = {
    "fps 0": (_info(fps=0), "info.json", "fps"),
    "fps -1": (_info(fps=-1), "info.json", "fps"),
    "fps as text": (_info(fps="20"), "info.json", "fps"),
    "fps true": (_info(fps=True), "info.json", "fps"),
    "chunks_size 0": (_info(chunks_size=0), "info.json", "chunks_size"),
    "NaN reward": (_frames("next.reward", lambda n: [float("nan")] * n), "episode_000000.parquet", "next.reward"),
    "timestamps going back": (_frames("timestamp", lambda n: [float(n - t) for t in range(n)]), "episode_000000.parquet",
                              "timestamp"),
}


@pytest.mark.parametrize("case", sorted(LEROBOT_CORPUS))
def test_bad_lerobot_folder_names_the_file_and_field(tmp_path, case):
    pytest.importorskip("pyarrow")
    from test_lerobot import write_v21

    from robolearn.data.lerobot import import_lerobot

    change, file_name, field = LEROBOT_CORPUS[case]
    src = write_v21(tmp_path / "ds")
    change(src)
    with pytest.raises(DemoFormatError) as info:
        import_lerobot(src, tmp_path / "out", progress=False)
    assert Path(info.value.path).name == file_name and info.value.field == field, str(info.value)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- launch files and training

TINY_BCQ = {"name": "bcq", "batch_size": 16, "critic_hidden": [16, 16], "action_vae_hidden": [16, 16],
            "policy_action_samples": 4, "target_action_samples": 2}


@pytest.fixture
def reach_demos(tmp_path) -> Path:
    """A few straight-line graph_reach episodes (x rises to 1, reward 1 on arrival)."""
    from robolearn.data.format import ActionSpec, DemoMeta, ObsFieldSpec

    folder = tmp_path / "reach"
    meta = DemoMeta(task="graph_reach", control_hz=10.0, obs_spec={"pos": ObsFieldSpec((2,), "float32")},
                    action_spec=ActionSpec(dim=2), source="test")
    w = DemoWriter(folder, meta)
    rng = np.random.default_rng(0)
    for _ in range(4):
        xs = np.linspace(0, 1, 9)
        pos = np.stack([xs, 0.5 * xs], 1).astype(np.float32)
        actions = rng.uniform(-0.1, 0.1, size=(8, 2)).astype(np.float32) + 0.5
        rewards = np.zeros(8, np.float32)
        rewards[-1] = 1.0
        w.write_episode(obs={"pos": pos}, actions=actions, rewards=rewards, success=True)
    return folder


def write_launch(path: Path, demos: Path, train: dict | None = None, algo: dict | None = None) -> Path:
    import yaml

    cfg = {"task": "graph_reach", "data": {"path": str(demos)}, "algo": {**TINY_BCQ, **(algo or {})},
           "train": {"steps": 4, "checkpoint_every": 2, "log_every": 1, **(train or {})}}
    path.write_text(yaml.safe_dump(cfg))
    return path


LAUNCH_CORPUS = {
    "train.steps -100": ({"train": {"steps": -100}}, "train.steps"),
    "train.steps 0": ({"train": {"steps": 0}}, "train.steps"),
    "train.steps true": ({"train": {"steps": True}}, "train.steps"),
    "train.checkpoint_every 0": ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every"),
    "train.log_every 1.5": ({"train": {"log_every": 1.5}}, "train.log_every"),
    "algo.batch_size 0": ({"algo": {"batch_size": 0}}, "batch_size"),
    "algo.lr NaN": ({"algo": {"lr": float("nan")}}, "lr"),
    "algo.gamma 1": ({"algo": {"gamma": 1.0}}, "gamma"),
    "algo.critic_hidden with a 0": ({"algo": {"critic_hidden": [16, 0]}}, "critic_hidden[1]"),
}


@pytest.mark.parametrize("case", sorted(LAUNCH_CORPUS))
def test_bad_launch_number_is_a_one_line_error_and_trains_nothing(tmp_path, reach_demos, capsys, case):
    change, field = LAUNCH_CORPUS[case]
    launch = write_launch(tmp_path / "bad.yaml", reach_demos, **change)
    run = tmp_path / "run"
    assert main(["train", str(launch), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.yaml" in err and f"field '{field}'" in err, err
    assert not (run / "checkpoints").exists()


def test_eval_numbers_are_checked_too(tmp_path, reach_demos):
    with pytest.raises(ConfigError, match=r"field 'eval\.episodes': expected a number greater than 0"):
        load_launch(write_launch(tmp_path / "l.yaml", reach_demos), [f"eval.episodes=-1"])
    with pytest.raises(ConfigError, match=r"field 'eval\.horizon'"):
        from_dict(LaunchConfig, {"task": "graph_reach", "eval": {"horizon": 0}}, "l.yaml")


def test_nan_reward_folder_stops_before_training(tmp_path, reach_demos):
    from robolearn.train import train_from_launch

    ep = DemoReader(reach_demos).load(0)
    arrays = {"actions": ep.actions, "rewards": ep.rewards.copy(), "dones": ep.dones, "success": np.asarray(True),
              "obs/pos": ep.obs["pos"]}
    arrays["rewards"][3] = np.nan
    write_raw(reach_demos, 4, arrays)
    with pytest.raises(DemoFormatError) as info:
        train_from_launch(write_launch(tmp_path / "l.yaml", reach_demos), tmp_path / "run", progress=False)
    assert info.value.field == "rewards" and info.value.path.endswith("episode_000004.npz")
    assert not (tmp_path / "run" / "checkpoints").exists()


def poison_after(monkeypatch, update: int) -> None:
    """After the ``update``-th BCQ update, one critic weight becomes NaN (as an exploding gradient
    would leave it); every later loss computed from the critic is then NaN for real."""
    from robolearn.algos.bcq import BCQ

    real = BCQ.train_step
    calls = {"n": 0}

    def train_step(self, data, gen):
        metrics = real(self, data, gen)
        calls["n"] += 1
        if calls["n"] == update:
            with torch.no_grad():
                next(self.bcq.critic.parameters()).view(-1)[0] = float("nan")
        return metrics

    monkeypatch.setattr(BCQ, "train_step", train_step)


def test_nan_loss_stops_training_naming_step_and_loss_and_latest_stays_good(tmp_path, reach_demos, monkeypatch):
    from robolearn.policy import read_checkpoint_info
    from robolearn.train import TrainingDivergedError, train_from_launch

    poison_after(monkeypatch, 3)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        train_from_launch(write_launch(tmp_path / "l.yaml", reach_demos, train={"steps": 6}), run, progress=False)
    err = info.value
    assert err.step == 4 and err.field == "loss/critic" and "step 4" in str(err) and "loss/critic" in str(err)
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["step_0000002"]
    ckpt, _ = read_checkpoint_info(run)
    assert ckpt.name == "step_0000002"
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(ckpt / "model.safetensors")).values())


def test_poisoned_weights_are_never_checkpointed(tmp_path, reach_demos, monkeypatch, capsys):
    """Poisoned on a checkpoint step, before any NaN loss is seen: the weight check stops it."""
    poison_after(monkeypatch, 2)
    run = tmp_path / "run"
    assert main(["train", str(write_launch(tmp_path / "l.yaml", reach_demos)), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "step 2" in err and "weights" in err and "no checkpoint was written" in err, err
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())


def write_reach_folder(folder, control_hz: float, episodes: int, extra=None):
    """A Graph Reach demo folder of ``episodes`` straight 8-step successes recorded at ``control_hz``."""
    from robolearn.data.format import ActionSpec, DemoMeta, ObsFieldSpec

    meta = DemoMeta(task="graph_reach", control_hz=control_hz, obs_spec={"pos": ObsFieldSpec((2,), "float32")},
                    action_spec=ActionSpec(dim=2), source="test", extra=dict(extra or {}))
    w = DemoWriter(folder, meta)
    for _ in range(episodes):
        pos = np.stack([np.linspace(0, 1, 9)] * 2, 1).astype(np.float32)
        w.write_episode({"pos": pos}, np.full((8, 2), 0.5, np.float32), np.eye(1, 8, 7, dtype=np.float32)[0], success=True)
    w.close()
    return folder


def test_train_refuses_demos_recorded_at_another_rate_than_the_task(tmp_path, capsys):
    """Graph Reach runs at 10 Hz; 5 Hz demos are refused in one line naming data.path, and
    accepted once the launch file runs the task at their rate."""
    folder = write_reach_folder(tmp_path / "slow", control_hz=5.0, episodes=2)
    launch = write_launch(tmp_path / "l.yaml", folder)
    assert main(["train", str(launch), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.path" in err and "5 Hz" in err and "10 Hz" in err, err
    assert main(["train", str(launch), "--out", str(tmp_path / "run"), "--quiet", "--set", "env.control_hz=5"]) == 0


@pytest.mark.parametrize("env, field", [({"control_hz": -5.0}, "control_hz"), ({"control_hz": float("nan")}, "control_hz"),
                                        (["control_hz", 10], "extra.env")])
def test_train_names_meta_json_for_a_bad_recorded_env_setting(tmp_path, capsys, env, field):
    """A demo folder whose recorded task settings are bad is refused in one line naming its
    meta.json and the field, not the launch file that merely points at it."""
    folder = write_reach_folder(tmp_path / "demos", control_hz=10.0, episodes=1, extra={"env": env})
    launch = write_launch(tmp_path / "l.yaml", folder)
    assert main(["train", str(launch), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(folder / "meta.json") in err and f"field '{field}'" in err and "l.yaml" not in err, err


def test_train_reads_a_null_recorded_env_as_no_settings(tmp_path):
    """``extra.env: null`` in meta.json records no settings: training runs on the task's own."""
    folder = write_reach_folder(tmp_path / "demos", control_hz=10.0, episodes=2, extra={"env": None})
    assert main(["train", str(write_launch(tmp_path / "l.yaml", folder)), "--out", str(tmp_path / "run"), "--quiet"]) == 0
