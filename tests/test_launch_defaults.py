"""Task defaults in ``envs/<task>.yaml``, one control rate, and the typed ``deploy:`` section.

Real files throughout: a task file and launch files written to a temporary envs folder (the
loader's ``ENVS_DIR``), and the repository's own launch files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import robolearn.launch as launch_mod
from robolearn.config import ConfigError
from robolearn.launch import DeployConfig, load_launch
from robolearn.paths import LAUNCH_DIR

TOY_TASK = {
    "control_hz": 10,
    "horizon": 50,
    "defaults": {
        "data": {"obs_keys": ["a", "b"]},
        "eval": {"horizon": 7, "episodes": 3},
        "deploy": {"arm": "noop", "controller": "controllers/noop.yaml", "max_steps": 30},
    },
}


@pytest.fixture
def envs(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "envs"
    folder.mkdir()
    (folder / "toy.yaml").write_text(yaml.safe_dump(TOY_TASK))
    monkeypatch.setattr(launch_mod, "ENVS_DIR", folder)
    return folder


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_launch_file_wins_over_the_task_defaults_and_set_wins_over_both(envs, tmp_path):
    path = write(tmp_path / "l.yaml", {"task": "toy", "data": {"path": "d"}, "eval": {"episodes": 5}})
    cfg = load_launch(path, ["eval.horizon=9"])
    assert cfg.data.obs_keys == ["a", "b"] and cfg.data.path == "d"
    assert (cfg.eval.episodes, cfg.eval.horizon) == (5, 9)
    assert cfg.deploy == DeployConfig(arm="noop", controller="controllers/noop.yaml", max_steps=30, hz=10.0)
    assert load_launch(path, ["data.obs_keys=[c]"]).data.obs_keys == ["c"]  # a list replaces, never appends


def test_a_launch_naming_another_arm_takes_none_of_the_task_deploy_defaults(envs, tmp_path):
    cfg = load_launch(write(tmp_path / "l.yaml", {"task": "toy", "deploy": {"arm": "franka"}}))
    assert cfg.deploy == DeployConfig(arm="franka", hz=10.0)  # not noop's controller nor its max_steps
    assert load_launch(tmp_path / "l.yaml", ["deploy.arm=noop"]).deploy.max_steps == 30


def test_unknown_keys_are_named_in_the_file_that_states_them(envs, tmp_path):
    path = write(tmp_path / "l.yaml", {"task": "toy", "eval": {"horizn": 3}})
    with pytest.raises(ConfigError, match=r"l\.yaml: field 'eval\.horizn': unknown key"):
        load_launch(path)
    write(envs / "toy.yaml", {**TOY_TASK, "defaults": {"eval": {"horizn": 3}}})
    with pytest.raises(ConfigError, match=r"toy\.yaml: field 'defaults\.eval\.horizn': unknown key"):
        load_launch(write(tmp_path / "l.yaml", {"task": "toy"}))
    write(envs / "toy.yaml", {**TOY_TASK, "defaults": {"deploy": {"max_steps": 0}}})
    with pytest.raises(ConfigError, match=r"toy\.yaml: field 'defaults\.deploy\.max_steps'"):
        load_launch(tmp_path / "l.yaml")


@pytest.mark.parametrize("launch,overrides", [
    ({"task": "toy", "deploy": {"hz": 20}}, []),
    ({"task": "toy"}, ["deploy.hz=20"]),
])
def test_a_second_control_rate_is_refused_in_one_line(envs, tmp_path, launch, overrides):
    with pytest.raises(ConfigError) as info:
        load_launch(write(tmp_path / "l.yaml", launch), overrides)
    text = str(info.value)
    assert "\n" not in text and "field 'deploy.hz'" in text and "control_hz 10" in text and "toy.yaml" in text


def test_the_launch_env_sets_the_task_rate_and_deploy_follows_it(envs, tmp_path):
    cfg = load_launch(write(tmp_path / "l.yaml", {"task": "toy", "env": {"control_hz": 25}}))
    assert cfg.deploy.hz == 25.0
    with pytest.raises(ConfigError, match=r"field 'env\.control_hz'"):
        load_launch(write(tmp_path / "l.yaml", {"task": "toy", "env": {"control_hz": True}}))


@pytest.mark.parametrize("field,value", [
    ("max_steps", 0), ("episodes", -1), ("hz", float("nan")), ("hz", True), ("port", 0), ("rt_priority", -1),
    ("seed", -3), ("pipelined_replan", "yes"), ("stop_on_success", 1), ("host", 5), ("max_steps", 2.5),
])
def test_bad_deploy_settings_are_one_line_errors_naming_the_field(tmp_path, field, value):
    from robolearn.deploy import load_deploy

    path = write(tmp_path / "d.yaml", {"deploy": {"arm": "noop", field: value}})
    with pytest.raises(ConfigError) as info:
        load_deploy(str(path))
    assert str(info.value).startswith(f"{path}: field 'deploy.{field}': ") and "\n" not in str(info.value)


def test_deploy_refuses_unknown_arms_and_bad_command_line_counts(tmp_path):
    from robolearn.deploy import load_deploy, with_command_line

    with pytest.raises(ConfigError, match=r"field 'deploy\.arm': expected one of .*noop.*got 'kuka'"):
        load_deploy(str(write(tmp_path / "d.yaml", {"deploy": {"arm": "kuka"}})))
    with pytest.raises(ConfigError, match=r"field 'deploy': missing"):
        load_deploy(str(write(tmp_path / "d.yaml", {"env": {}})))
    cfg = load_deploy(str(write(tmp_path / "d.yaml", {"deploy": {"arm": "noop"}}))).deploy
    assert with_command_line(cfg, 7, None).max_steps == 7
    with pytest.raises(ConfigError, match=r"--max-steps: field 'max_steps'"):
        with_command_line(cfg, 0, None)
    with pytest.raises(ConfigError, match=r"--episodes: field 'episodes'"):
        with_command_line(cfg, None, -2)


def test_deploy_refuses_a_loop_rate_the_arm_does_not_run_at(tmp_path, capsys):
    """No task: the loop's rate is deploy.hz, the noop arm's is its controller's 20 Hz."""
    from robolearn.commands import deploy

    out = tmp_path / "rec"
    path = write(tmp_path / "d.yaml", {"deploy": {"arm": "noop", "hz": 50}})
    with pytest.raises(ConfigError, match=r"field 'deploy\.hz': the loop runs at 50 Hz but arm .* at 20 Hz"):
        deploy.run(_args(path, out))
    assert not out.exists()


def _args(launch: Path, out: Path):
    import types

    return types.SimpleNamespace(launch=str(launch), checkpoint="scripted:proficient", yes=True, max_steps=None,
                                 episodes=None, out=str(out), log_level="ERROR")


def test_policy_trained_at_another_rate_is_refused():
    from robolearn.deploy import check_policy_rate

    check_policy_rate("l.yaml", "run", 20.0, {"control_hz": 20.0})
    check_policy_rate("l.yaml", "run", 20.0, {})  # a policy that does not say: the loop's rate
    with pytest.raises(ConfigError, match=r"^run: field 'control_hz': the policy was trained at 10 Hz but the loop runs at 20 Hz"):
        check_policy_rate("l.yaml", "run", 20.0, {"control_hz": 10.0})


def test_repository_launch_files_state_no_rate_and_resolve_to_their_task_rate():
    for path in sorted(LAUNCH_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert "hz" not in (raw.get("deploy") or {}), f"{path.name}: the rate belongs to envs/{raw['task']}.yaml"
        cfg = load_launch(path)
        rate = launch_mod.task_control_hz(cfg.task, cfg.env, str(path))
        if cfg.deploy is not None and rate is not None:
            assert cfg.deploy.hz == rate, path.name
        if cfg.task in ("lift", "can") and cfg.data.path:
            # Image launch files see the object through the cameras, the others through its state.
            seen = ["agentview_image", "robot0_eye_in_hand_image"] if path.stem.endswith("_image") else ["object"]
            assert cfg.data.obs_keys == ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", *seen], path.name
