"""``robolearn select RUN [--data FOLDER --split valid] [--json OUT]``: score every saved checkpoint
of a run on held-out demonstrations, without rollouts, and name the checkpoint each criterion
picks. The logic lives in ``robolearn.selection``; this module only parses arguments and prints."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "score a run's checkpoints on held-out demos, without rollouts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (its checkpoints/step_* are scored)")
    p.add_argument("--data", default=None, help="demo folder with the held-out split (default: the folder the run trained on)")
    p.add_argument("--split", default="valid", help="split of the folder's meta.json to score on (default valid; `robolearn split`)")
    p.add_argument("--batches", type=int, default=20, help="validation batches per checkpoint (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation batches and value samples")
    p.add_argument("--json", dest="json_out", default=None, help="write the table here (default RUN/selection.json)")
    p.add_argument("--quiet", action="store_true", help="no per-checkpoint lines while scoring")


def run(args: argparse.Namespace) -> int:
    import torch

    from robolearn.selection import SelectionConfig, markdown_table, select_checkpoints

    torch.set_num_threads(1)  # the same scores on any machine: CPU reductions split their work by thread count
    cfg = SelectionConfig(data=args.data, split=args.split, batches=args.batches, seed=args.seed)
    out = args.json_out or str(Path(args.run) / "selection.json")
    table = select_checkpoints(args.run, cfg, json_out=out, progress=not args.quiet)
    print(markdown_table(table))
    for warning in table["warnings"]:
        print(f"warning: {warning}")
    print(f"\ntable written to {out}")
    return 0
