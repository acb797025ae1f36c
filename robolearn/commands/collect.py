"""``robolearn collect TASK --operator KIND --episodes N --seed S --out DIR``: record
scripted-operator demos into a demo folder (appending when it exists). The logic lives in
``robolearn.collect``; this module only parses arguments and prints the summary."""
from __future__ import annotations

import argparse
import sys

HELP = "record scripted-operator demos into a demo folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="task name, e.g. graph_reach, lift, can")
    parser.add_argument("--operator", required=True, help="scripted operator kind: proficient, suboptimal, multimodal")
    parser.add_argument("--episodes", type=int, required=True, help="episodes to roll out")
    parser.add_argument("--seed", type=int, default=0, help="base seed; episode i uses a seed derived from (seed, i)")
    parser.add_argument("--out", required=True, help="demo folder to create or append to")
    parser.add_argument("--workers", type=int, default=1, help="worker processes rolling out episodes (default 1)")
    parser.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                        help="run the episodes on a Ray cluster: auto (RAY_ADDRESS or a head started here, else a local "
                             "instance) or the head's address; --workers actors there; needs the distributed extra")
    parser.add_argument("--keep-failures", "--keep-failed", dest="keep_failed", action="store_true",
                        help="also write episodes that did not succeed (their sparse rewards and success: false)")
    parser.add_argument("--failure-rate", type=float, default=0.0, metavar="P",
                        help="share of episodes in [0, 1] the operator fails on purpose, as real operators do "
                             "(dropped objects, missed grasps, wrong turns, time-outs; default 0)")
    parser.add_argument("--horizon", type=int, default=None, help="override the task's episode horizon")
    parser.add_argument("--cameras", default=None, metavar="NAMES",
                        help="record these cameras of the scene as image keys <name>_image, comma-separated "
                             "(robosuite tasks: e.g. agentview,robot0_eye_in_hand; pybullet_lift: agentview,sideview)")
    parser.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                        help="square size of the recorded camera images (default 84; needs --cameras)")
    parser.add_argument(
        "--set", dest="env_set", action="append", default=[], metavar="KEY=VALUE",
        help="override another env setting from envs/TASK.yaml (repeatable; VALUE parsed as YAML)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _env_overrides(args: argparse.Namespace) -> dict:
    from robolearn.config import apply_overrides

    env: dict = apply_overrides({}, list(args.env_set))
    if args.horizon is not None:
        env["horizon"] = args.horizon
    env.update(_camera_overrides(args))
    return env


def _camera_overrides(args: argparse.Namespace) -> dict:
    """``--cameras``/``--image-size`` as the task settings ``cameras`` and ``image_size``, which the
    folder's meta records with the other env settings (so policies trained on it see them too)."""
    from robolearn.config import ConfigError

    out: dict = {}
    if args.cameras is not None:
        names = [n.strip() for n in args.cameras.split(",") if n.strip()]
        if not names:
            raise ConfigError("--cameras", "cameras", f"expected camera names separated by commas, got {args.cameras!r}")
        out["cameras"] = names
    if args.image_size is not None:
        if args.cameras is None:
            raise ConfigError("--image-size", "image_size", "sets the size of recorded camera images; name them with --cameras")
        if args.image_size < 1:
            raise ConfigError("--image-size", "image_size", f"expected a positive number of pixels, got {args.image_size}")
        out["image_size"] = args.image_size
    return out


def run(args: argparse.Namespace) -> int:
    from robolearn.collect import CollectConfig, collect

    cfg = CollectConfig(
        task=args.task,
        operator=args.operator,
        episodes=args.episodes,
        out=args.out,
        seed=args.seed,
        workers=args.workers,
        keep_failed=args.keep_failed,
        failure_rate=args.failure_rate,
        env=_env_overrides(args),
        progress=not args.no_progress,
        ray=args.ray,
    )
    stats = collect(cfg)
    print(stats.summary())
    if stats.kept == 0:
        print(f"robolearn collect: warning: no episode was kept in {stats.out} (all {stats.failed} failed)", file=sys.stderr)
        return 1
    return 0
