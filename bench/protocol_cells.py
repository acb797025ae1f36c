"""The work of the protocol runner, one resumable unit at a time: a draw (one demo folder, from
``robolearn collect``) and a cell (one algorithm and training seed on one draw: train, then
evaluate its last K checkpoints).

Why units with their own folder, lock and result file: a benchmark of 45 trainings must survive a
crash or a reboot without redoing what finished, and must never mix two sittings into one number.
A unit's result file is written last and atomically, so it exists only for a finished unit; a
unit without one is redone from scratch (an interrupted training, whose wall time would otherwise
span two sittings, is retrained; evaluations already written are kept). Each unit holds an
exclusive lock on its folder while it works, so a second runner on the same ``--work`` folder is
refused instead of training the same cell twice. A result written under other settings (another
launch file, ``--steps`` or draws.yaml entry) is refused rather than silently reused or replaced.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.config import ConfigError
from robolearn.data.format import DemoReader, atomic_write_bytes
from robolearn.data.lock import FolderLock

RESULT = "result.json"
DRAW_JSON = "draw.json"


class BenchError(RuntimeError):
    """A unit of work that could not finish (a collect that kept nothing); one line."""


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when there is none (an unfinished unit)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ConfigError(path, "<file>", f"not valid JSON ({exc}); remove it to redo this unit") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "<root>", "expected a JSON object; remove it to redo this unit")
    return data


def first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    """The dotted key of the first value that differs between two JSON-like trees, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                return where
            found = first_difference(old[key], new[key], where)
            if found:
                return found
        return None
    return None if old == new else (prefix or "<root>")


def _value_at(tree: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return "<absent>"
        tree = tree[key]
    return tree


def refuse_stale(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    field = first_difference(old, new)
    if field:
        raise ConfigError(path, field, f"was made with {_value_at(old, field)!r}, this call asks for "
                          f"{_value_at(new, field)!r}; use another --work folder or remove {path.parent}")


# ------------------------------------------------------------------------------------ draws
def demo_statistics(folder: Path, attempted: int) -> dict[str, Any]:
    """The demonstrator's success rate (successful episodes in the folder over those rolled out:
    right whether collect dropped failures or kept them) and the median successful length."""
    reader = DemoReader(folder)
    episodes = [reader.load(i) for i in reader.indices]
    ok = [ep.length for ep in episodes if ep.success]
    return {"attempted": attempted, "kept": len(episodes), "successful": len(ok),
            "success_rate": len(ok) / attempted if attempted else 0.0,
            "median_length": float(np.median(ok)) if ok else None}


def collect_draw(demo_set, seed: int, work: Path, workers: int) -> dict[str, Any]:
    """Draw ``seed`` of ``demo_set`` under ``work/draws/``: reused when finished with the same
    settings, else collected (into ``partial/``, renamed to ``demos/`` when complete)."""
    from robolearn.cli import main as robolearn_main

    slot = work / "draws" / f"{demo_set.task}_{demo_set.name}_seed{seed}"
    slot.mkdir(parents=True, exist_ok=True)
    with FolderLock(slot):
        wanted = demo_set.fingerprint(seed)
        done = read_json(slot / DRAW_JSON)
        if done is not None:
            refuse_stale(slot / DRAW_JSON, done["fingerprint"], wanted)
            return {**done, "reused": True}
        partial, demos = slot / "partial", slot / "demos"
        for leftover in (partial, demos):
            if leftover.exists():
                shutil.rmtree(leftover)
        argv = demo_set.collect_argv(seed, partial, workers)
        t0 = time.perf_counter()
        printed = io.StringIO()
        # In this process through the command's own parser: the flags are read exactly as
        # `robolearn collect` reads them; --debug lets its errors reach the runner's one line.
        with contextlib.redirect_stdout(printed):
            code = robolearn_main(["collect", "--debug", *argv])
        if code != 0:
            raise BenchError(f"{slot}: robolearn collect {' '.join(argv)} kept no episode (exit {code})")
        partial.rename(demos)
        record = {"fingerprint": wanted, "command": ["robolearn", "collect", *demo_set.collect_argv(seed, demos, workers)],
                  "collect_summary": printed.getvalue().strip().splitlines()[-1:], "wall_s": round(time.perf_counter() - t0, 1),
                  "path": str(demos), **demo_statistics(demos, demo_set.episodes)}
        write_json(slot / DRAW_JSON, record)
        return {**record, "reused": False}


# ------------------------------------------------------------------------------------ cells
def training_config(launch_json: dict[str, Any]) -> dict[str, Any]:
    """What a run was trained with, less where its files and data lie (the draw's fingerprint
    says what the data is), so a moved ``--work`` folder still resumes, nor how many threads
    trained it."""
    cfg = json.loads(json.dumps(launch_json, default=str))
    cfg.pop("source", None)
    cfg.get("data", {}).pop("path", None)
    # Speed, not substance: the thread count follows --workers, which may change between calls.
    cfg.get("train", {}).pop("threads", None)
    return cfg


def checkpoints(run: Path) -> list[Path]:
    return sorted(p for p in (run / "checkpoints").glob("step_*") if p.is_dir())


def trained(run: Path, config: dict[str, Any]) -> bool:
    """Whether ``run`` finished training (its summary is written last) with ``config``."""
    launch = read_json(run / "launch.json") if (run / "train_summary.json").exists() else None
    return launch is not None and training_config(launch) == config and bool(checkpoints(run))


def train_cell(job: dict[str, Any], run: Path) -> None:
    from robolearn.train import train_from_launch

    if run.exists():
        shutil.rmtree(run)  # an interrupted or other training: its wall time would mix sittings
    train_from_launch(job["launch"], run, seed=job["seed"], overrides=job["overrides"], progress=False)


def prune_checkpoints(run: Path, keep: int) -> None:
    """Drop checkpoints older than the last ``keep``: the protocol never reads them, and ten
    checkpoints of 45 runs would fill a disk."""
    for ck in checkpoints(run)[:-keep]:
        shutil.rmtree(ck)


def evaluate_checkpoint(run: Path, ck: Path, cell: Path, episodes: int, seed: int) -> dict[str, Any]:
    from robolearn.evaluate import evaluate_run

    path = cell / "evals" / f"{ck.name}_{episodes}ep_seed{seed}.json"
    cached = read_json(path)
    if cached is None:
        cached = evaluate_run(run, episodes=episodes, seed=seed, workers=1, checkpoint=ck, progress=False)
        write_json(path, cached)
    return {"step": int(cached["step"]), "episodes": int(cached["episodes"]), "success_rate": cached["success_rate"],
            "mean_length": cached["mean_length"], "successful_mean_length": cached["successful_mean_length"],
            "eval_json": str(path)}


def cell_label(job: dict[str, Any]) -> str:
    return f"[{job['index']}/{job['total']}] {job['task']}/{job['demos']} draw {job['draw']} {job['algo']} seed {job['seed']}"


def run_cell(_state: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one cell, or reuse its finished result; returns
    ``{"result": ..., "trained": bool}``. Module level, so a worker process can run it."""
    cell = Path(job["cell"])
    cell.mkdir(parents=True, exist_ok=True)
    with FolderLock(cell):
        wanted = {"config": job["config"], "evaluation": job["evaluation"], "draw_fingerprint": job["draw_fingerprint"]}
        done = read_json(cell / RESULT)
        if done is not None:
            refuse_stale(cell / RESULT, {"config": done["config"], "draw_fingerprint": done["draw_fingerprint"]},
                         {"config": wanted["config"], "draw_fingerprint": wanted["draw_fingerprint"]})
            if done["evaluation"] == wanted["evaluation"]:
                print(f"{cell_label(job)}: finished before, reused: final {done['final']['success_rate']:.0%}", flush=True)
                return {"result": done, "trained": False}
        run = cell / "run"
        was_trained = not trained(run, job["config"])
        if was_trained:
            print(f"{cell_label(job)}: training", flush=True)
            train_cell(job, run)
        keep = job["evaluation"]["last_k"]
        prune_checkpoints(run, keep)
        ev = job["evaluation"]
        evals = [evaluate_checkpoint(run, ck, cell, ev["episodes"], ev["seed"]) for ck in checkpoints(run)[-keep:]]
        summary = read_json(run / "train_summary.json") or {}
        result = {
            "task": job["task"], "demos": job["demos"], "draw": job["draw"], "algo": job["algo"], "seed": job["seed"],
            "launch": job["launch_file"], "overrides": job["overrides"], "run_dir": str(run), **wanted,
            "steps": summary.get("steps"), "train_wall_s": summary.get("wall_s"),
            "checkpoints": evals, "final": evals[-1],
            "last_k_mean": float(np.mean([e["success_rate"] for e in evals])),
            "demo": job["demo"],
        }
        write_json(cell / RESULT, result)
        print(f"{cell_label(job)}: final {result['final']['success_rate']:.0%}, mean of last {len(evals)} "
              f"{result['last_k_mean']:.1%}, train {result['train_wall_s']} s", flush=True)
        return {"result": result, "trained": was_trained}
