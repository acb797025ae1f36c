"""The steps ``robolearn calibrate`` runs: views in, a checked calibration file out.

Each function takes what the command line names (a board, image files, a camera view, a
samples file) and returns the calibration it wrote, so the command only parses arguments
and prints, and tests call the same path the command does.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from robolearn.calibration.board import Board, Detection
from robolearn.calibration.errors import CalibrationError
from robolearn.hal.cameras.calibration_file import CameraCalibration, Extrinsic, load_calibration, write_calibration
from robolearn.calibration.handeye import FRAME_OF, HandEyeResult, solve_hand_eye
from robolearn.calibration.images import image_files, read_image
from robolearn.calibration.intrinsics import IntrinsicsResult, board_pose, calibrate_intrinsics
from robolearn.calibration.samples import HandEyeSample, load_samples
from robolearn.config import ConfigError, load_yaml
from robolearn.hal.cameras.base import Camera


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def intrinsics_file(result: IntrinsicsResult, camera: str) -> CameraCalibration:
    return CameraCalibration(camera=camera, width=result.width, height=result.height, K=result.K,
                             distortion=result.distortion, rms_px=result.rms_px, views=result.views, date=_now())


def detect_files(board: Board, files: Sequence[Path], source: str) -> tuple[list[Detection], int, int]:
    """Detections of every image file -> (detections, width, height); all must share one size."""
    detections, size = [], None
    for path in files:
        image = read_image(path, source)
        shape = (image.shape[1], image.shape[0])
        if size is not None and shape != size:
            raise ConfigError(source, str(path), f"{shape[0]}x{shape[1]} pixels, but the first image is {size[0]}x{size[1]}; "
                                                 f"calibrate one resolution at a time")
        size = shape
        detections.append(board.detect(image, path.name))
    return detections, size[0], size[1]


def calibrate_images(board: Board, folder: str | os.PathLike, camera: str, out: str | os.PathLike,
                     **fit: Any) -> tuple[CameraCalibration, IntrinsicsResult]:
    """Intrinsics from a folder of saved views, written to ``out``."""
    files = image_files(folder)
    detections, width, height = detect_files(board, files, str(folder))
    result = calibrate_intrinsics(detections, width, height, source=str(folder), **fit)
    cal = intrinsics_file(result, camera)
    write_calibration(out, cal)
    return cal, result


def calibrate_camera(board: Board, camera: Camera, views: int, out: str | os.PathLike, *,
                     save_dir: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None,
                     **fit: Any) -> tuple[CameraCalibration, IntrinsicsResult]:
    """Intrinsics from ``views`` distinct views captured from a live camera."""
    from robolearn.calibration.capture import capture_views

    kept = capture_views(camera, board, views, save_dir=save_dir, progress=progress)
    s = camera.spec
    result = calibrate_intrinsics([v.detection for v in kept], s.width, s.height, source=f"camera {s.name}", **fit)
    cal = intrinsics_file(result, s.name)
    write_calibration(out, cal)
    return cal, result


def camera_from_spec(spec: str, name: str | None = None) -> Camera:
    """A camera from ``CONTROLLER.yaml:VIEW`` (or ``CONTROLLER.yaml`` naming one view), or from
    an inline view mapping such as ``{type: opencv, device: 0, width: 640, height: 480}``."""
    from robolearn.hal.cameras.config import SIM_TYPES, cameras_config, make_cameras

    text = spec.strip()
    if text.startswith("{"):
        try:
            view = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("--camera", "<inline>", f"invalid YAML ({exc})") from None
        source, section = "--camera", {"views": {name or "camera": view}}
    else:
        path, sep, wanted = text.rpartition(":")
        if not sep or not path.endswith((".yaml", ".yml")):
            path, wanted = text, ""
        source = path
        views = (load_yaml(path).get("cameras") or {}).get("views") or {}
        if not views:
            raise ConfigError(path, "cameras.views", "the file names no cameras")
        if not wanted:
            if len(views) != 1:
                raise ConfigError(path, "cameras.views", f"names {len(views)} cameras {sorted(views)}; pick one as {path}:NAME")
            wanted = next(iter(views))
        if wanted not in views:
            raise ConfigError(path, f"cameras.views.{wanted}", f"no such camera; the file names {sorted(views)}")
        section = {"views": {wanted: views[wanted]}}
    cfg = cameras_config(section, source)
    (view_name, view), = cfg.views.items()
    if view.type in SIM_TYPES:
        raise ConfigError(source, f"cameras.views.{view_name}.type", f"a {view.type} camera renders a running simulator; "
                                                                     f"calibrate on rendered frames with --sim")
    rig, _ = make_cameras(cfg, source)
    return rig.cameras[view_name]


@dataclass
class SimTruth:
    """What the simulated set-up really is, for comparing a calibration with."""

    focal_px: float
    #: T_gripper_camera (eye-in-hand) or T_base_camera (eye-to-hand).
    extrinsic: np.ndarray | None = None


def calibrate_sim_intrinsics(board: Board, views: int, out: str | os.PathLike, *, width: int = 640, height: int = 480,
                             fovy_deg: float = 50.0, seed: int = 0, save_dir: str | os.PathLike | None = None,
                             **fit: Any) -> tuple[CameraCalibration, IntrinsicsResult, SimTruth]:
    """Intrinsics of the simulated MuJoCo camera from ``views`` rendered frames of the board."""
    from robolearn.calibration.images import write_image
    from robolearn.calibration.sim import CharucoScene, random_board_views

    scene = CharucoScene(board, width, height, fovy_deg, camera_on_hand=True, T_camera_parent_cam=np.eye(4),
                         T_board_parent_board=np.eye(4))
    try:
        poses = random_board_views(board, scene.intrinsics, width, height, views, np.random.default_rng(seed))
        detections = []
        for i, pose in enumerate(poses):
            image = scene.render(pose)
            if save_dir is not None:
                write_image(Path(save_dir) / f"view_{i:03d}.png", image)
            detections.append(board.detect(image, f"rendered view {i}"))
        truth = SimTruth(scene.intrinsics.fx)
    finally:
        scene.close()
    result = calibrate_intrinsics(detections, width, height, source="--sim", **fit)
    cal = intrinsics_file(result, "calib")
    write_calibration(out, cal)
    return cal, result, truth


def board_poses(board: Board | None, samples: Sequence[HandEyeSample], cal: CameraCalibration, source: str) -> list[np.ndarray]:
    """T_camera_board of every sample: as given, or fitted to its image with the intrinsics."""
    out = []
    for i, s in enumerate(samples):
        if s.camera_board is not None:
            out.append(s.camera_board)
            continue
        if board is None:
            raise ConfigError(source, f"samples[{i}].image", "samples with images need the board's settings (--board)")
        image = read_image(s.image, source)
        if (image.shape[1], image.shape[0]) != (cal.width, cal.height):
            raise ConfigError(source, f"samples[{i}].image", f"{s.image.name} is {image.shape[1]}x{image.shape[0]}, the "
                                                             f"intrinsics are for {cal.width}x{cal.height}")
        out.append(board_pose(board.detect(image, s.image.name), cal.K, cal.distortion, source=source)[0])
    return out


def hand_eye_file(intrinsics: CameraCalibration, result: HandEyeResult) -> CameraCalibration:
    sol = result.solutions[result.chosen]
    extrinsic = Extrinsic(frame=FRAME_OF[result.mode], transform=sol.transform, method=result.chosen,
                          samples=result.samples, residual_mm=sol.residual_mm, residual_deg=sol.residual_deg,
                          disagreement_mm=result.disagreement_mm, disagreement_deg=result.disagreement_deg,
                          alternatives={n: s.transform for n, s in result.solutions.items()}, date=_now())
    return CameraCalibration(camera=intrinsics.camera, width=intrinsics.width, height=intrinsics.height,
                             K=intrinsics.K, distortion=intrinsics.distortion, rms_px=intrinsics.rms_px,
                             views=intrinsics.views, date=intrinsics.date, extrinsic=extrinsic)


def calibrate_hand_eye(samples_path: str | os.PathLike, intrinsics_path: str | os.PathLike, mode: str,
                       out: str | os.PathLike, *, board: Board | None = None,
                       **solve: Any) -> tuple[CameraCalibration, HandEyeResult]:
    """The camera's pose on the robot from a samples file and the camera's intrinsics file;
    ``out`` gets the intrinsics with the extrinsic added."""
    intrinsics = load_calibration(intrinsics_path)
    samples = load_samples(samples_path)
    source = str(samples_path)
    result = solve_hand_eye([s.base_gripper for s in samples], board_poses(board, samples, intrinsics, source), mode,
                            source=source, **solve)
    cal = hand_eye_file(intrinsics, result)
    write_calibration(out, cal)
    return cal, result


def render_sim_samples(board: Board, mode: str, count: int, folder: str | os.PathLike, *, width: int = 640,
                       height: int = 480, fovy_deg: float = 50.0, seed: int = 0) -> SimTruth:
    """A samples folder (images and robot poses) rendered in the MuJoCo board scene."""
    from robolearn.calibration import sim
    from robolearn.calibration.samples import write_samples
    from robolearn.geometry import make_transform

    if mode == "eye-in-hand":
        camera_mount, board_mount, on_hand = sim.default_camera_on_hand(), np.eye(4), True
        truth = camera_mount
    else:
        # The fixed camera 0.9 m above the base, looking down and back at the workspace.
        tilt = math.radians(160.0)
        r = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(tilt), -math.sin(tilt)], [0.0, math.sin(tilt), math.cos(tilt)]])
        camera_mount, board_mount, on_hand = make_transform(r, [0.5, 0.2, 0.9]), sim.default_board_on_hand(board), False
        truth = camera_mount
    scene = sim.CharucoScene(board, width, height, fovy_deg, camera_on_hand=on_hand, T_camera_parent_cam=camera_mount,
                             T_board_parent_board=board_mount)
    try:
        rendered = sim.render_hand_eye_samples(scene, board, mode, count, np.random.default_rng(seed),
                                               T_hand_camera=camera_mount, T_hand_board=board_mount,
                                               T_base_camera=camera_mount)
        focal = scene.intrinsics.fx
    finally:
        scene.close()
    write_samples(folder, [s.base_hand for s in rendered], [s.image for s in rendered])
    return SimTruth(focal, truth)
