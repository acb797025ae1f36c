"""Perception: the marker estimator on synthetic and MuJoCo-rendered views, the lost-marker bound,
config errors, the object layouts, and markers that leave the physics untouched."""
from __future__ import annotations

import math

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.geometry import axis_angle_to_quat, quat_to_mat
from robolearn.hal.cameras.base import Frame, Intrinsics
from robolearn.perception.base import Estimate
from robolearn.perception.config import load_perception_file, marker_config
from robolearn.perception.episode import PerceivedTask, check_perception_args
from robolearn.perception.lost import HELD, LOST, SEEN, LostMarkerPolicy
from robolearn.geometry import invert, make_transform, pose_to_matrix
from robolearn.perception.pose import CameraView, Pose

cv2 = pytest.importorskip("cv2")
pytest.importorskip("cv2.aruco")


# --- the estimator on a synthetic view --------------------------------------------------------

def _marker_texture(marker_id: int, px_per_cell: int = 16) -> np.ndarray:
    d = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    m = cv2.aruco.generateImageMarker(d, marker_id, 6 * px_per_cell)
    return cv2.copyMakeBorder(m, px_per_cell, px_per_cell, px_per_cell, px_per_cell, cv2.BORDER_CONSTANT, value=255)


def _draw_marker(K: np.ndarray, T_camera_marker: np.ndarray, size_m: float, marker_id: int) -> np.ndarray:
    """A 640 x 480 RGB picture of the marker (with its white margin) at ``T_camera_marker``: the
    texture warped by the homography its plate's corners project with."""
    tex = _marker_texture(marker_id)
    n = tex.shape[0]
    h = size_m * 8 / 6 / 2  # the plate: 6 marker cells plus a one-cell margin each side
    plate = np.array([[-h, h, 0], [h, h, 0], [h, -h, 0], [-h, -h, 0]])
    cam = plate @ T_camera_marker[:3, :3].T + T_camera_marker[:3, 3]
    img_pts = (cam @ K.T)[:, :2] / cam[:, 2:]
    tex_pts = np.array([[-0.5, -0.5], [n - 0.5, -0.5], [n - 0.5, n - 0.5], [-0.5, n - 0.5]])
    H = cv2.getPerspectiveTransform(tex_pts.astype(np.float32), img_pts.astype(np.float32))
    gray = cv2.warpPerspective(tex, H, (640, 480), flags=cv2.INTER_LINEAR, borderValue=110)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


@pytest.mark.parametrize("refinement, mm, deg", [("subpix", 5.0, 1.5), ("apriltag", 1.5, 0.5)])
def test_marker_estimator_recovers_a_known_pose_from_a_synthetic_view(refinement, mm, deg):
    """A marker drawn by its homography at a known pose, with a known marker-to-object offset and
    camera extrinsics: the object's pose in the arm frame comes back within tolerance. One 40 mm
    marker at 0.4-0.55 m (45-60 px): sub-pixel corners sit ~0.1-0.2 px inside the square, which
    is mm in depth; AprilTag's refinement (half-pixel corrected) is tighter."""
    from robolearn.perception.marker import MarkerEstimator

    size = 0.04
    offset = {"id": 7, "position": [0.0, 0.0, 0.025], "quaternion": [0.0, 0.0, 0.0, 1.0]}  # marker 25 mm above the centre
    est = MarkerEstimator(marker_config({"size_m": size, "markers": [offset], "corner_refinement": refinement}, "test"))
    K = Intrinsics(fx=600.0, fy=600.0, cx=319.5, cy=239.5)
    T_arm_camera = make_transform(quat_to_mat(axis_angle_to_quat([math.radians(-120), 0, 0])), [0.5, 0.1, 1.2])
    for tilt, yaw, t in ((25, 10, [0.02, -0.01, 0.40]), (-35, 70, [-0.05, 0.03, 0.55])):
        q = axis_angle_to_quat([math.radians(180 + tilt), 0, 0])  # the face turned to the camera, then tilted
        r = quat_to_mat(axis_angle_to_quat([0, 0, math.radians(yaw)])) @ quat_to_mat(q)
        T_camera_marker = make_transform(r, t)
        image = _draw_marker(K.matrix(), T_camera_marker, size, 7)
        e = est.estimate(Frame(image=image, timestamp=0.0, index=0), CameraView(K, T_arm_camera))
        assert e.pose is not None, e.reason
        T_marker_object = invert(pose_to_matrix(np.array(offset["position"]), np.array(offset["quaternion"])))
        truth = Pose.from_matrix(T_arm_camera @ T_camera_marker @ T_marker_object)
        pos_mm, rot_deg = e.pose.errors_to(truth)
        assert pos_mm < mm and rot_deg < deg, (tilt, yaw, pos_mm, rot_deg)
        assert e.markers == (7,) and e.reprojection_px < 0.5

    blank = np.full((480, 640, 3), 110, np.uint8)
    miss = est.estimate(Frame(image=blank, timestamp=0.0, index=0), CameraView(K, T_arm_camera))
    assert miss.pose is None and "no known marker" in miss.reason


# --- the lost-marker bound --------------------------------------------------------------------

def test_lost_marker_policy_holds_the_last_estimate_for_a_bounded_time_then_fails_for_good():
    pose = Pose(np.array([0.1, 0.0, 0.8]), np.array([0.0, 0.0, 0.3, -0.95]))
    policy = LostMarkerPolicy(max_held=3)
    first = policy.update(Estimate(pose=pose))
    assert first.status == SEEN and first.pose.quaternion[2] > 0  # robosuite's sign: z >= 0 to start
    held = [policy.update(Estimate.missing("occluded")) for _ in range(3)]
    assert [t.status for t in held] == [HELD] * 3
    assert all(np.array_equal(t.pose.position, pose.position) for t in held)
    lost = policy.update(Estimate.missing("occluded"))
    assert lost.status == LOST and lost.pose is None and "held the last estimate for 3 frames" in lost.reason
    assert policy.update(Estimate(pose=pose)).status == LOST  # a marker seen again does not revive a failed episode
    policy.reset()
    assert policy.update(Estimate.missing("not yet")).status == LOST  # nothing to hold
    with pytest.raises(ValueError):
        LostMarkerPolicy(max_held=-1)


class _Spec:
    def bounds(self):
        return -np.ones(7, np.float32), np.ones(7, np.float32)


class _FakeTask:
    """A task whose observation is a constant; it records the commands it is sent."""

    name = "lift"
    horizon = 50
    action_spec = _Spec()

    def __init__(self):
        self.sent: list[np.ndarray] = []

    def _obs(self):
        return {"robot0_eef_pos": np.zeros(3, np.float32), "robot0_eef_quat": np.array([0, 0, 0, 1], np.float32),
                "object": np.full(10, 9.0, np.float32)}

    def reset(self, seed=None):
        return self._obs()

    def step(self, action):
        from robolearn.tasks.base import StepResult

        self.sent.append(np.asarray(action, np.float32).copy())
        # the hold step would succeed (say the cube was already in the air): it must still fail
        return StepResult(obs=self._obs(), reward=0.0, done=False, success=bool(action[0] == 0))


class _FakeCamera:
    connected = True

    def read(self):
        return Frame(image=np.zeros((4, 4, 3), np.uint8), timestamp=0.0, index=0)

    def close(self):
        pass


class _ScriptedEstimator:
    """Sees the object for the first ``seen`` frames, then never again."""

    def __init__(self, seen: int):
        self.seen, self.calls = seen, 0

    def estimate(self, frame, view, prior=None):
        self.calls += 1
        if self.calls <= self.seen:
            return Estimate(pose=Pose(np.array([0.0, 0.0, 0.82]), np.array([0.0, 0.0, 0.0, 1.0])))
        return Estimate.missing("occluded")


def test_a_lost_object_holds_the_arm_and_fails_the_episode_within_the_bound():
    """Through the episode loop: the estimate replaces the simulator's object; past the hold bound
    the next command is the hold (no motion, the gripper's last command) and the episode ends failed."""
    from robolearn.runtime.rollout import rollout

    class Closer:
        def act(self, obs):
            assert obs["object"][0] != 9.0  # never the simulator's state
            return np.array([0.5, 0, 0, 0, 0, 0, 1.0], np.float32)

    task = _FakeTask()
    env = PerceivedTask(task, [(_FakeCamera(), lambda: None)], _ScriptedEstimator(seen=2), None, max_held=4)
    r = rollout(env, Closer(), 0, stop_on_success=False)
    # frames: reset + 1 step seen, 4 held, the 5th miss is lost, then one hold step ends it
    assert r.length == 7 and not r.success
    assert np.array_equal(task.sent[-1], np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32))
    assert all(s[0] == 0.5 for s in task.sent[:-1])
    assert env.stats.lost_frames == 5 and env.stats.held_frames == 4 and "object lost" in env.stats.lost_reason
    assert np.all(r.obs["object"][-2:] == 0)  # once lost, nothing to steer by


# --- bad settings ---------------------------------------------------------------------------

GOOD = {"size_m": 0.03, "markers": [{"id": 0, "position": [0, 0, 0.02]}]}


@pytest.mark.parametrize("change, field, words", [
    ({"size_m": True}, "size_m", "expected float"),
    ({"size_m": -0.03}, "size_m", "greater than 0"),
    ({"size_m": float("nan")}, "size_m", "finite"),
    ({"max_reprojection_px": 0}, "max_reprojection_px", "greater than 0"),
    ({"dictionary": "DICT_9X9_1"}, "dictionary", "expected one of"),
    ({"markers": []}, "markers", "at least one"),
    ({"markers": [{"id": 50}]}, "markers[0].id", "ids 0..49"),
    ({"markers": [{"id": -1}]}, "markers[0].id", ">= 0"),
    ({"markers": [{"id": 1}, {"id": 1}]}, "markers[1].id", "placed twice"),
    ({"markers": [{"id": 1, "quaternion": [0, 0, 0, 0]}]}, "markers[0].quaternion", "non-zero"),
    ({"markers": [{"id": 1, "position": [0, 0]}]}, "markers[0].position", "3 values"),
    ({"size": 0.03}, "size", "unknown key"),
])
def test_bad_marker_settings_are_one_line_errors_naming_the_field(change, field, words):
    with pytest.raises(ConfigError) as caught:
        marker_config({**GOOD, **change}, "cell.yaml")
    assert caught.value.field == field and words in caught.value.problem and "\n" not in str(caught.value)
    assert str(caught.value).startswith("cell.yaml: field")


@pytest.mark.parametrize("extrinsics, field, words", [
    ({"matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}, "extrinsics.matrix", "4 rows"),
    ({"matrix": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "extrinsics.matrix", "rigid"),
    ({"matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "position": [0, 0, 0]}, "extrinsics.matrix", "not both"),
    ({"position": [0, 0, 1]}, "extrinsics.position", "both position and quaternion"),
    ({"position": [0, 0, 1], "quaternion": [0, 0, 0, 0]}, "extrinsics.quaternion", "non-zero"),
    ({"position": [0, 0, ".inf"], "quaternion": [0, 0, 0, 1]}, "extrinsics.position[2]", "expected float"),
])
def test_a_perception_file_with_bad_extrinsics_is_refused_naming_the_file(tmp_path, extrinsics, field, words):
    import yaml

    path = tmp_path / "cell_perception.yaml"
    path.write_text(yaml.safe_dump({"marker": GOOD, "extrinsics": extrinsics, "lost": {"hold_s": 0.3}}))
    with pytest.raises(ConfigError) as caught:
        load_perception_file(path)
    assert caught.value.source == str(path) and caught.value.field == field and words in caught.value.problem


def test_a_good_perception_file_loads_markers_extrinsics_and_the_hold_bound(tmp_path):
    import yaml

    path = tmp_path / "cell_perception.yaml"
    path.write_text(yaml.safe_dump({"marker": GOOD, "extrinsics": {"position": [0.5, 0, 1], "quaternion": [0, 0, 0, 1]},
                                    "lost": {"hold_s": 0.25}}))
    markers, T, lost = load_perception_file(path)
    assert markers.size_m == 0.03 and np.allclose(T[:3, 3], [0.5, 0, 1]) and lost.hold_s == 0.25
    for bad in ({"hold_s": -1}, {"hold_s": True}):
        path.write_text(yaml.safe_dump({"marker": GOOD, "extrinsics": {"matrix": np.eye(4).tolist()}, "lost": bad}))
        with pytest.raises(ConfigError, match="lost.hold_s"):
            load_perception_file(path)


def test_eval_refuses_bad_perception_arguments_before_any_work():
    from robolearn.evaluate import evaluate_run

    with pytest.raises(ConfigError, match="--perception: field 'perception'"):
        evaluate_run("no/such/run", episodes=1, perception="camera", progress=False)
    with pytest.raises(ConfigError, match="perception_hold_s"):
        evaluate_run("no/such/run", episodes=1, perception="marker", perception_hold_s=-0.5, progress=False)
    check_perception_args("ground_truth", 0)


# --- Lift in MuJoCo: rendered markers, the layout, and the physics unchanged ------------------

@pytest.fixture(scope="module")
def lift():
    from robolearn.tasks.base import make_env

    env = make_env("lift", horizon=3)
    yield env
    env.close()


def test_the_lift_object_written_from_a_pose_is_robosuites(lift):
    """The ``object`` written from the simulator's own pose (the ground-truth control, which renders
    nothing) is the task's ``object``: the layout matches robosuite's."""
    from robolearn.perception.episode import perceived_task

    env = perceived_task(lift, "ground_truth", hold_s=0.5)
    for seed in (0, 1):
        env.reset(seed=seed)
        obs = env.step(np.array([0.6, -0.4, -0.8, 0, 0, 0.4, -1.0], np.float32)).obs
        assert np.allclose(obs["object"], lift.observe()["object"], atol=1e-6)
        assert env.stats.frames == 2 and max(env.stats.pos_err_mm) < 1e-9 and env.stats.lost_frames == 0


def _cube_trajectory(arm, steps: int = 45) -> tuple[np.ndarray, np.ndarray]:
    """Reach down to the cube, close, lift: the cube is touched, pushed and carried."""
    from robolearn.tasks.lift import _lift_object

    arm._object_fn = _lift_object
    obs = arm.reset(3).data
    actions, cube = [], []
    for t in range(steps):
        to_cube = obs["object"][7:10] * -1  # cube minus hand
        grip = 1.0 if t > 25 else -1.0
        move = np.clip(to_cube * 20, -1, 1) if t < 30 else np.array([0, 0, 1.0])
        a = np.concatenate([move, np.zeros(3), [grip]]).astype(np.float32)
        actions.append(a)
        arm.send(a)
        obs = arm.observe().data
        cube.append(np.asarray(obs["object"][:7], np.float64))
    return np.stack(actions), np.stack(cube)


def test_the_marker_plates_and_camera_leave_the_dynamics_unchanged(lift):
    """robosuite's own Lift and the marked one, the same seed and the same commands: the cube's
    trajectory is bit-identical (the plates are visual: no contacts, no mass)."""
    from robolearn.hal.robosuite_arm import RobosuiteArm

    plain = RobosuiteArm("Lift", object_dim=10, seed=None)
    try:
        plain.connect()
        actions, plain_cube = _cube_trajectory(plain)
        assert np.ptp(plain_cube[:, 2]) > 1e-3  # the cube was moved: contacts took part
        marked = lift.arm
        _, marked_cube = _cube_trajectory(marked)
    finally:
        plain.close()
    assert np.array_equal(plain_cube, marked_cube)
    m = lift.sim_env.sim.model._model
    import mujoco

    geoms = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"cube_marker{i}") for i in range(5)]
    assert min(geoms) >= 0 and all(m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0 for g in geoms)


def test_an_eval_episode_on_rendered_lift_frames_is_within_5_mm_and_3_degrees(lift, tmp_path):
    """``robolearn eval --perception marker``'s episode: on the perception camera's 640 x 480 frames
    of the rendered cube, the estimate is within the targets of the simulator's state on every
    frame, and the episode's errors and lost frames reach the eval JSON's ``perception`` section."""
    import torch

    from robolearn.algos.base import algo_class
    from robolearn.evaluate import _run_episode
    from robolearn.models.encoders import ObsKey, unit_normalizers
    from robolearn.perception.episode import perceived_task, perception_summary
    from robolearn.policy import load_policy, save_checkpoint

    torch.manual_seed(0)
    spec = {k: ObsKey(tuple(v.shape)) for k, v in lift.obs_spec.items()}
    save_checkpoint(tmp_path / "ckpt", algo_class("bc").build({}, spec, unit_normalizers(spec), 7), step=0, meta={"task": "lift"})
    env = perceived_task(lift, "marker", hold_s=0.5)
    try:
        w = {"policy": load_policy(tmp_path / "ckpt"), "env": env, "video_dir": None, "fps": 20.0, "video_episodes": None}
        result = _run_episode(w, (0, 0))
    finally:
        for camera, _ in env.cameras:
            camera.close()
    assert result["length"] == 3 and result["perception"]["frames"] == 4
    assert max(result["perception"]["pos_err_mm"]) < 5.0 and max(result["perception"]["rot_err_deg"]) < 3.0, result["perception"]
    s = perception_summary([result["perception"]], "marker", 0.5)
    assert s["estimated_frames"] == 4 and s["lost_frames"] == 0 and s["lost_episodes"] == 0
    assert 0 <= s["pos_err_mm_median"] < 5.0 and 0 <= s["rot_err_deg_median"] < 3.0


def test_can_carries_markers_and_its_layout_is_robosuites(tmp_path):
    """Can: the ``object`` written from the simulator's pose is robosuite's (position and rotation in
    the hand's frame included), and the rendered can's estimate at the start is within the targets."""
    from robolearn.perception.episode import perceived_task
    from robolearn.perception.layouts import object_vector
    from robolearn.tasks.base import make_env

    env = perceived_task(make_env("can", horizon=3), "marker", hold_s=0.5)
    try:
        obs = env.reset(seed=2)
        truth = env.env.observe()["object"]
        mine = object_vector("can", env.truth.pose(), obs)
        assert np.allclose(mine, truth, atol=1e-5), (mine, truth)
        assert env.stats.lost_frames == 0
        assert env.stats.pos_err_mm[0] < 5.0 and env.stats.rot_err_deg[0] < 3.0, env.stats
    finally:
        env.close()
