"""Benchmark: the five algorithms on the same suboptimal manipulation demos (Lift by default).

For each algorithm (bc, bc_rnn, bcq, hbc, iris) and seed: train from ``launch/<task>_<algo>.yaml``
with the same data and number of gradient steps, evaluate every saved checkpoint on the same
seeded episodes, and report

* success rate of the final checkpoint (mean +- std over seeds),
* mean length of successful episodes against the demos' median length,
* training wall time, and wall time to the first checkpoint at >= 90 % success.

Prints a table and writes JSON (``--out``). The full setting (3 seeds x 5 algorithms x 50
episodes per checkpoint) takes hours on a 2-core machine; ``--steps``, ``--seeds``,
``--episodes`` and ``--algos`` scale it down, and every run folder is kept so a second call
with ``--reuse`` only evaluates.

    python bench/lift.py --data runs/data/lift_suboptimal --out bench/results/lift.json
    python bench/can.py  --data runs/data/can_suboptimal  --out bench/results/can.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ("bc", "bc_rnn", "bcq", "hbc", "iris")


def launch_file(task: str, algo: str) -> tuple[Path, list[str]]:
    """``launch/<task>_<algo>.yaml``; until the lead writes it, the Graph Reach one with the task
    switched (same algorithm settings), which is said in the output."""
    own = ROOT / "launch" / f"{task}_{algo}.yaml"
    if own.exists():
        return own, []
    fallback = ROOT / "launch" / f"graph_reach_{algo}.yaml"
    if not fallback.exists():
        raise SystemExit(f"bench: no launch file {own} (nor {fallback}) for algorithm {algo!r}")
    print(f"bench: note: {own.name} missing; using {fallback.name} with task={task}", file=sys.stderr)
    return fallback, [f"task={task}"]


def checkpoints(run_dir: Path) -> list[Path]:
    d = run_dir / "checkpoints"
    return sorted(p for p in d.glob("step_*") if p.is_dir())


def wall_at_steps(run_dir: Path) -> dict[int, float]:
    """Training wall-clock seconds at each logged step (from metrics.jsonl)."""
    out: dict[int, float] = {}
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                out[int(rec["step"])] = float(rec["wall_s"])
            except (ValueError, KeyError):
                continue
    return out


def finished_training(run_dir: Path, steps: int) -> bool:
    """Whether ``run_dir`` holds a run that trained to ``steps`` (its summary is written last)."""
    summary = run_dir / "train_summary.json"
    if not summary.exists() or not checkpoints(run_dir):
        return False
    try:
        return int(json.loads(summary.read_text()).get("steps", -1)) == steps
    except (ValueError, OSError):
        return False


def run_one(task: str, algo: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from robolearn.evaluate import evaluate_run
    from robolearn.train import train_from_launch

    launch, extra = launch_file(task, algo)
    run_dir = Path(args.runs) / f"{algo}_seed{seed}"
    overrides = extra + [f"data.path={args.data}", f"train.steps={args.steps}"]
    if args.checkpoint_every:
        overrides.append(f"train.checkpoint_every={args.checkpoint_every}")
    overrides += list(args.set)
    t0 = time.perf_counter()
    if not (args.reuse and finished_training(run_dir, args.steps)):
        if args.reuse and run_dir.exists():
            # Interrupted, or trained for another --steps: resuming would mix two sittings'
            # wall times, so train it afresh.
            print(f"  {algo} seed {seed}: {run_dir} did not train to {args.steps} steps; retraining from scratch",
                  flush=True)
            shutil.rmtree(run_dir)
        train_from_launch(launch, run_dir, seed=seed, overrides=overrides, progress=not args.quiet)
    train_wall = time.perf_counter() - t0
    summary_path = run_dir / "train_summary.json"
    if summary_path.exists():
        train_wall = float(json.loads(summary_path.read_text()).get("wall_s", train_wall))
    walls = wall_at_steps(run_dir)
    evals = []
    first_90 = None
    cks = checkpoints(run_dir)
    for ck in cks:
        # The final checkpoint gets the full episode count; intermediate ones (which only
        # locate the first >= 90 % checkpoint and the best one) may get fewer.
        episodes = args.episodes if ck == cks[-1] or not args.checkpoint_episodes else args.checkpoint_episodes
        cache = ck / f"bench_eval_{episodes}ep_seed{args.eval_seed}.json"
        if args.reuse and cache.exists():
            res = json.loads(cache.read_text())
        else:
            res = evaluate_run(run_dir, episodes=episodes, seed=args.eval_seed, workers=args.workers, checkpoint=ck,
                               progress=not args.quiet)
            cache.write_text(json.dumps({k: v for k, v in res.items() if k != "per_episode"}, indent=2))
        step = int(res.get("step") or int(ck.name.split("_")[-1]))
        rec = {"step": step, "episodes": episodes, "success_rate": res["success_rate"], "successful_mean_length": res["successful_mean_length"],
               "mean_length": res["mean_length"], "train_wall_s": walls.get(step)}
        evals.append(rec)
        if first_90 is None and res["success_rate"] >= 0.9:
            first_90 = rec
        print(f"  {algo} seed {seed} step {step}: success {res['success_rate']:.0%}", flush=True)
    final = evals[-1] if evals else {}
    best = max(evals, key=lambda e: e["success_rate"]) if evals else {}
    return {
        "algo": algo, "seed": seed, "run_dir": str(run_dir), "launch": relative_to_root(launch), "overrides": overrides,
        "trained_with": trained_with(run_dir), "train_wall_s": round(train_wall, 1), "final": final, "best": best,
        "checkpoints": evals, "first_90": first_90,
    }


def relative_to_root(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def trained_with(run_dir: Path) -> dict[str, Any]:
    """The training and algorithm settings the run folder itself records (its ``launch.json``):
    with ``--reuse`` the command line need not match how a run was trained."""
    try:
        launch = json.loads((run_dir / "launch.json").read_text())
    except (OSError, ValueError):
        return {}
    train = launch.get("train", {})
    return {**{k: train[k] for k in ("steps", "checkpoint_every", "threads", "lr_schedule", "lr_schedule_optimizers")
               if k in train}, "algo": launch.get("algo", {})}


def aggregate(results: list[dict[str, Any]], demo_median: float | None) -> list[dict[str, Any]]:
    rows = []
    for algo in dict.fromkeys(r["algo"] for r in results):
        rs = [r for r in results if r["algo"] == algo]
        succ = [r["final"].get("success_rate", 0.0) for r in rs]
        best = [r.get("best", {}).get("success_rate", 0.0) for r in rs]
        lens = [r["final"]["successful_mean_length"] for r in rs if r["final"].get("successful_mean_length")]
        t90 = [r["first_90"]["train_wall_s"] for r in rs if r["first_90"] and r["first_90"].get("train_wall_s") is not None]
        rows.append({
            "algo": algo, "seeds": len(rs),
            "success_mean": float(np.mean(succ)), "success_std": float(np.std(succ)),
            "success_per_seed": [round(float(x), 3) for x in succ],
            # An early-stopped run (best checkpoint on the evaluation episodes): an upper bound on
            # what checkpoint selection could give each algorithm, the fair fight for BC-RNN.
            "best_checkpoint_mean": float(np.mean(best)), "best_checkpoint_std": float(np.std(best)),
            "successful_length": float(np.mean(lens)) if lens else None, "demo_median_length": demo_median,
            "train_wall_s": float(np.mean([r["train_wall_s"] for r in rs])),
            "reached_90": f"{len(t90)}/{len(rs)}", "wall_to_90_s": float(np.mean(t90)) if t90 else None,
        })
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    head = f"{'algo':8} {'success':>14} {'best ckpt':>14} {'succ. len':>9} {'demo med':>8} {'train s':>8} {'>=90%':>6} {'s to 90%':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        sl = f"{r['successful_length']:.0f}" if r["successful_length"] else "-"
        dm = f"{r['demo_median_length']:.0f}" if r["demo_median_length"] else "-"
        t9 = f"{r['wall_to_90_s']:.0f}" if r["wall_to_90_s"] is not None else "-"
        print(f"{r['algo']:8} {100 * r['success_mean']:6.1f} +- {100 * r['success_std']:4.1f} "
              f"{100 * r['best_checkpoint_mean']:6.1f} +- {100 * r['best_checkpoint_std']:4.1f} {sl:>9} {dm:>8} "
              f"{r['train_wall_s']:8.0f} {r['reached_90']:>6} {t9:>8}")


def main(argv: list[str] | None = None, task: str = "lift") -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=f"runs/data/{task}_suboptimal", help="demo folder shared by every run")
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5000, help="gradient steps, the same for every algorithm")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes for the final checkpoint")
    p.add_argument("--checkpoint-episodes", type=int, default=0,
                   help="evaluation episodes for intermediate checkpoints (default: --episodes)")
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="evaluation worker processes")
    p.add_argument("--runs", default=f"runs/bench/{task}", help="where the run folders go")
    p.add_argument("--out", default=f"bench/results/{task}.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra launch override for every run")
    p.add_argument("--reuse", action="store_true",
                   help="keep run folders that already have checkpoints (no retraining) and their cached evaluations")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(1)
    from robolearn.data.format import DemoReader

    reader = DemoReader(args.data)
    lengths = [reader.load(i).length for i in reader.indices]
    demo_median = float(np.median(lengths))
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        p.error(f"unknown algorithm(s) {unknown}; choose from {list(ALGOS)}")
    t0 = time.perf_counter()
    results = [run_one(task, algo, seed, args) for algo in algos for seed in range(args.seeds)]
    rows = aggregate(results, demo_median)
    title = (f"{task}: {len(lengths)} demos (median {demo_median:.0f} steps) from {args.data}; {args.steps} steps, "
             f"{args.seeds} seed(s), {args.episodes} eval episodes for the final checkpoint, "
             f"{args.checkpoint_episodes or args.episodes} for earlier ones")
    print_table(rows, title)
    out = {"task": task, "data": args.data, "demos": len(lengths), "demo_median_length": demo_median,
           "steps": args.steps, "seeds": args.seeds, "episodes": args.episodes,
           "checkpoint_episodes": args.checkpoint_episodes or args.episodes, "table": rows, "runs": results,
           "bench_wall_s": round(time.perf_counter() - t0, 1)}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(out_path)
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
