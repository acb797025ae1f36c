#!/usr/bin/env python
"""The benchmark protocol, one runner for every task and algorithm.

For a task (graph_reach, lift, can), its demo sets and draws in ``bench/draws.yaml`` (the
``evaluation`` draws by default: data no setting was chosen on), every algorithm and training
seed: collect each draw with ``robolearn collect`` (the operator's flags verbatim), train each
(algorithm, draw, seed) cell from ``launch/<task>_<algo>.yaml`` with only the data path (and the
checkpoint spacing) overridden, evaluate the last K checkpoints on the same seeded episodes, and
report per algorithm the final checkpoint's mean and std over draw x seed, the mean of the last K
checkpoints, the worst draw-seed pair, the demonstrators' success rate, the successful episodes'
length against the demos' median, and training wall time. Prints a markdown table, writes JSON.

Resumable: each draw and cell keeps its folder under ``--work``; a second call reuses finished
ones and redoes only unfinished ones (see bench/protocol_cells.py).

    .venv/bin/python bench/protocol.py graph_reach --json bench/results/protocol_graph_reach.json
    .venv/bin/python bench/protocol.py lift --algos iris,bc_rnn --draws 1 --seeds 1 --episodes 20 --steps 500
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from protocol_draws import DRAW_SETS, MAX_TRAINING_SEEDS, load_draws, select_demo_sets  # noqa: E402

ALGOS = ("bc", "bc_rnn", "bcq", "hbc", "iql", "diffusion_policy", "iris")
DEFAULT_LAST_K = 5


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/protocol.py", description=__doc__.split("\n\n")[0])
    p.add_argument("task", help="a task of the draws file: graph_reach, lift, can")
    p.add_argument("--draw-set", choices=DRAW_SETS, default="evaluation",
                   help="which draws: evaluation (headline figures) or tuning (for choosing settings)")
    p.add_argument("--demos", default="", help="comma-separated demo sets of the task (default: all collect supports)")
    p.add_argument("--draws", type=positive_int, default=None, help="only the first N draws of the set")
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated algorithms")
    p.add_argument("--seeds", type=positive_int, default=3, help="training seeds 0..N-1")
    p.add_argument("--episodes", type=positive_int, default=50, help="evaluation episodes per checkpoint")
    p.add_argument("--steps", type=positive_int, default=None, help="gradient steps (default: the launch file's)")
    p.add_argument("--last", type=positive_int, default=DEFAULT_LAST_K, dest="last_k",
                   help="checkpoints averaged at the end of training (the final one among them)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="checkpoint spacing (default: steps / (2 x --last), so the last ones span the second half)")
    p.add_argument("--workers", type=positive_int, default=1, help="cells trained at once, and collect's workers")
    p.add_argument("--work", default="runs/bench/protocol", help="folder of draws and cells (resumable)")
    p.add_argument("--json", dest="json_out", default=None, help="write the table and every cell here")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra launch override for every run (recorded with each cell)")
    p.add_argument("--draws-file", default=str(BENCH / "draws.yaml"))
    return p


def launch_path(task: str, algo: str) -> Path:
    from robolearn.config import ConfigError

    path = ROOT / "launch" / f"{task}_{algo}.yaml"
    if not path.is_file():
        raise ConfigError(path, "<file>", f"no launch file for algorithm {algo!r} on {task}")
    return path


def cell_threads(args: argparse.Namespace) -> list[str]:
    """``train.threads`` for cells trained side by side: the cores shared out between them (by
    default each training would take every core, and W of them would oversubscribe the machine)."""
    if args.workers == 1 or any(o.split("=", 1)[0].strip() == "train.threads" for o in args.overrides):
        return []
    return [f"train.threads={max(1, len(os.sched_getaffinity(0)) // args.workers)}"]


def algo_plan(task: str, algo: str, args: argparse.Namespace) -> dict[str, Any]:
    """The overrides every cell of ``algo`` trains with (data path apart) and the resolved
    training config they give, read now so a bad ``--set`` fails before any work."""
    from robolearn.launch import load_launch

    path = launch_path(task, algo)
    base = load_launch(path, list(args.overrides))
    steps = args.steps or base.train.steps
    every = args.checkpoint_every or max(1, steps // (2 * args.last_k))
    overrides = [f"train.steps={steps}", f"train.checkpoint_every={every}", *cell_threads(args), *args.overrides]
    cfg = load_launch(path, overrides)
    return {"launch": str(path), "launch_file": str(path.relative_to(ROOT)), "overrides": overrides, "config": dataclasses.asdict(cfg), "steps": cfg.train.steps,
            "checkpoint_every": cfg.train.checkpoint_every}


def build_jobs(task: str, algos: list[str], demo_sets, draws: dict, plans: dict, args) -> list[dict[str, Any]]:
    from protocol_cells import training_config

    jobs = []
    for d in demo_sets:
        for draw in draws[d.name]:
            for algo in algos:
                plan = plans[algo]
                for seed in range(args.seeds):
                    jobs.append({
                        "task": task, "demos": d.name, "draw": draw["fingerprint"]["seed"], "algo": algo, "seed": seed,
                        "launch": plan["launch"], "launch_file": plan["launch_file"],
                        "overrides": [f"data.path={draw['path']}", *plan["overrides"]],
                        "config": training_config({**plan["config"], "seed": seed}),
                        "evaluation": {"episodes": args.episodes, "seed": d.eval_seed[args.draw_set] + seed,
                                       "last_k": args.last_k},
                        "draw_fingerprint": draw["fingerprint"],
                        "demo": {k: draw[k] for k in ("success_rate", "median_length", "kept", "attempted")},
                        "cell": str(Path(args.work) / "cells" / f"{task}_{d.name}_seed{draw['fingerprint']['seed']}"
                                    / f"{algo}_seed{seed}"),
                    })
    for i, job in enumerate(jobs, 1):
        job["index"], job["total"] = i, len(jobs)
    return jobs


def run(args: argparse.Namespace) -> dict[str, Any]:
    from protocol_cells import collect_draw, run_cell, write_json
    from protocol_report import markdown_table, summarise

    from robolearn.config import ConfigError
    from robolearn.runtime.workers import run_jobs

    t0 = time.perf_counter()
    args.work = str(Path(args.work).resolve())
    if args.seeds > MAX_TRAINING_SEEDS:
        raise ConfigError("--seeds", "seeds", f"at most {MAX_TRAINING_SEEDS} (evaluation seeds are base + seed)")
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        raise ConfigError("--algos", "algos", "no algorithm named")
    source = Path(args.draws_file)
    demo_sets, notes = select_demo_sets(load_draws(source, args.task),
                                        [n.strip() for n in args.demos.split(",") if n.strip()], source)
    for note in notes:
        print(f"[note] {note}", flush=True)
    if not demo_sets:
        raise ConfigError(source, f"{args.task}.demos", "no demo set robolearn collect can make")
    plans = {a: algo_plan(args.task, a, args) for a in algos}
    draws: dict[str, list[dict[str, Any]]] = {}
    for d in demo_sets:
        if args.draws and args.draws > len(d.seeds[args.draw_set]):
            raise ConfigError("--draws", "draws", f"demo set {d.name} has {len(d.seeds[args.draw_set])} "
                              f"{args.draw_set} draws in {source}, not {args.draws}")
        for seed in d.seeds[args.draw_set][: args.draws]:
            print(f"[collect] {args.task}/{d.name} {args.draw_set} draw {seed}: {d.episodes} episodes", flush=True)
            draw = collect_draw(d, seed, Path(args.work), args.workers)
            how = "reused" if draw["reused"] else f"collected in {draw['wall_s']:.0f} s"
            print(f"[collect] {args.task}/{d.name} draw {seed}: {draw['kept']} kept of {draw['attempted']}, demonstrator "
                  f"{draw['success_rate']:.0%}, median successful length {draw['median_length']} ({how})", flush=True)
            draws.setdefault(d.name, []).append(draw)
    jobs = build_jobs(args.task, algos, demo_sets, draws, plans, args)
    print(f"[plan] {len(jobs)} cells: {len(draws)} demo set(s) x {len(next(iter(draws.values())))} draw(s) x "
          f"{len(algos)} algorithm(s) x {args.seeds} seed(s); {args.episodes} episodes x last {args.last_k} "
          f"checkpoints each; {args.workers} at a time", flush=True)
    outcomes = list(run_jobs(jobs, args.workers, dict, run_cell))
    cells = [o["result"] for o in outcomes]
    rows = summarise(cells, draws)
    table = markdown_table(rows)
    result = {
        "benchmark": "protocol", "task": args.task, "draw_set": args.draw_set,
        "command": " ".join(["bench/protocol.py", *args.argv]),
        "draws_file": str(source),
        "settings": {"algos": algos, "seeds": list(range(args.seeds)), "episodes": args.episodes, "last_k": args.last_k,
                     "steps": {a: p["steps"] for a, p in plans.items()},
                     "checkpoint_every": {a: p["checkpoint_every"] for a, p in plans.items()},
                     "overrides": list(args.overrides), "eval_seed_base": demo_sets[0].eval_seed[args.draw_set],
                     "workers": args.workers, "work": args.work},
        "notes": notes,
        "draws": {name: [{k: v for k, v in d.items() if k != "reused"} for d in ds] for name, ds in draws.items()},
        "table": rows, "markdown": table, "cells": cells,
        "trained_cells": sum(o["trained"] for o in outcomes),
        "reused_cells": sum(not o["trained"] for o in outcomes),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(f"\n{args.task}, {args.draw_set} draws:\n{table}\n", flush=True)
    print(f"[end] {result['trained_cells']} cell(s) trained, {result['reused_cells']} reused, {result['wall_s']:.0f} s",
          flush=True)
    if args.json_out:
        write_json(Path(args.json_out), result)
        print(f"wrote {args.json_out}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    from robolearn.errors import classify

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        run(args)
    except KeyboardInterrupt:
        print("bench/protocol.py: interrupted; a second call resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - expected failures end in one line
        from protocol_cells import BenchError

        f = classify(exc)
        if not (f.expected or isinstance(exc, BenchError)):
            raise
        print(f"bench/protocol.py: error: {f.message}", file=sys.stderr)
        return f.exit_code if f.expected else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
