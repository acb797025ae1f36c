"""collect -> train -> eval end to end through the ``robolearn`` command, on a tiny budget."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import collect_graph_reach
import pytest
from safetensors.torch import load_file

from robolearn.cli import main
from robolearn.paths import LAUNCH_DIR

TINY = {
    "bc": ["algo.hidden=[32,32]"],
    "bc_rnn": ["algo.hidden=32", "algo.layers=1"],
    "bcq": ["algo.critic_hidden=[32,32]", "algo.action_vae_hidden=[32,32]", "algo.policy_action_samples=10"],
    "hbc": ["algo.goal_vae_hidden=[32,32]", "algo.low_hidden=32", "algo.low_layers=1"],
    "iris": ["algo.goal_vae_hidden=[32,32]", "algo.low_hidden=32", "algo.low_layers=1", "algo.num_goal_samples=8",
             "algo.num_value_action_samples=4", "algo.value.critic_hidden=[32,32]", "algo.value.action_vae_hidden=[32,32]"],
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return collect_graph_reach(tmp_path_factory, episodes=8)


def train_args(algo: str, demos: Path, run: Path, steps: int = 20) -> list[str]:
    sets = [f"data.path={demos}", f"train.steps={steps}", "train.checkpoint_every=10", "train.log_every=5"] + TINY[algo]
    return ["train", str(LAUNCH_DIR / f"graph_reach_{algo}.yaml"), "--out", str(run), "--seed", "0", "--quiet"] + [
        x for s in sets for x in ("--set", s)]


@pytest.mark.parametrize("algo", sorted(TINY))
def test_train_and_eval_every_algo(algo, demos, tmp_path):
    run = tmp_path / algo
    assert main(train_args(algo, demos, run)) == 0
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert ckpts == ["step_0000010", "step_0000020"]
    assert (run / "checkpoints" / "step_0000020" / "model.safetensors").stat().st_size > 0
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "losses.png").stat().st_size > 0
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--episodes", "2", "--seed", "0", "--json", str(out), "--horizon", "20", "--quiet"]) == 0
    result = json.loads(out.read_text())
    for key in ("success_rate", "mean_length", "mean_return"):
        assert key in result
    assert result["episodes"] == 2 and len(result["per_episode"]) == 2
    assert Path(result["plot"]).stat().st_size > 0


def test_resume_continues_to_the_same_weights(demos, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args("iris", demos, straight, steps=20)) == 0
    assert main(train_args("iris", demos, resumed, steps=10)) == 0
    assert main(train_args("iris", demos, resumed, steps=20) + ["--resume"]) == 0
    a = load_file(str(straight / "checkpoints" / "step_0000020" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_0000020" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_cosine_schedule_anneals_and_resumes_to_the_same_weights(demos, tmp_path):
    """A run interrupted after its step-10 checkpoint and resumed ends where the uninterrupted one did:
    the schedule is a function of the step, not of optimiser state that a resume would carry."""
    cosine = ["--set", "train.lr_schedule=cosine"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(train_args("iris", demos, straight, steps=20) + cosine) == 0
    assert main(train_args("iris", demos, interrupted, steps=20) + cosine) == 0
    ckpts = interrupted / "checkpoints"
    for p in (ckpts / "step_0000020").iterdir():
        p.unlink()
    (ckpts / "step_0000020").rmdir()
    (ckpts / "latest.json").write_text(json.dumps({"name": "step_0000010", "step": 10}))
    assert main(train_args("iris", demos, interrupted, steps=20) + cosine + ["--resume"]) == 0
    a = load_file(str(straight / "checkpoints" / "step_0000020" / "model.safetensors"))
    b = load_file(str(interrupted / "checkpoints" / "step_0000020" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    factors = [r["train/lr_factor"] for r in rows]
    assert factors == sorted(factors, reverse=True) and factors[0] > 0.9 and factors[-1] < 0.01
    opt_meta = json.loads((straight / "checkpoints" / "step_0000020" / "checkpoint.json").read_text())["optimizers"]
    assert all(0 < g["lr"] < 1e-4 for o in opt_meta.values() for g in o["param_groups"])


def test_lr_schedule_can_be_limited_to_named_optimisers(demos, tmp_path, capsys):
    run = tmp_path / "low_only"
    sets = ["train.lr_schedule=cosine", "train.lr_schedule_optimizers=[low]"]
    assert main(train_args("iris", demos, run) + [x for s in sets for x in ("--set", s)]) == 0
    opt_meta = json.loads((run / "checkpoints" / "step_0000020" / "checkpoint.json").read_text())["optimizers"]
    lrs = {name: [g["lr"] for g in o["param_groups"]] for name, o in opt_meta.items()}
    assert lrs["low"][0] < 1e-4, lrs
    assert all(lr == 1e-3 for name, group in lrs.items() if name != "low" for lr in group), lrs
    bad = ["--set", "train.lr_schedule=cosine", "--set", "train.lr_schedule_optimizers=[policy]"]
    assert main(train_args("iris", demos, tmp_path / "bad") + bad) == 2
    err = capsys.readouterr().err
    assert "train.lr_schedule_optimizers" in err and "policy" in err and "low" in err


def test_lr_factor_refuses_a_schedule_it_does_not_know():
    """A LaunchConfig built without load_launch must not fall back to a constant lr silently."""
    from robolearn.launch import lr_factor

    assert lr_factor("constant", 7, 10) == 1.0 and lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 10, 10) == 0.0
    with pytest.raises(ValueError, match="linear"):
        lr_factor("linear", 3, 10)


def test_unknown_lr_schedule_is_named(demos, tmp_path, capsys):
    assert main(train_args("bc", demos, tmp_path / "run") + ["--set", "train.lr_schedule=linear"]) == 2
    err = capsys.readouterr().err
    assert "train.lr_schedule" in err and "cosine" in err


def test_existing_run_is_not_overwritten(demos, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args("bc", demos, run, steps=10)) == 0
    assert main(train_args("bc", demos, run, steps=10)) == 2
    assert "--resume" in capsys.readouterr().err


def test_misspelt_launch_key_is_named(demos, tmp_path, capsys):
    args = train_args("bc", demos, tmp_path / "run") + ["--set", "algo.hiden=[8]"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "graph_reach_bc.yaml" in err and "hiden" in err


def test_video_written_for_requested_episodes(demos, tmp_path):
    from robolearn.video import read_mp4_info

    run = tmp_path / "run"
    assert main(train_args("hbc", demos, run, steps=10)) == 0
    vids = tmp_path / "videos"
    assert main(["eval", str(run), "--episodes", "2", "--video", str(vids), "--video-episodes", "1", "--horizon", "15",
                 "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    files = sorted(vids.glob("*.mp4"))
    assert [f.name for f in files] == ["episode_0000.mp4"]
    frames, width, height = read_mp4_info(files[0])
    assert frames >= 2 and width > 0 and height > 0


def test_quickstart_runs_end_to_end_on_a_tiny_budget(tmp_path):
    from robolearn.quickstart import main as quickstart

    out = tmp_path / "qs"
    assert quickstart(["--task", "graph_reach", "--out", str(out), "--episodes", "6", "--steps", "10",
                       "--eval-episodes", "2"]) == 0
    report = (out / "report.md").read_text()
    assert "| BC-RNN |" in report and "| IRIS |" in report
    for algo in ("bc_rnn", "iris"):
        assert (out / algo / "eval.png").exists()
        assert sorted(p.name for p in (out / algo / "videos").glob("*.mp4")) == ["episode_0000.mp4", "episode_0001.mp4"]


def test_training_uses_only_the_train_split(demos, tmp_path):
    import shutil

    from robolearn.data.format import DemoReader
    from robolearn.policy import read_checkpoint_info

    folder = tmp_path / "split_demos"
    shutil.copytree(demos, folder)
    assert main(["split", str(folder), "--valid", "0.25", "--seed", "0"]) == 0
    train_idx = DemoReader(folder).split_indices("train")
    assert 0 < len(train_idx) < 8
    run = tmp_path / "run"
    assert main(train_args("bc", folder, run, steps=10)) == 0
    _, info = read_checkpoint_info(run)
    assert info["meta"]["data"]["episodes"] == len(train_idx)
