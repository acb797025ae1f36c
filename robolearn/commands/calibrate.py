"""``robolearn calibrate intrinsics|hand-eye``: camera calibration files for controller files.

    robolearn calibrate intrinsics --camera controllers/ur5e.yaml:wrist --board board.yaml --views 20 --out calib/wrist.yaml
    robolearn calibrate intrinsics --images runs/calib/wrist --name wrist --board board.yaml --out calib/wrist.yaml
    robolearn calibrate hand-eye --mode eye-in-hand --samples runs/calib/handeye --board board.yaml \\
        --intrinsics calib/wrist.yaml --out calib/wrist.yaml
    robolearn calibrate intrinsics --sim --board board.yaml --out runs/sim_cam.yaml   # rendered MuJoCo views
    robolearn calibrate sim-camera --task lift --view perception --out controllers/calibration/lift_perception.yaml

The file written is what a controller view's ``calibration:`` key names
(robolearn/hal/cameras/calibration_file.py documents it). Hand-eye runs Tsai and Horaud on the same
samples, prints both, and refuses to write when they disagree beyond the limits. ``sim-camera``
writes a simulated task camera's exact calibration from its scene (``method: model``), what a
simulated deployment with perception names.
"""
from __future__ import annotations

import argparse

HELP = "calibrate a camera: intrinsics from ChArUco views, hand-eye extrinsics (writes the calibration YAML)"


def _fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help="ChArUco board settings YAML (squares_x, squares_y, square_length_m, ...)")
    p.add_argument("--out", required=True, help="calibration YAML to write")
    p.add_argument("--width", type=int, default=640, help="--sim: image width (pixels)")
    p.add_argument("--height", type=int, default=480, help="--sim: image height (pixels)")
    p.add_argument("--fovy", type=float, default=50.0, help="--sim: the MuJoCo camera's vertical field of view (degrees)")
    p.add_argument("--seed", type=int, default=0, help="--sim: seed of the rendered poses")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="step", metavar="STEP", required=True)
    i = sub.add_parser("intrinsics", help="focal length, principal point and distortion from ChArUco views",
                       description="Fit K and distortion to views of a ChArUco board (cv2.calibrateCamera).")
    source = i.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", help="CONTROLLER.yaml:VIEW (a view of a controller's cameras: section) or an inline "
                                         "view such as '{type: opencv, device: 0, width: 640, height: 480}'")
    source.add_argument("--images", help="folder of saved views (PNG, JPEG) of one camera")
    source.add_argument("--sim", action="store_true", help="render views of the board in a MuJoCo scene")
    i.add_argument("--name", default=None, help="the camera's name in the file (default: the view's name; needed with --images)")
    i.add_argument("--views", type=int, default=15, help="views to capture (--camera, --sim)")
    i.add_argument("--save-images", default=None, help="also save the captured or rendered views here (PNG)")
    i.add_argument("--min-views", type=int, default=5, help="refuse with fewer usable views than this")
    i.add_argument("--max-rms", type=float, default=1.0, help="refuse a fit whose RMS reprojection error exceeds this (pixels)")
    i.add_argument("--fix-k3", action="store_true", help="keep the k3 distortion term at 0 (narrow lenses)")
    _fit_arguments(i)
    h = sub.add_parser("hand-eye", help="the camera's pose on the gripper or in the base frame (cv2.calibrateHandEye)",
                       description="Solve the camera's pose on the robot with Tsai and Horaud, side by side.")
    h.add_argument("--mode", required=True, choices=("eye-in-hand", "eye-to-hand"),
                   help="eye-in-hand: camera on the gripper (gives T_gripper_camera); eye-to-hand: camera fixed "
                        "(gives T_base_camera)")
    hs = h.add_mutually_exclusive_group(required=True)
    hs.add_argument("--samples", help="samples YAML, or a folder holding samples.yaml (robot poses with images or board poses)")
    hs.add_argument("--sim", action="store_true", help="render samples in a MuJoCo scene with a known camera pose")
    h.add_argument("--intrinsics", default=None, help="the camera's calibration YAML (from `calibrate intrinsics`); "
                                                      "with --sim, fitted to the rendered frames when not given")
    h.add_argument("--count", type=int, default=12, help="--sim: samples to render")
    h.add_argument("--save-samples", default=None, help="--sim: keep the rendered samples folder here")
    h.add_argument("--method", choices=("tsai", "horaud"), default=None,
                   help="the solution to write (default: the one with the smaller residual)")
    h.add_argument("--max-disagreement-mm", type=float, default=5.0, help="refuse when Tsai and Horaud differ by more (mm)")
    h.add_argument("--max-disagreement-deg", type=float, default=1.0, help="refuse when they differ by more (degrees)")
    _fit_arguments(h)
    s = sub.add_parser("sim-camera", help="a simulated task camera's exact calibration, read from its MuJoCo scene",
                       description="K from the camera's field of view, its pose in the world (robosuite's arm frame) "
                                   "as the base-frame extrinsic.")
    s.add_argument("--task", required=True, help="the simulated task whose scene holds the camera (e.g. lift)")
    s.add_argument("--view", required=True, help="the camera's name in the scene and in the file (e.g. perception)")
    s.add_argument("--width", type=int, default=640, help="image width (pixels)")
    s.add_argument("--height", type=int, default=480, help="image height (pixels)")
    s.add_argument("--out", required=True, help="calibration YAML to write")


def _positive(name: str, value: float) -> float:
    import math

    from robolearn.config import ConfigError

    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--{name}", name.replace("-", "_"), f"expected a finite number > 0, got {value}")
    return value


def _print_intrinsics(cal, result, truth=None) -> None:
    k = cal.K
    print(f"camera {cal.camera}: {cal.width}x{cal.height}, {result.views} views used, {len(result.skipped)} skipped")
    print("| fx | fy | cx | cy | RMS px |\n|---|---|---|---|---|")
    print(f"| {k[0, 0]:.2f} | {k[1, 1]:.2f} | {k[0, 2]:.2f} | {k[1, 2]:.2f} | {cal.rms_px:.3f} |")
    print("distortion: " + ", ".join(f"{d:.5f}" for d in cal.distortion))
    if truth is not None:
        err = 100.0 * (k[0, 0] / truth.focal_px - 1.0)
        print(f"simulator: f = {truth.focal_px:.2f} px from fovy; fitted fx is off by {err:+.3f} %")


def _print_hand_eye(result, truth=None) -> None:
    from robolearn.geometry import difference, matrix_to_pose

    print(f"{result.mode}: T_{result.frame}_camera from {result.samples} samples")
    print("| method | x | y | z (m) | quaternion (x, y, z, w) | residual mm | residual deg |" + (" vs truth |" if truth else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if truth else ""))
    for name, sol in result.solutions.items():
        p, q = matrix_to_pose(sol.transform)
        row = (f"| {name}{' (written)' if name == result.chosen else ''} | {p[0]:.4f} | {p[1]:.4f} | {p[2]:.4f} | "
               f"{', '.join(f'{v:.4f}' for v in q)} | {sol.residual_mm:.2f} | {sol.residual_deg:.3f} |")
        if truth is not None and truth.extrinsic is not None:
            mm, deg = difference(sol.transform, truth.extrinsic)
            row += f" {mm:.2f} mm / {deg:.3f} deg |"
        print(row)
    print(f"Tsai vs Horaud: {result.disagreement_mm:.2f} mm, {result.disagreement_deg:.3f} degrees")


def run_intrinsics(args: argparse.Namespace) -> int:
    from robolearn.calibration import workflow
    from robolearn.calibration.board import Board, load_board
    from robolearn.config import ConfigError

    board = Board(load_board(args.board))
    fit = {"min_views": args.min_views, "max_rms_px": _positive("max-rms", args.max_rms), "fix_k3": args.fix_k3}
    if args.views < 1 or args.min_views < 1:
        raise ConfigError("--views", "views", f"expected whole numbers >= 1, got --views {args.views} --min-views {args.min_views}")
    truth = None
    if args.images:
        if not args.name:
            raise ConfigError("--name", "name", "name the camera these images are from (the view name controller files use)")
        cal, result = workflow.calibrate_images(board, args.images, args.name, args.out, **fit)
    elif args.sim:
        cal, result, truth = workflow.calibrate_sim_intrinsics(board, args.views, args.out, width=args.width,
                                                               height=args.height, fovy_deg=_positive("fovy", args.fovy),
                                                               seed=args.seed, save_dir=args.save_images, **fit)
    else:
        camera = workflow.camera_from_spec(args.camera, args.name)
        print(f"capturing {args.views} views from {camera.spec.name}: move the board between views", flush=True)
        cal, result = workflow.calibrate_camera(board, camera, args.views, args.out, save_dir=args.save_images,
                                                progress=lambda line: print(line, flush=True), **fit)
    _print_intrinsics(cal, result, truth)
    print(f"wrote {args.out}")
    return 0


def run_hand_eye(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from robolearn.calibration import workflow
    from robolearn.calibration.board import Board, load_board
    from robolearn.config import ConfigError

    board = Board(load_board(args.board))
    solve = {"method": args.method, "max_disagreement_mm": _positive("max-disagreement-mm", args.max_disagreement_mm),
             "max_disagreement_deg": _positive("max-disagreement-deg", args.max_disagreement_deg)}
    if not args.sim:
        if args.intrinsics is None:
            raise ConfigError("--intrinsics", "intrinsics", "name the camera's calibration YAML (robolearn calibrate intrinsics)")
        cal, result = workflow.calibrate_hand_eye(args.samples, args.intrinsics, args.mode, args.out, board=board, **solve)
        _print_hand_eye(result)
        print(f"wrote {args.out}")
        return 0
    if args.count < 3:
        raise ConfigError("--count", "count", f"expected at least 3 samples, got {args.count}")
    with tempfile.TemporaryDirectory(prefix="robolearn-handeye-") as scratch:
        folder = Path(args.save_samples or scratch)
        truth = workflow.render_sim_samples(board, args.mode, args.count, folder, width=args.width, height=args.height,
                                            fovy_deg=_positive("fovy", args.fovy), seed=args.seed)
        intrinsics = args.intrinsics
        if intrinsics is None:
            intrinsics = str(Path(scratch) / "intrinsics.yaml")
            icals, iresult = workflow.calibrate_images(board, folder / "images", "calib", intrinsics)
            _print_intrinsics(icals, iresult, truth)
        cal, result = workflow.calibrate_hand_eye(folder, intrinsics, args.mode, args.out, board=board, **solve)
    _print_hand_eye(result, truth)
    print(f"wrote {args.out}")
    return 0


def run_sim_camera(args: argparse.Namespace) -> int:
    from robolearn.hal.cameras.calibration_file import write_calibration
    from robolearn.config import ConfigError
    from robolearn.perceived import sim_camera_calibration

    if args.width < 1 or args.height < 1:
        raise ConfigError("--width", "width", f"expected whole numbers >= 1, got --width {args.width} --height {args.height}")
    cal = sim_camera_calibration(args.task, args.view, args.width, args.height)
    write_calibration(args.out, cal)
    k, t = cal.K, cal.extrinsic.transform
    print(f"camera {cal.camera} of task {args.task}: {cal.width}x{cal.height}, fx {k[0, 0]:.3f} cx {k[0, 2]:.2f} cy {k[1, 2]:.2f}; "
          f"at {', '.join(f'{v:.4f}' for v in t[:3, 3])} m in the arm frame")
    print(f"wrote {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    steps = {"intrinsics": run_intrinsics, "hand-eye": run_hand_eye, "sim-camera": run_sim_camera}
    return steps[args.step](args)
