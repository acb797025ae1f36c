"""``robolearn select``: every checkpoint of a run scored on the held-out split, no rollouts."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robolearn.cli import main
from robolearn.data.format import DemoReader
from robolearn.paths import LAUNCH_DIR
from robolearn.policy import load_algo
from robolearn.selection import SelectionConfig, held_out_episodes, select_checkpoints, validation_losses
from robolearn.data.dataset import DemoDataset

TINY_IRIS = ["algo.goal_vae_hidden=[32,32]", "algo.low_hidden=32", "algo.low_layers=1", "algo.num_goal_samples=8",
             "algo.num_value_action_samples=4", "algo.value.critic_hidden=[32,32]", "algo.value.action_vae_hidden=[32,32]"]


def train(algo: str, demos: Path, run: Path, tiny: list[str], steps: int = 30) -> None:
    sets = [f"data.path={demos}", f"train.steps={steps}", "train.checkpoint_every=10", "train.log_every=10", "train.threads=1", *tiny]
    assert main(["train", str(LAUNCH_DIR / f"graph_reach_{algo}.yaml"), "--out", str(run), "--seed", "0", "--quiet"]
                + [x for s in sets for x in ("--set", s)]) == 0


@pytest.fixture(scope="module")
def split_demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sel") / "gr"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "10", "--seed", "0", "--out", str(out),
                 "--no-progress"]) == 0
    assert main(["split", str(out), "--valid", "0.3", "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def iris_run(split_demos, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sel") / "iris"
    train("iris", split_demos, run, TINY_IRIS)
    return run


def test_select_scores_every_checkpoint_and_names_a_choice_per_criterion(iris_run, tmp_path, capsys):
    out = tmp_path / "sel.json"
    assert main(["select", str(iris_run), "--batches", "3", "--json", str(out), "--quiet"]) == 0
    table = json.loads(out.read_text())
    names = [r["name"] for r in table["checkpoints"]]
    assert names == ["step_0000010", "step_0000020", "step_0000030"] and table["final"] == "step_0000030"
    criteria = table["criteria"]
    for part in ("valid_loss/goal_vae", "valid_loss/low", "valid_loss/critic", "valid_loss/action_vae", "valid_loss/total"):
        assert criteria[part]["direction"] == "min"
    assert criteria["start_value"]["direction"] == "max"
    for row in table["checkpoints"]:
        assert set(row["scores"]) == set(criteria)
        assert all(math.isfinite(v) for v in row["scores"].values())
    for name, pick in criteria.items():
        best = (max if pick["direction"] == "max" else min)(table["checkpoints"], key=lambda r: r["scores"][name])
        assert pick["checkpoint"] == best["name"]
    assert table["split"] == "valid" and table["episodes"] == 3 and not table["warnings"]
    assert "start_value (highest)" in capsys.readouterr().out


def test_scoring_is_deterministic_and_leaves_the_weights_alone(iris_run, tmp_path):
    cfg = SelectionConfig(batches=2)
    a = select_checkpoints(iris_run, cfg, json_out=tmp_path / "a.json")
    b = select_checkpoints(iris_run, cfg, json_out=tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["checkpoints"] == b["checkpoints"]
    algo, info, ckpt = load_algo(iris_run)
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    _, episodes = held_out_episodes(Path(info["meta"]["data"]["path"]), "valid")
    validation_losses(algo, DemoDataset(episodes, info["obs_keys"]), batches=2, seed=0)
    after = algo.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    saved = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.equal(saved[k], after[k]) for k in saved)


def test_validation_loss_is_computed_on_the_valid_split_only(split_demos, iris_run, tmp_path):
    """Swapping the roles of the splits changes the scores; a folder whose valid split holds the
    same episodes gives the same scores as the original, whatever the train split holds."""
    reader = DemoReader(split_demos)
    valid = reader.split_indices("valid")
    same_valid = tmp_path / "same_valid"
    shutil.copytree(split_demos, same_valid)
    meta = json.loads((same_valid / "meta.json").read_text())
    meta["split"] = {"train": [], "valid": valid, "other": [i for i in reader.indices if i not in valid]}
    (same_valid / "meta.json").write_text(json.dumps(meta))
    cfg = dict(batches=2)
    original = select_checkpoints(iris_run, SelectionConfig(**cfg), json_out=None)
    same = select_checkpoints(iris_run, SelectionConfig(data=str(same_valid), **cfg), json_out=None)
    other = select_checkpoints(iris_run, SelectionConfig(data=str(same_valid), split="other", **cfg), json_out=None)
    assert original["checkpoints"] == same["checkpoints"]
    assert other["checkpoints"] != original["checkpoints"]
    assert other["episodes"] == len(reader.indices) - len(valid)


def test_imitation_runs_get_loss_criteria_only(split_demos, tmp_path):
    run = tmp_path / "bc"
    train("bc", split_demos, run, ["algo.hidden=[32,32]"], steps=20)
    table = select_checkpoints(run, SelectionConfig(batches=2))
    assert set(table["criteria"]) == {"valid_loss/policy", "valid_loss/total"}


def test_a_folder_without_a_split_and_bad_settings_are_one_line_errors(split_demos, iris_run, tmp_path, capsys):
    unsplit = tmp_path / "unsplit"
    shutil.copytree(split_demos, unsplit)
    meta = json.loads((unsplit / "meta.json").read_text())
    meta.pop("split")
    (unsplit / "meta.json").write_text(json.dumps(meta))
    for args, needle in ((["--data", str(unsplit)], "split"), (["--batches", "0"], "--batches"),
                         (["--split", "nope"], "split.nope")):
        assert main(["select", str(iris_run), "--quiet", "--json", str(tmp_path / "x.json"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert main(["select", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "checkpoints" in capsys.readouterr().err
