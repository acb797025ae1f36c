"""``robolearn train LAUNCH.yaml [--set key=value]... [--seed S] --out RUN [--resume]``."""
from __future__ import annotations

HELP = "train a policy from a launch file (checkpoints are safetensors + JSON)"


def add_arguments(p) -> None:
    p.add_argument("launch", help="launch YAML (e.g. launch/graph_reach_iris.yaml)")
    p.add_argument("--out", required=True, help="run folder to write (new or empty; an existing run folder needs --resume; "
                   "a folder of other files is refused)")
    p.add_argument("--seed", type=int, default=0, help="one seed for all randomness")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a launch-file value, e.g. --set train.steps=2000 --set algo.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import json

    from robolearn.train import train_from_launch

    out = train_from_launch(args.launch, args.out, seed=args.seed, overrides=args.overrides, resume=args.resume,
                            progress=not args.quiet)
    summary = json.loads((out / "train_summary.json").read_text())
    print(f"trained {summary['algo']} for {summary['steps']} steps in {summary['wall_s']:.1f} s "
          f"({summary['steps_per_s']:.1f} steps/s); run folder: {out}")
    return 0
