"""``robolearn inspect DIR [--out REPORT_DIR]``: counts, ranges, and signs of suboptimal or
multimodal demos, printed and (with --out) written as report.md, summary.json and PNGs."""
from __future__ import annotations

import argparse

HELP = "summarise a demo folder (report + plots)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="demo folder")
    p.add_argument("--out", default=None, help="write report.md, summary.json, trajectories.png, actions.png "
                   "(and contact_<image key>.png per recorded camera) here")
    p.add_argument("--pos-key", default=None, help="observation key of the end-effector / point position (default robot0_eef_pos or pos)")
    p.add_argument("--approach-steps", type=int, default=10, help="steps of initial displacement that define the approach direction")
    p.add_argument("--max-clusters", type=int, default=4)
    p.add_argument("--sheet-episodes", type=int, default=6,
                   help="contact sheets (one contact_<image key>.png per camera, with --out): episodes shown, one per row")
    p.add_argument("--sheet-frames", type=int, default=8, help="contact sheets: frames per episode, first to last")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from robolearn.config import ConfigError
    from robolearn.inspect_report import InspectConfig, markdown, summarize, write_report

    if args.approach_steps < 1:
        raise ConfigError("--approach-steps", "approach_steps", f"expected >= 1, got {args.approach_steps}")
    for flag, value in (("--sheet-episodes", args.sheet_episodes), ("--sheet-frames", args.sheet_frames)):
        if value < 1:
            raise ConfigError(flag, flag[2:].replace("-", "_"), f"expected >= 1, got {value}")
    cfg = InspectConfig(pos_key=args.pos_key, approach_steps=args.approach_steps, max_clusters=args.max_clusters,
                        sheet_episodes=args.sheet_episodes, sheet_frames=args.sheet_frames)
    if args.out:
        s = write_report(args.folder, args.out, cfg, progress=not args.quiet)
    else:
        s, _ = summarize(args.folder, cfg, progress=not args.quiet)
    print(markdown(s).split("![trajectories]")[0].rstrip())
    if args.out:
        print(f"\nreport written to {args.out}/report.md")
    return 0
