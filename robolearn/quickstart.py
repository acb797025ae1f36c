"""``make quickstart``: the whole pipeline on the embedded default task, in minutes on a CPU.

Collect 200 deliberately suboptimal Graph Reach demos (detours, back-tracking, pauses),
train BC-RNN and IRIS on them, roll both out closed-loop, and print a comparison. The point
it makes: IRIS's value selector stitches the best pieces of the demos together and beats
both the imitation baseline and the demonstrator itself (shorter episodes than the demos).
Everything lands under ``--out``: the demo folder, the run folders (checkpoints, TensorBoard,
loss plots), eval JSON, rollout PNGs, mp4 videos and ``report.md``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from robolearn.collect import CollectConfig, collect
from robolearn.evaluate import evaluate_run
from robolearn.paths import LAUNCH_DIR
from robolearn.train import train_from_launch

ALGOS = ("bc_rnn", "iris")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robolearn.quickstart", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--episodes", type=int, default=200, help="demos to collect")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the launch files' training steps")
    args = p.parse_args(argv)
    out = Path(args.out)
    t_start = time.perf_counter()
    data = out / "data" / "graph_reach_suboptimal"
    if not (data / "meta.json").exists():
        print(f"[1/3] collecting {args.episodes} suboptimal Graph Reach demos -> {data}")
        stats = collect(CollectConfig(task="graph_reach", operator="suboptimal", episodes=args.episodes, out=str(data),
                                      seed=args.seed))
        print(f"      kept {stats.kept} demos, median length {stats.median_length:.0f} steps")
    else:
        print(f"[1/3] reusing demos in {data}")
    results = {}
    for algo in ALGOS:
        run = out / algo
        overrides = [f"data.path={data}"] + ([f"train.steps={args.steps}"] if args.steps else [])
        # Always train afresh: a run left from an older launch file would silently report stale figures.
        print(f"[2/3] training {algo} -> {run}")
        if run.exists():
            shutil.rmtree(run)
        train_from_launch(LAUNCH_DIR / f"graph_reach_{algo}.yaml", run, seed=args.seed, overrides=overrides)
        print(f"[3/3] evaluating {algo} closed-loop ({args.eval_episodes} episodes, videos of the first 3)")
        results[algo] = evaluate_run(run, episodes=args.eval_episodes, seed=args.seed, json_out=run / "eval.json",
                                     video_dir=run / "videos", video_episodes=3)
        results[algo]["train_wall_s"] = json.loads((run / "train_summary.json").read_text())["wall_s"]
    demo_median = results[ALGOS[0]]["demo_median_length"]
    lines = [
        "# robolearn quickstart: Graph Reach, suboptimal demos",
        "",
        f"Demos: {data} (median length {demo_median:.0f} steps).",
        "",
        "| algo | success | mean length | successful length | vs demo median | train s |",
        "|---|---|---|---|---|---|",
    ]
    for algo, r in results.items():
        ok = r["successful_mean_length"]
        vs = f"{ok / demo_median:.2f}x" if ok else "-"
        lines.append(f"| {algo} | {r['success_rate']:.0%} | {r['mean_length']:.1f} | {ok and f'{ok:.1f}' or '-'} | {vs} | "
                     f"{r['train_wall_s']:.0f} |")
    lines += ["", "Artefacts: " + ", ".join(f"{a}/eval.png, {a}/videos/, {a}/tb/" for a in ALGOS),
              f"Total wall time: {time.perf_counter() - t_start:.0f} s"]
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    (out / "report.json").write_text(json.dumps({a: {k: v for k, v in r.items() if k != "per_episode"}
                                                  for a, r in results.items()}, indent=2))
    print("\n" + report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
