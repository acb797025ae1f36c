"""``robolearn split DIR --valid 0.1 --seed S``: write a random train/valid split of episode
indices into meta.json (training reads ``DemoReader.split_indices("train")``)."""
from __future__ import annotations

import argparse

HELP = "write a train/valid split into meta.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="demo folder")
    p.add_argument("--valid", type=float, default=0.1, help="fraction of episodes held out for validation")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from robolearn.data.tools import split

    s = split(args.folder, args.valid, args.seed)
    print(f"{args.folder}: train {len(s['train'])} episodes, valid {len(s['valid'])} episodes {s['valid'][:20]}")
    return 0
