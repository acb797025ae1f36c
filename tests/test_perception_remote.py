"""Perception on a camera served by the arm server: the camera on the robot host, ``object``
estimated on the policy host.

Real parts on both sides of a loopback socket: robosuite's Lift arm with its perception camera
(rendered through MuJoCo at 320 x 240) inside a ``CameraArm`` and its shield, served by an
in-process ``ArmServer`` as ``robolearn serve-arm`` serves a controller file with ``cameras:``;
on the policy host a launch file with ``arm: remote`` and no camera of its own, whose
``deploy.perception`` names the served view. The served arm's own ``object`` state is poisoned
to prove the policy only ever sees the estimate from the served frames."""
from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("robosuite")
pytest.importorskip("mujoco")
pytest.importorskip("cv2")

from robolearn.config import ConfigError  # noqa: E402
from robolearn.hal.cameras.calibration_file import load_calibration, write_calibration  # noqa: E402
from test_deploy_camera import LIFT_KEYS, SIM_CALIBRATION, deploy_args, poison_object_state, untrained_policy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 320, 240


def quarter_calibration(path: Path) -> Path:
    """The checked-in 640 x 480 calibration of Lift's perception camera at 320 x 240: focal
    lengths halved, MuJoCo's half-pixel principal point (what ``robolearn calibrate sim-camera``
    writes at that size; tests/test_deploy_camera.py compares the two)."""
    cal = load_calibration(SIM_CALIBRATION)
    K = cal.K.copy()
    K[:2, :2] /= 2
    K[:2, 2] = (K[:2, 2] + 0.5) / 2 - 0.5
    return write_calibration(path, dataclasses.replace(cal, width=WIDTH, height=HEIGHT, K=K))


@pytest.fixture(scope="module")
def robot_host(tmp_path_factory):
    """The Lift arm with its perception camera inside its shield, served on loopback."""
    from robolearn.hal.cameras.config import cameras_config
    from robolearn.hal.server import ArmServer
    from robolearn.tasks.task_arm import make_task_arm

    cameras = cameras_config({"max_frame_age_ms": 2000,
                              "views": {"perception": {"type": "mujoco", "width": WIDTH, "height": HEIGHT}}}, "robot host")
    arm = make_task_arm("robosuite", REPO / "controllers" / "robosuite_panda_osc.yaml", task="lift", seed=0,
                        cameras=(cameras, "robot host"))
    server = ArmServer(arm, heartbeat_ms=5000).start()
    root = tmp_path_factory.mktemp("robot_host")
    try:
        yield types.SimpleNamespace(server=server, env=arm.env, port=server.port,
                                    calibration=quarter_calibration(root / "perception_320.yaml"))
    finally:
        server.shutdown()


def remote_launch(tmp_path: Path, host, frame_encoding: str = "raw", **perception) -> Path:
    """A policy-host launch file: the served arm (``controllers/remote.yaml``'s settings, frames
    as ``frame_encoding`` says), no camera of its own, perception on the served view with the
    settings in ``perception`` over these (``...``: the setting left out)."""
    controller = yaml.safe_load((REPO / "controllers" / "remote.yaml").read_text())
    controller["params"].update(frame_encoding=frame_encoding, timeout_s=5.0)
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(controller))
    section = {"estimator": "marker", "view": "perception", "marker": dataclasses.asdict(host.env.marker_config()),
               "calibration": str(host.calibration), "hold_s": 0.5, "max_calibration_age_days": None}
    section.update(perception)
    data = {"task": "lift", "deploy": {"arm": "remote", "controller": str(tmp_path / "remote.yaml"), "host": "127.0.0.1",
                                      "port": host.port, "max_steps": 3, "episodes": 1, "record_images": False,
                                      "perception": {k: v for k, v in section.items() if v is not ...}}}
    path = tmp_path / "deploy_remote_camera.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cube_position(host) -> np.ndarray:
    from robolearn.hal.cameras.mujoco_camera import robosuite_handles
    from robolearn.perception.ground_truth import GroundTruth

    return GroundTruth(robosuite_handles(host.env.arm), "cube_main").pose().position


@pytest.fixture
def poisoned(monkeypatch):
    """The served task arm reports NaN as its ``object``: only the estimate can be finite."""
    poison_object_state(monkeypatch)


def test_deploy_estimates_the_object_from_the_served_frames(robot_host, poisoned, tmp_path, monkeypatch, capsys):
    """A Lift policy deployed through ``arm: remote``: each ``object`` the policy is given is the
    marker estimate from the frame that arrived over the socket, where the simulator has the cube."""
    from robolearn.commands import deploy
    from robolearn.data.format import DemoReader
    from robolearn.perceived import PerceivedArm

    rows = []  # (object written, estimate, frame it was estimated from)
    true_perceived = PerceivedArm._perceived

    def spy(self, obs):
        out = true_perceived(self, obs)
        rows.append((out.data["object"].copy(), self.last_estimate, obs.data.get("perception_image")))
        return out

    monkeypatch.setattr(PerceivedArm, "_perceived", spy)
    out = tmp_path / "deploy"
    policy = untrained_policy(tmp_path, LIFT_KEYS)  # reads object (10,) and the arm's keys
    code = deploy.run(deploy_args(launch=str(remote_launch(tmp_path, robot_host)), checkpoint=str(policy), out=str(out)))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "perception: marker on served camera 'perception'" in text and str(robot_host.calibration) in text
    (episode,) = json.loads((out / "deploy_summary.json").read_text())["perception"]["episodes"]
    assert episode["frames"] >= 4 and episode["lost_frames"] == 0
    truth = cube_position(robot_host)
    for obj, estimate, frame in rows:
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8  # the served frame, raw
        assert estimate.pose is not None and len(estimate.markers) >= 1
        np.testing.assert_allclose(obj[:3], estimate.pose.position.astype(np.float32), atol=1e-6)
        assert 1e3 * np.linalg.norm(estimate.pose.position - truth) < 15.0  # the cube stays put for 3 steps
    ep = DemoReader(out).load(0)
    assert ep.length == 3 and np.all(np.isfinite(ep.obs["object"]))  # never the poisoned state
    assert any(np.array_equal(ep.obs["object"][0], obj) for obj, _, _ in rows)


def test_launch_arm_names_the_served_camera_and_estimates_on_decoded_jpeg_frames(robot_host, poisoned, tmp_path):
    """With ``frame_encoding: jpeg`` the estimator runs on the decoded frame, still within 15 mm;
    ``made`` says the object comes from perception on the served camera, and the policy host
    builds no camera of its own."""
    from robolearn.deploy import launch_arm, load_deploy
    from robolearn.hal.remote import RemoteArm
    from robolearn.hal.shield import SafetyShield
    from robolearn.perceived import PerceivedArm

    launch = load_deploy(str(remote_launch(tmp_path, robot_host, frame_encoding="jpeg")))
    built = launch_arm(launch, launch.deploy, task="lift", env_overrides={}, seed=None)
    assert built.made["object"] == "perception (marker on served camera perception)"
    assert built.made["perception_image"] == "arm robosuite_panda_lift"  # the served arm brings its frames
    assert isinstance(built.arm, PerceivedArm) and isinstance(built.arm.arm, SafetyShield)
    assert isinstance(built.arm.arm.arm, RemoteArm) and built.cameras is None and built.perception.served
    assert not built.arm.connected
    built.arm.connect()
    try:
        obs = [built.arm.home()] + [built.arm.observe() for _ in range(2)]
        estimate = built.arm.last_estimate
    finally:
        built.arm.close()
    assert built.arm.arm.arm.frame_codec.encoding == "jpeg"
    assert all(np.all(np.isfinite(o.data["object"])) for o in obs)
    assert estimate.pose is not None and 1e3 * np.linalg.norm(estimate.pose.position - cube_position(robot_host)) < 15.0


# --- refusals, before the arm takes control ------------------------------------------------

def refusal(host, launch: Path) -> str:
    """The one-line ConfigError ``robolearn deploy`` ends with; nothing took control of the
    served arm, no command reached it, no recording was started."""
    from robolearn.commands import deploy
    from robolearn.hal.remote import RemoteArm

    commands = host.server.stats.commands
    with pytest.raises(ConfigError) as info:
        deploy.run(deploy_args(launch=str(launch), out=str(launch.parent / "never")))
    assert not (launch.parent / "never").exists()
    assert RemoteArm(port=host.port).server_info()["controlled"] is False and host.server.stats.commands == commands
    text = str(info.value)
    assert "\n" not in text
    return text


def test_a_view_neither_local_nor_served_is_refused_listing_both(robot_host, tmp_path):
    launch = remote_launch(tmp_path, robot_host, view="front")
    assert refusal(robot_host, launch) == (
        f"{launch}: field 'deploy.perception.view': 'front' is neither a configured camera view (configured: none) nor one "
        "the arm server serves (served: ['perception']); add it under deploy.cameras.views, or to the cameras: of the "
        "controller file the robot host serves")


def test_a_served_view_without_a_calibration_file_is_refused(robot_host, tmp_path):
    launch = remote_launch(tmp_path, robot_host, calibration=...)
    text = refusal(robot_host, launch)
    assert text.startswith(f"{launch}: field 'deploy.perception.calibration': missing: the marker estimator needs the "
                           "camera's calibration file")
    assert text.endswith("view 'perception' is served by the arm server, with no local camera config to name it, so name it here")


def test_a_calibration_of_another_resolution_than_the_served_frames_is_refused(robot_host, tmp_path):
    launch = remote_launch(tmp_path, robot_host, calibration=str(SIM_CALIBRATION))
    assert refusal(robot_host, launch).startswith(
        f"{SIM_CALIBRATION}: field 'width': calibrated for 640x480, but the camera runs at {WIDTH}x{HEIGHT}")
