"""`robolearn deploy`: a real (briefly trained) checkpoint on the shielded PyBullet arm, the
operator confirmation, and Ctrl-C (a real SIGINT to a real subprocess) leaving a readable
demo folder."""
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

pytest.importorskip("pybullet")

from robolearn.data.format import DemoReader  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch", "deploy_pybullet_lift.yaml")


def deploy_args(**kw):
    base = dict(launch=LAUNCH, checkpoint="scripted:proficient", yes=True, max_steps=None, episodes=None, out=None,
                log_level="ERROR")
    base.update(kw)
    return types.SimpleNamespace(**base)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A BC policy trained for a few steps on 3 scripted pybullet_lift demos (seconds)."""
    import torch

    torch.set_num_threads(1)
    from robolearn.collect import CollectConfig, collect
    from robolearn.launch import DataConfig, LaunchConfig, TrainConfig
    from robolearn.train import train

    root = tmp_path_factory.mktemp("pb")
    collect(CollectConfig(task="pybullet_lift", operator="proficient", episodes=3, out=str(root / "demos"), progress=False))
    cfg = LaunchConfig(task="pybullet_lift", data=DataConfig(path=str(root / "demos")),
                       algo={"name": "bc", "batch_size": 32}, train=TrainConfig(steps=20, log_every=10, checkpoint_every=20),
                       source="test")
    return train(cfg, root / "run", seed=0, progress=False)


def test_deploy_trained_checkpoint_records_demo(checkpoint, tmp_path, capsys):
    from robolearn.commands import deploy

    out = tmp_path / "deploy"
    code = deploy.run(deploy_args(checkpoint=str(checkpoint), max_steps=15, out=str(out)))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "deploy summary: 15 steps" in text and "shield interventions" in text and "jitter p50" in text
    reader = DemoReader(out)
    assert reader.validate() == 1 and reader.load(0).length == 15
    assert reader.meta.source == f"deploy:{checkpoint}" and reader.meta.task == "pybullet_lift"
    assert (out / "deploy_summary.json").is_file()


def test_deploy_refuses_a_policy_trained_at_another_rate(checkpoint, tmp_path):
    """The checkpoint was trained on 20 Hz demos; this launch runs the task (arm and loop) at 50 Hz."""
    from robolearn.commands import deploy
    from robolearn.config import ConfigError

    launch = tmp_path / "fast.yaml"
    launch.write_text("task: pybullet_lift\nenv: {control_hz: 50}\n")
    with pytest.raises(ConfigError, match="field 'control_hz': the policy was trained at 20 Hz but the loop runs at 50 Hz"):
        deploy.run(deploy_args(launch=str(launch), checkpoint=str(checkpoint), out=str(tmp_path / "d")))
    assert not (tmp_path / "d").exists()


def test_deploy_requires_confirmation(monkeypatch, tmp_path, capsys):
    from robolearn.commands import deploy

    monkeypatch.setattr("builtins.input", lambda prompt="": "no")
    code = deploy.run(deploy_args(yes=False, out=str(tmp_path / "d")))
    assert code == 1 and "not confirmed" in capsys.readouterr().out
    assert not (tmp_path / "d").exists()  # nothing recorded, nothing moved


def test_deploy_launch_errors_name_the_field(tmp_path):
    from robolearn.commands import deploy
    from robolearn.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: pybullet_lift\ndeploy: {arm: pybullet, max_step: 3}\n")
    with pytest.raises(ConfigError, match="max_step"):
        deploy.run(deploy_args(launch=str(bad)))
    bad.write_text("task: pybullet_lift\ndeploy: {arm: kuka}\n")
    with pytest.raises(ConfigError, match="deploy.arm"):
        deploy.run(deploy_args(launch=str(bad)))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_and_signal(tmp_path, sig, name, sigint_ignored: bool = False):
    """``sigint_ignored``: start the child as a non-interactive shell starts a background job
    (``cmd &``), with SIGINT ignored, which Python inherits and keeps unless told otherwise."""
    out = tmp_path / name
    # PYTHONFAULTHANDLER: a child that outlives the signal is aborted below and prints every thread's stack.
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # No success stop and a long run, so the loop is mid-episode when the signal lands.
    launch = tmp_path / "long.yaml"
    # 50 Hz is the task's rate here (env.control_hz), so the arm, the loop and the scripted operator agree.
    launch.write_text("task: pybullet_lift\nenv: {control_hz: 50}\ndeploy: {max_steps: 5000, stop_on_success: false}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "robolearn", "deploy", str(launch), "--checkpoint", "scripted:suboptimal", "--yes", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    t_end = time.monotonic() + 60
    for line in proc.stdout:
        if "running" in line or time.monotonic() > t_end:
            break
    time.sleep(0.6)  # ~30 steps at 50 Hz
    proc.send_signal(sig)
    try:
        rest = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        stacks = proc.communicate(timeout=30)[0]
        pytest.fail(f"deploy still running 30 s after {signal.Signals(sig).name}; its threads when aborted:\n{stacks[-8000:]}")
    return proc.returncode, rest, out


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint-default", "started-with-sigint-ignored"])
def test_sigint_during_deploy_leaves_readable_demo_folder(tmp_path, sigint_ignored):
    """Ctrl-C stops the arm and keeps the episode, also for a deploy started in the background of a
    script, whose SIGINT the shell set to ignored (the arm would otherwise go on moving)."""
    code, rest, out = run_and_signal(tmp_path, signal.SIGINT, "interrupted", sigint_ignored=sigint_ignored)
    assert code == 130, rest
    assert "stopped by interrupt" in rest
    ep = DemoReader(out).load(0)
    assert 5 < ep.length < 5000
    assert np.all(np.isfinite(ep.actions))


def test_sigquit_latches_estop_and_keeps_the_episode(tmp_path):
    code, rest, out = run_and_signal(tmp_path, signal.SIGQUIT, "estopped")
    assert code == 3, rest
    assert "shield stopped the run" in rest and "e-stop is latched" in rest
    assert DemoReader(out).load(0).length > 5
