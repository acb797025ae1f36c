"""``robolearn convert SRC DST``: every format conversion in one command.

The direction follows from what SRC is:

* a demo folder -> a new robomimic HDF5 file (DST ends in .hdf5), image keys as uint8 frame
  datasets compressed with ``--compression`` (gzip, robomimic's own, by default);
* a LeRobot dataset folder (v2.1 or v3.0, recognised by its ``meta/info.json``) -> a new demo
  folder, camera features (mp4 videos, PNG images) as image keys (``--task``, ``--success``,
  ``--no-cameras``, ``--image-size`` and ``--video-tolerance-s`` apply to this import only);
* a robomimic HDF5 file -> a new demo folder;
* robosuite's raw ``demo.hdf5`` -> a new demo folder, by replaying its states in simulation.

The output is written under a temporary name and only renamed into place when the whole
conversion succeeded. ``robolearn import-lerobot`` is the same command under its older name.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "convert between demo folders and robomimic, robosuite raw and LeRobot datasets"
#: robolearn.data.robomimic.COMPRESSIONS, repeated so that --help does not import h5py.
COMPRESSIONS = ("gzip", "lzf", "none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a demo folder, a LeRobot dataset folder, a robomimic .hdf5, or robosuite's raw demo.hdf5")
    p.add_argument("dst", help="output: a new .hdf5 file (from a demo folder) or a new demo folder (from anything else)")
    p.add_argument("--obs-keys", nargs="+", default=None, help="observation keys to import from HDF5 (default: all / robomimic low-dim keys)")
    p.add_argument("--obs-dtype", default=None, choices=("float32", "float64"),
                   help="observation dtype of a folder imported from HDF5 (default: robomimic keeps the file's, robosuite raw uses float32)")
    add_lerobot_arguments(p, "LeRobot: ")
    p.add_argument("--compression", choices=COMPRESSIONS, default=None,
                   help="folder -> robomimic: compression of the image datasets (default gzip, as robomimic's --compress; "
                        "lzf is faster and larger)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def image_size(text: str) -> tuple[int, int]:
    """``84`` -> (84, 84); ``96x128`` -> (96, 128) (height x width)."""
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        h = int(parts[0])
        return h, int(parts[-1])
    raise argparse.ArgumentTypeError(f"expected N or HxW in pixels (e.g. 84 or 96x128), got {text!r}")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_lerobot_arguments(p: argparse.ArgumentParser, label: str = "") -> None:
    """The LeRobot import's options, shared with ``robolearn import-lerobot``."""
    p.add_argument("--task", default=None, help=f"{label}robolearn task name (default: the dataset's first task text, slugified)")
    p.add_argument("--success", choices=("auto", "all", "none", "reward"), default=None,
                   help=f"{label}episode success: next.success when recorded else all (auto, the default), all, none, "
                        "or final next.reward >= 1")
    p.add_argument("--no-cameras", dest="cameras", action="store_false", default=None,
                   help=f"{label}import the numeric features only, not the camera videos and images")
    p.add_argument("--image-size", type=image_size, default=None, metavar="N|HxW",
                   help=f"{label}resize camera frames to N x N (or H x W) pixels, area-averaged (default: as recorded)")
    p.add_argument("--video-tolerance-s", dest="tolerance_s", type=seconds, default=None, metavar="S",
                   help=f"{label}how far a video frame may lie from its row's timestamp (default 1e-4 s, LeRobot's)")


def is_lerobot_dataset(path: Path) -> bool:
    return path.is_dir() and (path / "meta" / "info.json").is_file()


def convert(src: str | Path, dst: str | Path, obs_keys: list[str] | None = None, progress: bool = True,
            obs_dtype: str | None = None, task: str | None = None, success: str | None = None,
            compression: str | None = None, cameras: bool | None = None, image_size: tuple[int, int] | None = None,
            tolerance_s: float | None = None) -> tuple[str, Path]:
    """Run the conversion SRC implies; returns (kind, output path). The LeRobot options left None take
    ``LeRobotImportConfig``'s defaults."""
    from robolearn.config import ConfigError
    from robolearn.data.format import DemoFormatError

    src, dst = Path(src), Path(dst)
    if is_lerobot_dataset(src):
        from robolearn.data.lerobot import LeRobotImportConfig, import_lerobot

        for flag, value in (("--obs-keys", obs_keys), ("--obs-dtype", obs_dtype), ("--compression", compression)):
            if value is not None:
                raise ConfigError("convert", flag, "applies to HDF5 conversions; a LeRobot import takes every observation.* feature")
        cfg = LeRobotImportConfig(task=task, success=success or "auto", cameras=cameras is not False, image_size=image_size)
        if tolerance_s is not None:
            cfg.tolerance_s = tolerance_s
        return "lerobot->folder", import_lerobot(src, dst, cfg, progress=progress)
    lerobot_only = (("--task", task), ("--success", success), ("--no-cameras", cameras), ("--image-size", image_size),
                    ("--video-tolerance-s", tolerance_s))
    for flag, value in lerobot_only:
        if value is not None:
            raise ConfigError("convert", flag, f"applies to LeRobot imports only; {src} is not a LeRobot dataset (no meta/info.json)")
    from robolearn.data.robomimic import detect_hdf5_kind, export_robomimic, import_robomimic

    if src.is_dir():
        if dst.suffix.lower() not in (".hdf5", ".h5"):
            raise DemoFormatError(dst, "<output>", "exporting a folder writes a robomimic file: give DST a .hdf5 name")
        return "folder->robomimic", export_robomimic(src, dst, progress=progress, compression=compression or "gzip")
    if compression is not None:
        raise ConfigError("convert", "--compression", f"applies to exports of a demo folder to robomimic HDF5; {src} is not a folder")
    if not src.exists():
        raise DemoFormatError(src, "<input>", "no such file or folder")
    kind = detect_hdf5_kind(src)
    if kind == "robomimic":
        return "robomimic->folder", import_robomimic(src, dst, obs_keys=obs_keys, progress=progress, obs_dtype=obs_dtype)
    from robolearn.data.robosuite_raw import import_robosuite_raw

    return "robosuite_raw->folder", import_robosuite_raw(src, dst, obs_keys=obs_keys, progress=progress, obs_dtype=obs_dtype)


def run(args: argparse.Namespace) -> int:
    kind, out = convert(args.src, args.dst, obs_keys=args.obs_keys, progress=not args.quiet, obs_dtype=args.obs_dtype,
                        task=args.task, success=args.success, compression=args.compression, cameras=args.cameras,
                        image_size=args.image_size, tolerance_s=args.tolerance_s)
    if out.is_dir():
        from robolearn.data.format import DemoReader

        r = DemoReader(out)
        keys = ", ".join(f"{k}{list(v.shape)}" for k, v in r.meta.obs_spec.items())
        print(f"{kind}: wrote {len(r)} episodes to {out} (task {r.meta.task}, {r.meta.control_hz:g} Hz, obs {keys}, "
              f"action dim {r.meta.action_spec.dim})")
    else:
        print(f"{kind}: wrote {out}")
    return 0
