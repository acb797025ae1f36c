#!/usr/bin/env python
"""How close does choosing a checkpoint without rollouts get to the rollout-best one?

One training run whose every checkpoint is also evaluated closed-loop: collect demos (once),
split off a validation share, train one algorithm with N evenly spaced checkpoints, roll each
checkpoint out on the same seeded episodes, and score each with ``robolearn select`` (validation
losses of the algorithm's own objective; the learned value of start states for BCQ and IRIS).
For each criterion: the success of the checkpoint it picks, against the rollout-best and the
final checkpoint, and the rank correlation between its score and the success over checkpoints.
Prints a markdown table and writes JSON. Resumable: the demo folder, the run and each
checkpoint's evaluation are kept under ``--work`` and reused.

    .venv/bin/python bench/checkpoint_selection.py --json bench/results/checkpoint_selection.json
    .venv/bin/python bench/checkpoint_selection.py --algo bcq --checkpoints 6 --episodes 30
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from protocol import positive_int  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/checkpoint_selection.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="graph_reach", help="task with launch/<task>_<algo>.yaml (default graph_reach)")
    p.add_argument("--algo", default="iris", help="algorithm (default iris)")
    p.add_argument("--operator", default="suboptimal", help="scripted operator of the demos (default suboptimal)")
    p.add_argument("--demos", type=positive_int, default=200, help="demo episodes to collect (default 200)")
    p.add_argument("--failure-rate", type=float, default=0.0, help="collect --failure-rate (failures are kept; default 0)")
    p.add_argument("--valid", type=float, default=0.2, help="share of demos held out for selection (default 0.2)")
    p.add_argument("--steps", type=positive_int, default=3000, help="gradient steps (default 3000)")
    p.add_argument("--checkpoints", type=positive_int, default=6, help="evenly spaced checkpoints (default 6)")
    p.add_argument("--episodes", type=positive_int, default=30, help="evaluation episodes per checkpoint (default 30)")
    p.add_argument("--batches", type=positive_int, default=20, help="validation batches per checkpoint (default 20)")
    p.add_argument("--seed", type=int, default=0, help="demo, training and evaluation seed (default 0)")
    p.add_argument("--work", default="runs/bench_checkpoint_selection", help="working folder (reused between calls)")
    p.add_argument("--json", default="bench/results/checkpoint_selection.json", help="result JSON")
    return p


def ensure_demos(args: argparse.Namespace, work: Path) -> Path:
    from robolearn.collect import CollectConfig, collect
    from robolearn.data.tools import split

    folder = work / "data"
    if not (folder / "meta.json").exists():
        collect(CollectConfig(task=args.task, operator=args.operator, episodes=args.demos, out=str(folder), seed=args.seed,
                              keep_failed=args.failure_rate > 0, failure_rate=args.failure_rate, progress=False))
        split(folder, args.valid, args.seed)
    return folder


def ensure_run(args: argparse.Namespace, data: Path, work: Path) -> Path:
    import shutil

    from robolearn.paths import LAUNCH_DIR
    from robolearn.train import train_from_launch

    run = work / f"run_{args.algo}_s{args.seed}"
    if not (run / "train_summary.json").exists():
        if run.exists():
            shutil.rmtree(run)
        every = max(1, args.steps // args.checkpoints)
        overrides = [f"data.path={data}", f"train.steps={args.steps}", f"train.checkpoint_every={every}", "train.threads=1"]
        train_from_launch(LAUNCH_DIR / f"{args.task}_{args.algo}.yaml", run, seed=args.seed, overrides=overrides, progress=False)
    return run


def rollout_success(args: argparse.Namespace, run: Path, checkpoints: list[Path]) -> dict[str, float]:
    """Closed-loop success of every checkpoint on the same seeded episodes (kept per checkpoint)."""
    from robolearn.evaluate import evaluate_run

    out = run / "rollouts"
    out.mkdir(exist_ok=True)
    success = {}
    for ckpt in checkpoints:
        path = out / f"{ckpt.name}.json"
        if path.exists() and json.loads(path.read_text()).get("episodes") == args.episodes:
            result = json.loads(path.read_text())
        else:
            result = evaluate_run(run, episodes=args.episodes, seed=args.seed, checkpoint=ckpt, progress=False, json_out=path,
                                  plot_path=out / f"{ckpt.name}.png")
        success[ckpt.name] = float(result["success_rate"])
        print(f"  {ckpt.name}: success {success[ckpt.name]:.0%}", flush=True)
    return success


def rank_correlation(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho (average ranks for ties); None when either side is constant."""
    def ranks(x: list[float]) -> np.ndarray:
        x = np.asarray(x, float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(table: dict[str, Any], success: dict[str, float]) -> dict[str, Any]:
    """Per criterion: the pick's success against the rollout-best and the final checkpoint."""
    rows = table["checkpoints"]
    best = max(rows, key=lambda r: (success[r["name"]], -r["step"]))
    final = rows[-1]
    out = {"rollout_best": {"checkpoint": best["name"], "step": best["step"], "success": success[best["name"]]},
           "final": {"checkpoint": final["name"], "step": final["step"], "success": success[final["name"]]},
           "criteria": {}}
    for name, pick in table["criteria"].items():
        sign = 1.0 if pick["direction"] == "max" else -1.0
        rho = rank_correlation([sign * r["scores"][name] for r in rows], [success[r["name"]] for r in rows])
        chosen = success[pick["checkpoint"]]
        out["criteria"][name] = {"checkpoint": pick["checkpoint"], "step": pick["step"], "success": chosen,
                                 "below_best": success[best["name"]] - chosen, "vs_final": chosen - success[final["name"]],
                                 "rank_correlation": rho}
    return out


def markdown(result: dict[str, Any]) -> str:
    cmp = result["comparison"]
    best, final = cmp["rollout_best"], cmp["final"]
    lines = [f"| criterion | picks step | its success | rollout-best (step {best['step']}) | final (step {final['step']}) "
             "| rank corr. with success |", "|---|---|---|---|---|---|"]
    for name, c in cmp["criteria"].items():
        rho = "n/a" if c["rank_correlation"] is None else f"{c['rank_correlation']:+.2f}"
        lines.append(f"| {name} | {c['step']} | {c['success']:.0%} | {best['success']:.0%} | {final['success']:.0%} | {rho} |")
    lines += ["", "| step | " + " | ".join(result["selection"]["criteria"]) + " | success |",
              "|---|" + "---|" * (len(result["selection"]["criteria"]) + 1)]
    for row in result["selection"]["checkpoints"]:
        cells = [f"{row['scores'][n]:.4g}" for n in result["selection"]["criteria"]]
        lines.append(f"| {row['step']} | " + " | ".join(cells) + f" | {result['success'][row['name']]:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    from robolearn.data.format import atomic_write_bytes
    from robolearn.selection import SelectionConfig, run_checkpoints, select_checkpoints

    args = parser().parse_args(argv)
    torch.set_num_threads(1)
    work = (ROOT / args.work) if not Path(args.work).is_absolute() else Path(args.work)
    data = ensure_demos(args, work)
    run = ensure_run(args, data, work)
    checkpoints = run_checkpoints(run)
    success = rollout_success(args, run, checkpoints)
    table = select_checkpoints(run, SelectionConfig(batches=args.batches, seed=args.seed), json_out=run / "selection.json")
    result = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "success": success, "selection": table,
              "comparison": compare(table, success)}
    print(markdown(result))
    atomic_write_bytes(Path(args.json), (json.dumps(result, indent=2) + "\n").encode())
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
