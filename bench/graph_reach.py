#!/usr/bin/env python
"""Graph Reach benchmark: BC, BC-RNN, BCQ, HBC and IRIS on suboptimal and multimodal demos.

For each dataset (200 scripted demos, collected once with seed 0) and each algorithm, trains
with the launch file's defaults on 3 seeds and evaluates 50 closed-loop episodes per seed.
Prints success rate and episode length as mean ± std over seeds and writes JSON.

    .venv/bin/python bench/graph_reach.py --out bench/results/graph_reach.json [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALGOS = ["bc", "bc_rnn", "bcq", "hbc", "iris"]
DATASETS = ["suboptimal", "multimodal"]


def ensure_data(workdir: Path, kind: str, episodes: int) -> Path:
    from robolearn.collect import CollectConfig, collect

    path = workdir / "data" / f"graph_reach_{kind}"
    if not (path / "meta.json").exists():
        collect(CollectConfig(task="graph_reach", operator=kind, episodes=episodes, out=str(path), seed=0, progress=False))
    return path


def no_state() -> None:
    """Runs share nothing across jobs: each trains and evaluates its own run folder."""
    return None


def train_and_eval(_state: None, job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from robolearn.evaluate import evaluate_run
    from robolearn.train import train_from_launch

    run = Path(job["run"])
    if not (run / "train_summary.json").exists():
        if run.exists():
            import shutil

            shutil.rmtree(run)
        train_from_launch(ROOT / "launch" / f"graph_reach_{job['algo']}.yaml", run, seed=job["seed"],
                          overrides=[f"data.path={job['data']}"] + job["overrides"], progress=False)
    ev = evaluate_run(run, episodes=job["eval_episodes"], seed=1000 + job["seed"], progress=False,
                      json_out=run / "eval.json")
    train = json.loads((run / "train_summary.json").read_text())
    return {**{k: job[k] for k in ("dataset", "algo", "seed")}, "success_rate": ev["success_rate"],
            "mean_length": ev["mean_length"], "successful_mean_length": ev["successful_mean_length"],
            "demo_median_length": ev["demo_median_length"], "train_wall_s": train["wall_s"]}


def summarise(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(r["dataset"], {}).setdefault(r["algo"], []).append(r)
    table = {}
    for ds, by_algo in out.items():
        for algo, rs in by_algo.items():
            sr = np.array([r["success_rate"] for r in rs])
            ln = np.array([r["mean_length"] for r in rs])
            ok = [r["successful_mean_length"] for r in rs if r["successful_mean_length"] is not None]
            table.setdefault(ds, {})[algo] = {
                "success_mean": float(sr.mean()), "success_std": float(sr.std()),
                "length_mean": float(ln.mean()), "length_std": float(ln.std()),
                "successful_length_mean": float(np.mean(ok)) if ok else None,
                "demo_median_length": rs[0]["demo_median_length"], "seeds": len(rs),
                "train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in rs])),
            }
    return table


def print_table(table: dict) -> None:
    print(f"\n{'dataset':<11} {'algo':<7} {'success %':>14} {'episode length':>16} {'successful len':>15} {'demo median':>12} {'train s':>8}")
    for ds, by_algo in table.items():
        for algo in ALGOS:
            if algo not in by_algo:
                continue
            t = by_algo[algo]
            ok = t["successful_length_mean"]
            print(f"{ds:<11} {algo:<7} {100 * t['success_mean']:>7.1f} ± {100 * t['success_std']:<4.1f} "
                  f"{t['length_mean']:>8.1f} ± {t['length_std']:<5.1f} {(f'{ok:.1f}' if ok else '-'):>15} "
                  f"{t['demo_median_length']:>12.0f} {t['train_wall_s_mean']:>8.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench/results/graph_reach.json")
    p.add_argument("--workdir", default="runs/bench/graph_reach")
    p.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS)
    p.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs trained in parallel")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="override for every launch file")
    p.add_argument("--tag", default="", help="suffix for run folders (to compare settings)")
    args = p.parse_args()
    workdir = Path(args.workdir)
    t0 = time.perf_counter()
    data = {ds: ensure_data(workdir, ds, args.demos) for ds in args.datasets}
    jobs = [{"dataset": ds, "algo": a, "seed": s, "data": str(data[ds]), "overrides": args.overrides,
             "eval_episodes": args.eval_episodes, "run": str(workdir / f"{ds}_{a}_s{s}{args.tag}")}
            for ds in args.datasets for a in args.algos for s in args.seeds]
    from robolearn.runtime.workers import run_jobs

    rows = []
    for i, r in enumerate(run_jobs(jobs, args.jobs, no_state, train_and_eval), 1):
        rows.append(r)
        print(f"[{i}/{len(jobs)}] {r['dataset']:<10} {r['algo']:<7} seed {r['seed']}: success {r['success_rate']:.0%}, "
              f"mean length {r['mean_length']:.1f}", flush=True)
    table = summarise(rows)
    print_table(table)
    result = {"benchmark": "graph_reach", "seeds": args.seeds, "eval_episodes": args.eval_episodes, "demos": args.demos,
              "overrides": args.overrides, "wall_s": round(time.perf_counter() - t0, 1), "table": table, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
