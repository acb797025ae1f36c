"""``robolearn convert SRC DST``: robomimic / robosuite HDF5 <-> demo folder.

The direction follows from what SRC is: a folder is exported to a robomimic HDF5 file;
an HDF5 file is imported into a new folder (robomimic files directly, robosuite's raw
demo.hdf5 by replaying its states in simulation). The output is written under a
temporary name and only renamed into place when the whole conversion succeeded.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "convert robomimic/robosuite HDF5 <-> demo folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a demo folder, a robomimic .hdf5, or robosuite's raw demo.hdf5")
    p.add_argument("dst", help="output: a new .hdf5 file (from a folder) or a new folder (from HDF5)")
    p.add_argument("--obs-keys", nargs="+", default=None, help="observation keys to import (default: all / robomimic low-dim keys)")
    p.add_argument("--obs-dtype", default=None, choices=("float32", "float64"),
                   help="observation dtype of an imported folder (default: robomimic keeps the file's, robosuite raw uses float32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def convert(src: str | Path, dst: str | Path, obs_keys: list[str] | None = None, progress: bool = True,
            obs_dtype: str | None = None) -> tuple[str, Path]:
    """Run the conversion SRC implies; returns (kind, output path)."""
    from robolearn.data.format import DemoFormatError
    from robolearn.data.robomimic import detect_hdf5_kind, export_robomimic, import_robomimic

    src, dst = Path(src), Path(dst)
    if src.is_dir():
        if dst.suffix.lower() not in (".hdf5", ".h5"):
            raise DemoFormatError(dst, "<output>", "exporting a folder writes a robomimic file: give DST a .hdf5 name")
        return "folder->robomimic", export_robomimic(src, dst, progress=progress)
    if not src.exists():
        raise DemoFormatError(src, "<input>", "no such file or folder")
    kind = detect_hdf5_kind(src)
    if kind == "robomimic":
        return "robomimic->folder", import_robomimic(src, dst, obs_keys=obs_keys, progress=progress, obs_dtype=obs_dtype)
    from robolearn.data.robosuite_raw import import_robosuite_raw

    return "robosuite_raw->folder", import_robosuite_raw(src, dst, obs_keys=obs_keys, progress=progress, obs_dtype=obs_dtype)


def run(args: argparse.Namespace) -> int:
    kind, out = convert(args.src, args.dst, obs_keys=args.obs_keys, progress=not args.quiet, obs_dtype=args.obs_dtype)
    if out.is_dir():
        from robolearn.data.format import DemoReader

        r = DemoReader(out)
        print(f"{kind}: wrote {len(r)} episodes to {out} (task {r.meta.task}, {r.meta.control_hz:g} Hz)")
    else:
        print(f"{kind}: wrote {out}")
    return 0
