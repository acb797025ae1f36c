"""``robolearn train LAUNCH.yaml [--set key=value]... [--seed S] --out RUN [--resume] [--nproc N]``.

``--nproc N`` trains on N local ranks (data-parallel, ``robolearn.distributed``); for several
nodes, start the ranks with ``torchrun ... -m robolearn train LAUNCH.yaml --out RUN``."""
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
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training on N local processes (gloo on the CPU, NCCL on CUDA: each rank takes "
                        "the GPU of its rank); algo.batch_size is the global batch, split between them. "
                        "Several nodes: torchrun --nnodes ... -m robolearn train ...")


def run(args) -> int:
    import json

    from robolearn.distributed import ranks_from_environment
    from robolearn.train import train_from_launch

    out = train_from_launch(args.launch, args.out, seed=args.seed, overrides=args.overrides, resume=args.resume,
                            progress=not args.quiet, nproc=args.nproc)
    if not ranks_from_environment().main:
        return 0  # one of torchrun's other ranks: rank 0 writes the summary and reports
    summary = json.loads((out / "train_summary.json").read_text())
    print(f"trained {summary['algo']} for {summary['steps']} steps in {summary['wall_s']:.1f} s "
          f"({summary['steps_per_s']:.1f} steps/s); run folder: {out}")
    return 0
