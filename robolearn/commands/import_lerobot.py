"""``robolearn import-lerobot SRC DST``: a LeRobot dataset folder (format v2.1 or v3.0) into a
new demo folder. Numeric observation.* features become observation keys, ``action`` the
actions, ``fps`` the control rate; the output appears only once the whole import succeeded."""
from __future__ import annotations

import argparse

HELP = "import a LeRobot dataset (v2.1/v3) into a demo folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="LeRobot dataset folder (with meta/info.json)")
    p.add_argument("dst", help="new demo folder")
    p.add_argument("--task", default=None, help="robolearn task name (default: the dataset's first task text, slugified)")
    p.add_argument("--success", choices=("auto", "all", "none", "reward"), default="auto",
                   help="episode success: next.success when recorded else all (auto), all, none, or final next.reward >= 1")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from robolearn.data.format import DemoReader
    from robolearn.data.lerobot import LeRobotImportConfig, import_lerobot

    out = import_lerobot(args.src, args.dst, LeRobotImportConfig(task=args.task, success=args.success), progress=not args.quiet)
    r = DemoReader(out)
    keys = ", ".join(f"{k}{list(v.shape)}" for k, v in r.meta.obs_spec.items())
    print(f"imported {len(r)} episodes into {out}: task {r.meta.task}, {r.meta.control_hz:g} Hz, obs {keys}, action dim {r.meta.action_spec.dim}")
    return 0
