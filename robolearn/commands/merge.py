"""``robolearn merge OUT SRC1 SRC2 ...``: one folder from several of the same task and spec.
OUT may exist (it is appended to); episodes are renumbered and copied one atomic file at a time.
Nothing is copied twice: a repeated source, or episodes OUT already holds from an earlier merge
(its ``merged_from``), are skipped; OUT is locked while the merge writes it."""
from __future__ import annotations

import argparse

HELP = "merge demo folders of the same task"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (created, or appended to when it exists)")
    p.add_argument("sources", nargs="+", help="demo folders to merge")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from robolearn.data.format import DemoReader
    from robolearn.data.tools import merge

    mapping = merge(args.out, args.sources, progress=not args.quiet)
    for src, idx in mapping.items():
        span = f"{idx[0]}..{idx[-1]}" if idx else f"none (all already in {args.out})"
        print(f"{src}: {len(idx)} episodes -> {span}")
    print(f"{args.out}: {len(DemoReader(args.out))} episodes")
    return 0
