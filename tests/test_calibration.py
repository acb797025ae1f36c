"""Camera calibration: intrinsics and hand-eye on synthetic and rendered views, the calibration
file and its errors, controller views naming a calibration file, and the command end to end."""
from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

cv2 = pytest.importorskip("cv2")

from robolearn.calibration.board import Board, BoardConfig, Detection, board_config  # noqa: E402
from robolearn.calibration.errors import CalibrationError  # noqa: E402
from robolearn.hal.cameras.calibration_file import (CameraCalibration, check_calibration, load_calibration,  # noqa: E402
                                        write_calibration)
from robolearn.calibration.handeye import solve_hand_eye  # noqa: E402
from robolearn.calibration.intrinsics import board_pose, calibrate_intrinsics  # noqa: E402
from robolearn.calibration.sim import look_at  # noqa: E402
from robolearn.geometry import difference, invert, make_transform  # noqa: E402
from robolearn.config import ConfigError  # noqa: E402
from robolearn.geometry import axis_angle_to_quat, quat_to_mat  # noqa: E402

BOARD = BoardConfig(squares_x=7, squares_y=5, square_length_m=0.04, marker_length_m=0.03)
K_TRUE = np.array([[610.0, 0.0, 318.0], [0.0, 612.0, 243.0], [0.0, 0.0, 1.0]])
DIST_TRUE = np.array([-0.12, 0.08, 0.0005, -0.0004, 0.0])
W, H = 640, 480


@pytest.fixture(scope="module")
def board() -> Board:
    return Board(BOARD)


def rotation(rng: np.random.Generator, scale: float) -> np.ndarray:
    return quat_to_mat(axis_angle_to_quat(rng.normal(0.0, scale, 3)))


def camera_views(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """T_board_camera poses looking at varied points of the board from 0.35-0.55 m, tilted up to ~35 degrees."""
    out = []
    w, h = BOARD.size_m
    for _ in range(count):
        tilt, heading = math.radians(rng.uniform(5, 35)), rng.uniform(0, 2 * math.pi)
        direction = np.array([math.sin(tilt) * math.cos(heading), math.sin(tilt) * math.sin(heading), -math.cos(tilt)])
        target = np.array([w / 2 + rng.uniform(-0.05, 0.05), h / 2 + rng.uniform(-0.04, 0.04), 0.0])
        out.append(look_at(target + rng.uniform(0.35, 0.55) * direction, target, roll=rng.uniform(-0.5, 0.5)))
    return out


def project(board: Board, T_camera_board: np.ndarray, rng: np.random.Generator, noise_px: float, name: str) -> Detection:
    """The board corners as the camera (K_TRUE, DIST_TRUE) sees them, with Gaussian pixel noise."""
    pts = board.corner_points()
    rvec = cv2.Rodrigues(T_camera_board[:3, :3])[0]
    pix, _ = cv2.projectPoints(pts, rvec, T_camera_board[:3, 3], K_TRUE, DIST_TRUE)
    pix = pix.reshape(-1, 2) + rng.normal(0.0, noise_px, (len(pts), 2))
    inside = (pix[:, 0] > 0) & (pix[:, 0] < W) & (pix[:, 1] > 0) & (pix[:, 1] < H)
    return Detection(pts[inside].astype(np.float32), pix[inside].astype(np.float32), np.flatnonzero(inside), name)


def test_synthetic_views_recover_the_focal_length_within_one_percent(board):
    rng = np.random.default_rng(0)
    detections = [project(board, invert(v), rng, 0.3, f"view {i}") for i, v in enumerate(camera_views(rng, 12))]
    result = calibrate_intrinsics(detections, W, H)
    assert abs(result.K[0, 0] / K_TRUE[0, 0] - 1) < 0.01 and abs(result.K[1, 1] / K_TRUE[1, 1] - 1) < 0.01
    assert abs(result.K[0, 2] - K_TRUE[0, 2]) < 5 and abs(result.K[1, 2] - K_TRUE[1, 2]) < 5
    assert 0.2 < result.rms_px < 0.5  # the noise put in (0.3 px per axis)
    assert result.views == 12 and len(result.board_poses) == 12


def test_too_few_views_or_corners_are_refused_in_one_line(board):
    rng = np.random.default_rng(1)
    views = [project(board, invert(v), rng, 0.2, f"view {i}") for i, v in enumerate(camera_views(rng, 6))]
    few = [Detection(d.object_points[:4], d.image_points[:4], d.ids[:4], d.source) for d in views[:3]]
    with pytest.raises(CalibrationError) as err:
        calibrate_intrinsics(views[:3] + few, W, H, source="runs/calib/wrist")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("runs/calib/wrist: field 'views': 3 of 6 views show at least 6")
    with pytest.raises(CalibrationError, match="RMS reprojection error"):
        noisy = [project(board, invert(v), rng, 3.0, f"view {i}") for i, v in enumerate(camera_views(rng, 8))]
        calibrate_intrinsics(noisy, W, H, max_rms_px=1.0)


def hand_eye_samples(board: Board, mode: str, truth: np.ndarray, rng: np.random.Generator, count: int = 12):
    """(T_base_gripper, T_camera_board measured from noisy projected corners) pairs.

    eye-in-hand: truth = T_gripper_camera, the board fixed in the base frame.
    eye-to-hand: truth = T_base_camera, the board held by the gripper."""
    T_base_board = make_transform(rotation(rng, 0.2), [0.5, -0.1, 0.0])
    T_gripper_board = make_transform(np.eye(3), [-0.14, -0.1, 0.12])
    robot, boards = [], []
    for T_board_camera in camera_views(rng, count):
        if mode == "eye-in-hand":
            T_base_gripper = T_base_board @ T_board_camera @ invert(truth)
        else:
            T_base_gripper = truth @ invert(T_board_camera) @ invert(T_gripper_board)
        d = project(board, invert(T_board_camera), rng, 0.3, "view")
        robot.append(T_base_gripper)
        boards.append(board_pose(d, K_TRUE, DIST_TRUE, source="synthetic")[0])
    return robot, boards


@pytest.mark.parametrize("mode", ["eye-in-hand", "eye-to-hand"])
def test_hand_eye_recovers_the_extrinsic_within_5_mm_and_1_degree_by_both_methods(board, mode):
    rng = np.random.default_rng(2)
    truth = make_transform(rotation(rng, 0.3), [0.04, -0.05, 0.07]) if mode == "eye-in-hand" else \
        make_transform(quat_to_mat(axis_angle_to_quat([math.pi * 0.9, 0.0, 0.1])), [0.6, 0.3, 0.8])
    robot, boards = hand_eye_samples(board, mode, truth, rng)
    result = solve_hand_eye(robot, boards, mode)
    for name in ("tsai", "horaud"):
        mm, deg = difference(result.solutions[name].transform, truth)
        assert mm < 5.0 and deg < 1.0, (name, mm, deg)
    assert result.frame == ("gripper" if mode == "eye-in-hand" else "base")
    assert result.disagreement_mm < 5.0 and result.chosen in ("tsai", "horaud")


def test_hand_eye_refuses_poses_without_rotation_and_methods_that_disagree(board):
    rng = np.random.default_rng(3)
    truth = make_transform(rotation(rng, 0.3), [0.04, -0.05, 0.07])
    robot, boards = hand_eye_samples(board, "eye-in-hand", truth, rng)
    shifted = [make_transform(np.eye(3), [0.1 * i, 0.0, 0.0]) for i in range(5)]
    with pytest.raises(CalibrationError, match="turns by less than 5 degrees"):
        solve_hand_eye(shifted, boards[:5], "eye-in-hand")
    spun = [make_transform(quat_to_mat(axis_angle_to_quat([0.0, 0.0, 0.3 * i])), [0.0, 0.0, 0.0]) for i in range(5)]
    with pytest.raises(CalibrationError, match="about one axis only"):
        solve_hand_eye(spun, boards[:5], "eye-in-hand")
    with pytest.raises(CalibrationError) as err:
        solve_hand_eye(robot, boards, "eye-in-hand", source="samples.yaml", max_disagreement_mm=1e-6)
    assert "\n" not in str(err.value) and "Tsai and Horaud disagree by" in str(err.value)
    robot[4] = robot[4] @ make_transform(np.eye(3), [0.05, 0.0, 0.0])  # one pose 5 cm off its image
    assert solve_hand_eye(robot, boards, "eye-in-hand").solutions["tsai"].residual_mm > 5.0


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, board):
    """Rendered MuJoCo eye-in-hand samples (12 frames at 640x480), saved as a samples folder."""
    from robolearn.calibration.workflow import render_sim_samples

    folder = tmp_path_factory.mktemp("handeye")
    truth = render_sim_samples(board, "eye-in-hand", 12, folder, fovy_deg=50.0, seed=0)
    return folder, truth


def test_rendered_mujoco_views_recover_the_fovy_focal_length_and_camera_pose(rendered, board, tmp_path):
    from robolearn.calibration.workflow import calibrate_hand_eye, calibrate_images

    folder, truth = rendered
    assert truth.focal_px == pytest.approx(240.0 / math.tan(math.radians(25.0)))
    cal, result = calibrate_images(board, folder / "images", "calib", tmp_path / "cam.yaml")
    assert abs(cal.K[0, 0] / truth.focal_px - 1) < 0.01 and abs(cal.K[1, 1] / truth.focal_px - 1) < 0.01
    assert result.views == 12 and result.rms_px < 0.5
    cal, he = calibrate_hand_eye(folder, tmp_path / "cam.yaml", "eye-in-hand", tmp_path / "he.yaml", board=board)
    for sol in he.solutions.values():
        mm, deg = difference(sol.transform, truth.extrinsic)
        assert mm < 5.0 and deg < 1.0
    loaded = load_calibration(tmp_path / "he.yaml")
    assert loaded.extrinsic.frame == "gripper" and difference(loaded.extrinsic.transform, truth.extrinsic)[0] < 5.0


def calibration(**changes) -> CameraCalibration:
    cal = CameraCalibration(camera="wrist", width=W, height=H, K=K_TRUE.copy(), distortion=DIST_TRUE.copy(), rms_px=0.21,
                            views=14, date=dt.datetime(2025, 1, 31, 10, 0, tzinfo=dt.timezone.utc))
    for k, v in changes.items():
        setattr(cal, k, v)
    return cal


def test_calibration_file_round_trip(tmp_path, board):
    from robolearn.hal.cameras.calibration_file import Extrinsic

    x = make_transform(quat_to_mat(axis_angle_to_quat([0.1, -0.2, 3.0])), [0.03, -0.06, 0.04])
    cal = calibration(extrinsic=Extrinsic("gripper", x, "horaud", 15, 0.4, 0.05, 0.2, 0.01, {"tsai": x, "horaud": x},
                                          date=dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc)))
    path = write_calibration(tmp_path / "cal" / "wrist.yaml", cal)
    assert [p.name for p in path.parent.iterdir()] == ["wrist.yaml"]  # no temporary left behind
    back = load_calibration(path)
    assert back.camera == "wrist" and (back.width, back.height, back.views) == (W, H, 14)
    np.testing.assert_allclose(back.K, K_TRUE)
    np.testing.assert_allclose(back.distortion, DIST_TRUE)
    np.testing.assert_allclose(back.extrinsic.transform, x, atol=1e-8)
    assert back.date == cal.date and back.extrinsic.alternatives.keys() == {"tsai", "horaud"}
    assert back.intrinsics.fx == 610.0 and back.intrinsics.cy == 243.0


BAD_FIELDS = [
    (lambda d: d["K"][0].__setitem__(0, float("nan")), "K[0][0]", "finite"),
    (lambda d: d["K"].pop(), "K", "3x3"),
    (lambda d: d["K"][1].__setitem__(1, True), "K[1][1]", "expected float"),
    (lambda d: d["K"][0].__setitem__(0, -5.0), "K (fx)", "focal length"),
    (lambda d: d["K"][0].__setitem__(2, 900.0), "K (cx)", "outside the image"),
    (lambda d: d.__setitem__("distortion", [0.1, 0.2, 0.3]), "distortion", "got 3"),
    (lambda d: d.__setitem__("rms_px", -1.0), "rms_px", ">= 0"),
    (lambda d: d.pop("width"), "width", "missing required key"),
    (lambda d: d.pop("date"), "date", "missing required key"),
    (lambda d: d.__setitem__("date", "last tuesday"), "date", "ISO 8601"),
    (lambda d: d.__setitem__("focal", 600), "focal", "unknown key"),
    (lambda d: d.__setitem__("extrinsic", {"frame": "gripper", "position": [0, 0, 0], "quaternion": [0, 0, 0, 2],
                                           "method": "tsai", "samples": 5, "residual_mm": 0, "residual_deg": 0,
                                           "disagreement_mm": 0, "disagreement_deg": 0, "date": "2025-01-01"}),
     "extrinsic.quaternion", "unit quaternion"),
    (lambda d: d.__setitem__("extrinsic", {"frame": "hand"}), "extrinsic.frame", "expected one of"),
]


@pytest.mark.parametrize("spoil,field,words", BAD_FIELDS)
def test_bad_calibration_files_are_one_line_errors_naming_file_and_field(tmp_path, spoil, field, words):
    path = write_calibration(tmp_path / "cam.yaml", calibration())
    data = yaml.safe_load(path.read_text())
    spoil(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_calibration(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: field '{field}'") and words in msg, msg


def test_stale_or_mismatched_calibrations_are_refused(tmp_path):
    path = write_calibration(tmp_path / "cam.yaml", calibration())
    cal = load_calibration(path)
    now = dt.datetime(2025, 3, 15, tzinfo=dt.timezone.utc)
    assert check_calibration(cal, path, width=W, height=H, camera="wrist", max_age_days=60, now=now) is cal
    with pytest.raises(ConfigError, match=r"field 'date': calibrated 42\.6 days ago \(2025-01-31\), older than max_age_days 30"):
        check_calibration(cal, path, max_age_days=30, now=now)
    with pytest.raises(ConfigError, match="calibrated for 640x480, but the camera runs at 1280x720"):
        check_calibration(cal, path, width=1280, height=720)
    with pytest.raises(ConfigError, match="calibrated camera 'wrist', but this view is 'front'"):
        check_calibration(cal, path, camera="front")
    with pytest.raises(ConfigError, match="field 'extrinsic': missing: run `robolearn calibrate hand-eye`"):
        check_calibration(cal, path, need_extrinsic=True)


def test_board_settings_are_checked():
    with pytest.raises(ConfigError, match="field 'marker_length_m': a marker"):
        board_config({"squares_x": 5, "squares_y": 5, "square_length_m": 0.03, "marker_length_m": 0.04}, "board.yaml")
    with pytest.raises(ConfigError, match="DICT_4X4_50 holds 50 markers, the board needs 60"):
        board_config({"squares_x": 12, "squares_y": 10, "square_length_m": 0.03, "marker_length_m": 0.02,
                      "dictionary": "DICT_4X4_50"}, "board.yaml")
    with pytest.raises(ConfigError, match="field 'square_length_m': expected float, got True"):
        board_config({"squares_x": 5, "squares_y": 5, "square_length_m": True, "marker_length_m": 0.02}, "board.yaml")


def test_a_controller_view_takes_its_intrinsics_from_the_calibration_file(tmp_path):
    from robolearn.hal.cameras.config import make_cameras

    write_calibration(tmp_path / "calib" / "wrist.yaml", calibration())
    controller = tmp_path / "arm.yaml"
    controller.write_text("cameras: {views: {wrist: {type: opencv, device: 0, width: 640, height: 480, "
                          "calibration: calib/wrist.yaml}}}\n")
    section = yaml.safe_load(controller.read_text())["cameras"]
    rig, _ = make_cameras(section, str(controller))
    cam = rig.cameras["wrist"]
    assert cam.spec.intrinsics.fx == 610.0 and cam.spec.intrinsics.cy == 243.0  # before connecting
    assert cam.calibration.camera == "wrist"
    section["views"]["wrist"]["width"] = 1280
    with pytest.raises(ConfigError, match=r"wrist\.yaml: field 'width': calibrated for 640x480, but the camera runs at 1280x480"):
        make_cameras(section, str(controller))
    section["views"]["wrist"].update(width=640, calibration="calib/none.yaml")
    with pytest.raises(ConfigError, match=r"arm\.yaml: field 'cameras\.views\.wrist\.calibration': no such file"):
        make_cameras(section, str(controller))
    (tmp_path / "calib" / "flat.yaml").write_text("{width: 640, height: 480, fx: 500, fy: 501, cx: 320, cy: 240}\n")
    section["views"]["wrist"]["calibration"] = "calib/flat.yaml"  # the intrinsics-only form OpenCVCamera reads
    assert make_cameras(section, str(controller))[0].cameras["wrist"].spec.intrinsics.fy == 501.0


def test_the_command_calibrates_saved_images_and_hand_eye_samples_end_to_end(rendered, tmp_path):
    folder, truth = rendered
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(BOARD.as_dict()))
    cli = [sys.executable, "-m", "robolearn", "calibrate"]
    done = subprocess.run(cli + ["intrinsics", "--images", str(folder / "images"), "--name", "calib", "--board",
                                 str(tmp_path / "board.yaml"), "--out", str(tmp_path / "cam.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "12 views used" in done.stdout and "wrote" in done.stdout
    assert abs(load_calibration(tmp_path / "cam.yaml").K[0, 0] / truth.focal_px - 1) < 0.01
    from robolearn.cli import main

    args = ["calibrate", "hand-eye", "--mode", "eye-in-hand", "--samples", str(folder), "--board", str(tmp_path / "board.yaml"),
            "--intrinsics", str(tmp_path / "cam.yaml"), "--out", str(tmp_path / "he.yaml")]
    assert main(args) == 0
    cal = load_calibration(tmp_path / "he.yaml")
    assert cal.extrinsic.frame == "gripper" and difference(cal.extrinsic.transform, truth.extrinsic)[0] < 5.0
    few = tmp_path / "few"
    few.mkdir()
    for name in sorted((folder / "images").iterdir())[:3]:
        (few / name.name).write_bytes(name.read_bytes())
    done = subprocess.run(cli + ["intrinsics", "--images", str(few), "--name", "calib", "--board", str(tmp_path / "board.yaml"),
                                 "--out", str(tmp_path / "few.yaml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"robolearn calibrate: error: {few}: field 'views': 3 of 3 views")
    assert not (tmp_path / "few.yaml").exists()
