"""``robolearn import-lerobot SRC DST``: the older name of ``robolearn convert`` for LeRobot
datasets, kept so existing scripts keep working. It refuses anything but a LeRobot folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from robolearn.commands import convert

HELP = "import a LeRobot dataset (v2.1/v3) into a demo folder (same as `robolearn convert`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="LeRobot dataset folder (with meta/info.json)")
    p.add_argument("dst", help="new demo folder")
    convert.add_lerobot_arguments(p)
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    if not convert.is_lerobot_dataset(Path(args.src)):
        from robolearn.data.lerobot import read_info

        read_info(Path(args.src))  # the error that names the missing meta/info.json
    args.obs_keys = args.obs_dtype = args.compression = None
    return convert.run(args)
