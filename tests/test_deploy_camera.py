"""`robolearn deploy` with perception: the policy's `object` from a camera and markers, never the simulator's.

Real files and a real simulator: the checked-in camera launch file drives robosuite's Lift arm,
its perception camera renders 640 x 480 frames through MuJoCo, ArUco markers are found in them
with OpenCV, and the simulator's own object state is poisoned to prove nothing reads it. The
refusals run the real loaders on real (broken) files before any arm is built."""
from __future__ import annotations

import datetime as dt
import json
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("robosuite")
pytest.importorskip("mujoco")
pytest.importorskip("cv2")

from robolearn.hal.cameras.calibration_file import load_calibration, write_calibration  # noqa: E402
from robolearn.config import ConfigError  # noqa: E402
from robolearn.data.format import DemoReader  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CAMERA_LAUNCH = REPO / "launch" / "deploy_robosuite_lift_camera.yaml"
REAL_LAUNCH = REPO / "launch" / "deploy_ur5e_realsense.yaml"
SIM_CALIBRATION = REPO / "controllers" / "calibration" / "lift_perception.yaml"
LIFT_KEYS = {"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,), "object": (10,)}


def deploy_args(**kw):
    base = dict(launch=str(CAMERA_LAUNCH), checkpoint="scripted:proficient", yes=True, max_steps=None, episodes=None,
                out=None, log_level="ERROR")
    base.update(kw)
    return types.SimpleNamespace(**base)


def lift_policy(root: Path, keys: dict[str, tuple]) -> Path:
    """A BC policy trained for a few steps on a small Lift-shaped demo folder with ``keys``."""
    import torch

    from robolearn.data.format import ActionSpec, DemoMeta, DemoWriter, ObsFieldSpec
    from robolearn.launch import DataConfig, LaunchConfig, TrainConfig
    from robolearn.train import train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    spec = {k: ObsFieldSpec(shape) for k, shape in keys.items()}
    writer = DemoWriter(root / "demos", DemoMeta(task="lift", control_hz=20.0, obs_spec=spec, action_spec=ActionSpec(7)))
    for _ in range(2):
        obs = {k: rng.normal(size=(13, *shape)).astype(np.float32) for k, shape in keys.items()}
        writer.write_episode(obs, rng.uniform(-1, 1, size=(12, 7)).astype(np.float32), success=True)
    cfg = LaunchConfig(task="lift", data=DataConfig(path=str(root / "demos"), obs_keys=list(keys)),
                       algo={"name": "bc", "batch_size": 8}, train=TrainConfig(steps=4, log_every=2, checkpoint_every=4),
                       source="test")
    return train(cfg, root / "run", seed=0, progress=False)


@pytest.fixture(scope="module")
def lift_run(tmp_path_factory):
    return lift_policy(tmp_path_factory.mktemp("lift"), LIFT_KEYS)


def untrained_policy(root: Path, keys: dict[str, tuple]) -> Path:
    """A checkpoint that reads ``keys`` (its weights do not matter to a refusal)."""
    from robolearn.algos.base import algo_class
    from robolearn.models.encoders import ObsKey, unit_normalizers
    from robolearn.policy import save_checkpoint

    spec = {k: ObsKey(tuple(shape)) for k, shape in keys.items()}
    save_checkpoint(root / "ckpt", algo_class("bc").build({}, spec, unit_normalizers(spec), 7), step=0,
                    meta={"task": "lift", "control_hz": 20.0})
    return root / "ckpt"


def poison_object_state(monkeypatch) -> None:
    """A simulated task arm reports NaN as its ``object``: only a camera estimate can be finite."""
    from robolearn.tasks.task_arm import TaskBoundArm

    true_observe = TaskBoundArm.observe

    def observe(self):
        obs = true_observe(self)
        obs.data["object"] = np.full(10, np.nan, np.float32)
        return obs

    monkeypatch.setattr(TaskBoundArm, "observe", observe)


def launch_copy(tmp_path: Path, source: Path, change) -> Path:
    data = yaml.safe_load(source.read_text())
    change(data)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data))
    return path


def with_calibration(path: str):
    def change(data):
        data["deploy"]["perception"]["calibration"] = path
    return change


def calibration_copy(tmp_path: Path, name: str = "cal.yaml", **fields) -> Path:
    """The simulated camera's calibration file with some fields changed, written as robolearn calibrate writes."""
    import dataclasses

    cal = load_calibration(SIM_CALIBRATION)
    extrinsic = fields.pop("extrinsic_date", None)
    cal = dataclasses.replace(cal, **fields)
    if extrinsic is not None:
        cal.extrinsic = dataclasses.replace(cal.extrinsic, date=extrinsic)
    return write_calibration(tmp_path / name, cal)


# --- deploying from the camera launch file --------------------------------------------------

def test_deploy_from_the_camera_launch_file_runs_a_trained_policy_on_the_marker_estimate(lift_run, tmp_path, capsys):
    """A trained Lift policy, the checked-in camera launch file: an episode runs on the estimate
    (every frame estimated), success is reported, and the recording keeps the estimate as
    ``object`` and no frames (``record_images: false``)."""
    from robolearn.commands import deploy

    out = tmp_path / "deploy"
    code = deploy.run(deploy_args(checkpoint=str(lift_run), max_steps=3, episodes=1, out=str(out)))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "perception: marker on camera 'perception'" in text and "success False" in text
    summary = json.loads((out / "deploy_summary.json").read_text())
    assert summary["successes"] == [False] and summary["steps"] == 3
    (episode,) = summary["perception"]["episodes"]
    assert episode["frames"] >= 4 and episode["lost_frames"] == 0 and episode["lost_reason"] == ""
    reader = DemoReader(out)
    assert "perception_image" not in reader.meta.obs_spec
    ep = reader.load(0)
    assert ep.length == 3 and np.all(np.isfinite(ep.obs["object"]))
    assert ep.obs["object"][0, 2] == pytest.approx(0.82, abs=0.01)  # the cube on the table, as the camera saw it


def test_a_poisoned_simulator_object_state_is_never_what_the_policy_sees(tmp_path, monkeypatch, capsys):
    """The task arm's ``object`` observation is replaced by NaN. The scripted operator still
    lifts the cube, every ``object`` it was given is the marker estimate of the newest frame,
    and the estimates sit where the simulator has the cube. The camera runs at 320 x 240 (a
    quarter of the rendering) with the calibration ``robolearn calibrate sim-camera`` makes for
    it, which places the camera where the checked-in 640 x 480 file does."""
    from robolearn.commands import deploy
    from robolearn.deploy import ScriptedPolicy
    from robolearn.hal.cameras.mujoco_camera import robosuite_handles
    from robolearn.perceived import PerceivedArm
    from robolearn.perception.ground_truth import GroundTruth
    from robolearn.perceived import sim_camera_calibration

    small = sim_camera_calibration("lift", "perception", 320, 240)
    kept = load_calibration(SIM_CALIBRATION)
    np.testing.assert_allclose(small.extrinsic.transform, kept.extrinsic.transform, atol=1e-6)
    assert small.K[0, 0] == pytest.approx(kept.K[0, 0] / 2) and (small.K[0, 2], small.K[1, 2]) == (159.5, 119.5)
    cal = write_calibration(tmp_path / "small.yaml", small)

    def quarter(data):
        data["deploy"]["cameras"]["views"]["perception"].update(width=320, height=240)
        data["deploy"]["perception"]["calibration"] = str(cal)

    launch = launch_copy(tmp_path, CAMERA_LAUNCH, quarter)
    poison_object_state(monkeypatch)
    perceived_rows = []  # (object written, estimate, true cube position) per perceived observation
    true_perceived = PerceivedArm._perceived

    def spy_perceived(self, obs):
        out = true_perceived(self, obs)
        truth = GroundTruth(robosuite_handles(self.env.arm), "cube_main").pose().position
        perceived_rows.append((out.data["object"].copy(), self.last_estimate, truth))
        return out

    monkeypatch.setattr(PerceivedArm, "_perceived", spy_perceived)
    acted_on = []
    true_act = ScriptedPolicy.act
    monkeypatch.setattr(ScriptedPolicy, "act", lambda self, obs: (acted_on.append(obs["object"].copy()), true_act(self, obs))[1])

    out = tmp_path / "deploy"
    code = deploy.run(deploy_args(launch=str(launch), max_steps=120, episodes=1, out=str(out)))
    text = capsys.readouterr().out
    assert code == 0, text
    summary = json.loads((out / "deploy_summary.json").read_text())
    assert summary["successes"] == [True], text  # lifted from the camera and markers alone
    assert summary["perception"]["episodes"][0]["lost_frames"] == 0
    assert acted_on and all(np.all(np.isfinite(o)) for o in acted_on)
    written = [row[0] for row in perceived_rows]
    for obj in acted_on:  # each input is an object the wrapper wrote, not the poisoned state
        assert any(np.array_equal(obj, w) for w in written)
    for obj, estimate, truth in perceived_rows:
        assert estimate.pose is not None and len(estimate.markers) >= 1
        np.testing.assert_allclose(obj[:3], estimate.pose.position.astype(np.float32), atol=1e-6)
    errors_mm = [1e3 * float(np.linalg.norm(e.pose.position - t)) for _, e, t in perceived_rows]
    assert np.median(errors_mm) < 15.0 and max(errors_mm) < 50.0, errors_mm
    ep = DemoReader(out).load(0)
    assert np.all(np.isfinite(ep.obs["object"]))  # the recording keeps what the policy saw


# --- refusals, before anything is built ----------------------------------------------------

def _refusal(launch: Path, checkpoint: str = "scripted:proficient") -> str:
    from robolearn.commands import deploy

    with pytest.raises(ConfigError) as info:
        deploy.run(deploy_args(launch=str(launch), checkpoint=checkpoint, out=str(launch.parent / "never")))
    assert not (launch.parent / "never").exists()
    text = str(info.value)
    assert "\n" not in text
    return text


def test_a_missing_calibration_file_is_refused_naming_the_launch_field(tmp_path):
    launch = launch_copy(tmp_path, CAMERA_LAUNCH, with_calibration(str(tmp_path / "gone.yaml")))
    assert _refusal(launch).startswith(f"{launch}: field 'deploy.perception.calibration': no such file: {tmp_path / 'gone.yaml'}")


def test_an_unreadable_calibration_file_is_refused_naming_it(tmp_path):
    bad = tmp_path / "cal.yaml"
    bad.write_text(SIM_CALIBRATION.read_text().replace("width: 640", "width: true"))
    launch = launch_copy(tmp_path, CAMERA_LAUNCH, with_calibration(str(bad)))
    assert _refusal(launch).startswith(f"{bad}: field 'width': expected")


def test_a_stale_calibration_is_refused_naming_the_date_field(tmp_path):
    old = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    cal = calibration_copy(tmp_path, date=dt.datetime.now(dt.timezone.utc), extrinsic_date=old)

    def change(data):
        data["deploy"]["perception"].update(calibration=str(cal), max_calibration_age_days=30)

    text = _refusal(launch_copy(tmp_path, CAMERA_LAUNCH, change))
    assert text.startswith(f"{cal}: field 'extrinsic.date': calibrated ") and "older than max_age_days 30" in text


def test_a_calibration_of_another_resolution_or_camera_is_refused(tmp_path):
    small = calibration_copy(tmp_path, "small.yaml", width=320, height=240, K=np.array([[290.0, 0, 159.5], [0, 290, 119.5], [0, 0, 1]]))
    text = _refusal(launch_copy(tmp_path, CAMERA_LAUNCH, with_calibration(str(small))))
    assert text.startswith(f"{small}: field 'width': calibrated for 320x240, but the camera runs at 640x480")
    other = calibration_copy(tmp_path, "other.yaml", camera="agentview")
    assert _refusal(launch_copy(tmp_path, CAMERA_LAUNCH, with_calibration(str(other)))).startswith(
        f"{other}: field 'camera': calibrated camera 'agentview', but this view is 'perception'")


def test_a_calibration_without_a_base_frame_pose_is_refused(tmp_path):
    import dataclasses

    cal = load_calibration(SIM_CALIBRATION)
    cal.extrinsic = dataclasses.replace(cal.extrinsic, frame="gripper")
    path = write_calibration(tmp_path / "wrist.yaml", cal)
    assert _refusal(launch_copy(tmp_path, CAMERA_LAUNCH, with_calibration(str(path)))).startswith(
        f"{path}: field 'extrinsic.frame': 'gripper': perception needs a camera fixed in the cell")


def test_a_perception_view_that_is_not_configured_is_refused(tmp_path):
    def change(data):
        data["deploy"]["perception"]["view"] = "front"

    launch = launch_copy(tmp_path, CAMERA_LAUNCH, change)
    assert _refusal(launch).startswith(f"{launch}: field 'deploy.perception.view': 'front' is not a configured camera view "
                                       "(configured: ['perception'])")


def test_one_camera_has_one_calibration_file(tmp_path):
    """Without ``perception.calibration`` the view's own file is used; naming a second one is refused."""
    from robolearn.deploy import deployment_cameras, load_deploy
    from robolearn.hal.factory import load_controller
    from robolearn.perceived import plan_perception

    copy = calibration_copy(tmp_path, "copy.yaml")

    def view_names(path, perception_too):
        def change(data):
            data["deploy"]["cameras"]["views"]["perception"]["calibration"] = str(path)
            if not perception_too:
                del data["deploy"]["perception"]["calibration"]
        return change

    ctl = REPO / "controllers" / "robosuite_panda_osc.yaml"
    launch = load_deploy(str(launch_copy(tmp_path, CAMERA_LAUNCH, view_names(copy, perception_too=False))))
    cameras = deployment_cameras(launch, load_controller(ctl), ctl)
    plan = plan_perception(launch.deploy.perception, cameras, launch.source, "lift", simulated=True)
    assert plan.calibration_path == copy and plan.calibration.camera == "perception"
    launch = load_deploy(str(launch_copy(tmp_path, CAMERA_LAUNCH, view_names(copy, perception_too=True))))
    with pytest.raises(ConfigError, match=r"field 'deploy.perception.calibration': .*lift_perception.yaml is not the file "
                                          r"camera 'perception' names \(.*copy.yaml\); one camera has one calibration"):
        plan_perception(launch.deploy.perception, deployment_cameras(launch, load_controller(ctl), ctl), launch.source,
                        "lift", simulated=True)


@pytest.mark.parametrize("field, value, words", [
    ("hold_s", -1, "expected a number >= 0"), ("hold_s", True, "expected float"),
    ("estimator", "apriltag", "expected one of ['marker', 'ground_truth']"),
    ("max_calibration_age_days", 0, "expected a number greater than 0"),
])
def test_bad_perception_settings_are_one_line_errors_naming_the_field(tmp_path, field, value, words):
    from robolearn.deploy import load_deploy

    launch = launch_copy(tmp_path, CAMERA_LAUNCH, lambda d: d["deploy"]["perception"].update({field: value}))
    with pytest.raises(ConfigError) as info:
        load_deploy(str(launch))
    assert str(info.value).startswith(f"{launch}: field 'deploy.perception.{field}': ") and words in str(info.value)


# --- the real cell's launch file -----------------------------------------------------------

def test_the_real_cell_launch_loads_through_the_same_config_and_refuses_without_its_calibration(tmp_path):
    from robolearn.deploy import load_deploy

    launch = load_deploy(str(REAL_LAUNCH))
    assert (launch.deploy.arm, launch.deploy.perception.view, launch.deploy.perception.estimator) == ("ur", "front", "marker")
    assert launch.cameras.views["front"].type == "realsense" and launch.cameras.views["front"].width == 640
    assert launch.deploy.perception.max_calibration_age_days == 30
    text = _refusal(launch_copy(tmp_path, REAL_LAUNCH, lambda d: None))
    assert "field 'deploy.perception.calibration': no such file" in text and "robolearn calibrate" in text


def test_the_real_cell_plan_builds_without_hardware_and_names_missing_keys(lift_run, tmp_path, capsys):
    """With a fresh calibration the UR5e, the RealSense and the marker estimator are built (not
    connected): a policy that reads a key nothing there produces is refused, naming what produces
    each key; a policy that fits gets as far as the operator's confirmation, nothing moved."""
    from robolearn.deploy import deploy

    now = dt.datetime.now(dt.timezone.utc)
    cal = calibration_copy(tmp_path, camera="front", date=now, extrinsic_date=now)
    launch = launch_copy(tmp_path, REAL_LAUNCH, with_calibration(str(cal)))
    needs_more = untrained_policy(tmp_path, {**LIFT_KEYS, "robot0_joint_vel": (6,)})
    text = _refusal(launch, str(needs_more))
    assert text.startswith(f"{launch}: field 'deploy.arm': the policy needs observation keys ['robot0_joint_vel'] that nothing "
                           "configured produces (available: arm ur: ")
    assert "camera front: front_image, front_image_age_s" in text and "perception (marker on camera front): object" in text

    plans = []
    code = deploy(str(launch), str(lift_run), out=str(tmp_path / "d"), confirm=lambda plan: plans.append(plan) or False)
    assert code == 1 and "nothing was moved" in capsys.readouterr().out
    assert "perception: marker on camera 'front'" in plans[0] and str(cal) in plans[0]
    assert not (tmp_path / "d").exists()


def test_teleop_on_the_real_cell_records_what_deploy_would_feed_the_policy(tmp_path):
    """``robolearn teleop`` with the real cell's launch file builds the arm deploy drives: the
    RealSense inside the UR5e's shield and ``object`` from the perception camera (not connected)."""
    from robolearn.deploy import launch_arm, load_deploy
    from robolearn.hal.shield import SafetyShield
    from robolearn.perceived import PerceivedArm

    now = dt.datetime.now(dt.timezone.utc)
    cal = calibration_copy(tmp_path, camera="front", date=now, extrinsic_date=now)
    launch = load_deploy(str(launch_copy(tmp_path, REAL_LAUNCH, with_calibration(str(cal)))))
    built = launch_arm(launch, launch.deploy, task="lift", env_overrides={}, seed=None)
    assert isinstance(built.arm, PerceivedArm) and isinstance(built.arm.arm, SafetyShield) and built.shield is built.arm.arm
    assert built.arm.spec.obs_spec["front_image"].shape == (480, 640, 3) and built.arm.spec.obs_spec["object"].shape == (10,)
    assert built.made["object"] == "perception (marker on camera front)" and not built.arm.connected


def test_deploy_seeds_each_episode_by_the_runtime_rule():
    """A simulated task arm resets episode i with ``deployment_seeds(seed, i)``: not ``seed + i``,
    and never the reset states of collect's or eval's streams under the same seed."""
    from robolearn.runtime.seeds import demonstration_seeds, deployment_seeds, evaluation_seeds
    from robolearn.tasks.task_arm import TaskBoundArm

    class Env:
        arm = types.SimpleNamespace(spec=None, observe=lambda: None)

        def reset(self, seed):
            self.seed = seed

    arm = TaskBoundArm(Env(), seed=3)
    resets = []
    for _ in range(3):
        arm.home()
        resets.append(arm.last_reset_seed)
    assert resets == [deployment_seeds(3, i).reset for i in range(3)]
    assert arm.last_seeds.actor == deployment_seeds(3, 2).actor and isinstance(arm.last_seeds.actor, int)
    others = {evaluation_seeds(3, i).reset for i in range(3)} | {demonstration_seeds(3, i).reset for i in range(3)}
    assert not set(resets) & others


def test_calibrate_sim_camera_refuses_a_bad_size_before_building_the_scene(tmp_path, capsys):
    from robolearn import cli

    out = tmp_path / "cal.yaml"
    code = cli.main(["calibrate", "sim-camera", "--task", "lift", "--view", "perception", "--width", "0", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and not out.exists()
    assert err[-1].startswith("robolearn calibrate: error: --width: field 'width': expected whole numbers >= 1"), err


def test_a_marker_lost_past_the_bound_holds_the_arm_through_the_shield_and_fails_the_episode():
    """Seen for 3 frames, then never again, with a 2-frame bound: the last estimate is held for 2
    observations, then the arm is sent one zero-motion command (the last gripper command kept)
    through the shield, ``lost`` ends the episode and it is not a success."""
    from robolearn.deploy import run_episodes
    from robolearn.hal.factory import make_arm
    from robolearn.hal.loop import ControlLoop
    from robolearn.launch import DeployConfig
    from robolearn.perceived import PerceivedArm
    from robolearn.perception.base import Estimate
    from robolearn.perception.pose import CameraView, Pose

    class SeenThrice:
        calls = 0

        def estimate(self, frame, view, prior=None):
            self.calls += 1
            if self.calls <= 3:
                return Estimate(pose=Pose(np.array([0.5, 0.0, 0.1]), np.array([0.0, 0.0, 0.0, 1.0])), markers=(0,))
            return Estimate.missing("no known marker in view")

    class Push:
        def reset(self, seed=None):
            pass

        def act(self, obs):
            return np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], np.float32)  # forward, gripper closed

    shield = make_arm("noop")
    # The no-op arm has no camera: any key it reports stands in for the frame the stub estimator ignores.
    arm = PerceivedArm(shield, SeenThrice(), CameraView(intrinsics=None, T_arm_camera=np.eye(4)), "robot0_eef_pos", "lift",
                       max_held=2)
    arm.connect()
    try:
        loop = ControlLoop(arm, Push(), hz=200, reset_source=False)
        results, code = run_episodes(arm, loop, DeployConfig(arm="noop", episodes=1, max_steps=50), Push())
    finally:
        arm.close()
    (stats,) = results
    assert code == 0 and stats.stopped_by == "stop_when" and stats.success is False
    # frames: home (seen), begin (seen), step 1 (seen), 2 held, then lost: 3 policy steps and the hold
    assert stats.steps == 4 and shield.stats.commands == 5
    np.testing.assert_array_equal(shield.arm.last_command, [0, 0, 0, 0, 0, 0, 1])
    (episode,) = arm.episode_stats
    assert (episode.frames, episode.held_frames, episode.lost_frames) == (6, 2, 3)
    assert episode.lost_reason == "object lost (no known marker in view; held the last estimate for 2 frames)"
