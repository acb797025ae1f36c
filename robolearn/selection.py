"""Choosing a checkpoint without rollouts.

A user with a real arm cannot roll 50 episodes out per checkpoint, so ``robolearn select`` scores
every saved checkpoint of a run from held-out demonstrations alone (the ``valid`` split of the
demo folder, ``robolearn split``) and names the checkpoint each criterion would pick:

- ``valid_loss/<part>``, lower is better: the algorithm's own training objective, each of its
  ``loss/*`` parts, on validation batches. It is computed by the algorithm's ``train_step``
  itself (so a new algorithm is scored without further code), with ``step_optimizer`` taking
  no step and the weights restored after each batch (a target network's soft update is no
  optimiser step): the loss a step would have seen, with no step taken. Every checkpoint sees the same batches (one generator seed), so the scores differ only
  by the weights. ``valid_loss/total`` is the sum of the parts.
- ``start_value``, higher is better (value-based algorithms: BCQ, IRIS, IQL): the mean learned
  value V(s0) (BCQ, IRIS: max over data-supported actions of Q(s0, a); IQL: its expectile V) over
  the validation episodes' start states, the critic's own estimate of the return from where episodes begin. Offline critics
  over-estimate, and more so the longer they train, so this criterion leans towards late
  checkpoints; ``bench/checkpoint_selection.py`` measures how close each criterion gets to
  the rollout-best checkpoint.

Checkpoints load through ``robolearn.policy.load_algo`` (safetensors and JSON): nothing in a
run folder is executed.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import META_NAME, DemoFormatError, DemoReader, Episode, atomic_write_bytes
from robolearn.launch import resolve_path
from robolearn.policy import CHECKPOINT_JSON, CheckpointError, load_algo, read_checkpoint_info, training_only_keys
from robolearn.algos.base import Algo, OptimizerStep, optimizer_steps

START_VALUE = "start_value"
TOTAL_LOSS = "valid_loss/total"


@dataclass
class SelectionConfig:
    #: demo folder holding the held-out episodes (None: the folder the run was trained on).
    data: str | None = None
    split: str = "valid"
    #: validation batches per checkpoint (of the algorithm's own batch size).
    batches: int = 20
    seed: int = 0

    def validate(self) -> None:
        if isinstance(self.batches, bool) or not isinstance(self.batches, int) or self.batches < 1:
            raise ConfigError("--batches", "batches", f"expected a positive integer, got {self.batches!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("--seed", "seed", f"expected a non-negative integer, got {self.seed!r}")


def run_checkpoints(run: str | os.PathLike) -> list[Path]:
    """Every saved checkpoint of a run folder (``checkpoints/step_*``), oldest first."""
    base = Path(run) / "checkpoints"
    if not base.is_dir():
        raise CheckpointError(run, "checkpoints", "no checkpoints/ folder: not a run folder")
    found = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / CHECKPOINT_JSON).is_file())
    if not found:
        raise CheckpointError(base, "<checkpoints>", "holds no checkpoint (no step_*/checkpoint.json)")
    return found


def held_out_episodes(folder: str | os.PathLike, split: str) -> tuple[DemoReader, list[Episode]]:
    """The episodes of ``split``; a folder without a split is refused (every episode of it may
    have been trained on, so its losses would not be validation losses)."""
    reader = DemoReader(folder)
    if not reader.meta.split:
        raise DemoFormatError(reader.folder / META_NAME, "split",
                              f"the folder has no train/valid split; run `robolearn split {folder}` before training")
    return reader, [reader.load(i) for i in reader.split_indices(split)]


# --------------------------------------------------------------------------- the scores


class NoUpdate(OptimizerStep):
    """An optimiser step that takes none: no backward pass, no change to the weights."""

    def __call__(self, opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
        return None


def validation_losses(algo: Algo, data: DemoDataset, batches: int, seed: int) -> dict[str, float]:
    """Mean of each ``loss/*`` the algorithm's ``train_step`` reports, on ``batches`` batches of
    ``data``, without changing the algorithm (no optimiser step, weights restored after each batch)."""
    snapshot = {k: v.detach().clone() for k, v in algo.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    algo.train()
    try:
        for _ in range(batches):
            with optimizer_steps(NoUpdate()), torch.no_grad():
                metrics = algo.train_step(data, gen)
            algo.load_state_dict(snapshot)
            for key, value in metrics.items():
                if key.startswith("loss/"):
                    sums[key] = sums.get(key, 0.0) + float(value)
    finally:
        algo.load_state_dict(snapshot)
        algo.eval()
    losses = {f"valid_{k}": v / batches for k, v in sorted(sums.items())}
    losses[TOTAL_LOSS] = sum(losses.values())
    return losses


#: Value-based algorithms: their critic, the features it reads, and how many actions V(s) maxes over.
_VALUE_HEADS: dict[str, Callable[[Any], tuple[Any, Callable, int]]] = {
    "bcq": lambda a: (a.bcq, a.encode, int(a.cfg.policy_action_samples)),
    "iris": lambda a: (a.value, a.encode_goal, int(a.cfg.num_value_action_samples)),
    "iql": lambda a: (a, a.encode, 0),  # in-sample V: no actions to sample
}


@torch.no_grad()
def start_state_value(algo: Algo, data: DemoDataset, seed: int) -> float | None:
    """Mean learned V(s0) over the episodes' start states (None for algorithms without a critic)."""
    head = _VALUE_HEADS.get(algo.name)
    if head is None:
        return None
    critic, features, samples = head(algo)
    gen = torch.Generator().manual_seed(seed)
    values = critic.state_value(features(data.observations(data.ep_start)), samples, gen)
    return float(values.mean())


def criteria_directions(scores: list[dict[str, float]]) -> dict[str, str]:
    """Every criterion the scores hold, with the end that is better."""
    names = sorted({k for s in scores for k in s})
    return {k: ("max" if k == START_VALUE else "min") for k in names}


def choose(rows: list[dict[str, Any]], criterion: str, direction: str) -> dict[str, Any] | None:
    """The row a criterion picks (ties: the earlier checkpoint); None when no row has a finite score."""
    scored = [r for r in rows if math.isfinite(r["scores"].get(criterion, math.nan))]
    if not scored:
        return None
    sign = -1.0 if direction == "max" else 1.0
    return min(scored, key=lambda r: (sign * r["scores"][criterion], r["step"]))


# --------------------------------------------------------------------------- the command's logic


def select_checkpoints(run: str | os.PathLike, cfg: SelectionConfig | None = None,
                       json_out: str | os.PathLike | None = None, progress: bool = False) -> dict[str, Any]:
    """Score every checkpoint of ``run`` on held-out episodes; returns (and writes) the table."""
    cfg = cfg or SelectionConfig()
    cfg.validate()
    checkpoints = run_checkpoints(run)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    _, first_info = read_checkpoint_info(checkpoints[-1])
    folder, data = _validation_data(run, cfg, first_info, warnings)
    for ckpt in checkpoints:
        algo, info, _ = load_algo(ckpt)
        meta = info.get("meta") or {}
        if list(info["obs_keys"]) != list(data.obs_keys):
            raise CheckpointError(ckpt / CHECKPOINT_JSON, "obs_keys", f"{info['obs_keys']} differ from the final checkpoint's {data.obs_keys}")
        scores = validation_losses(algo, data, cfg.batches, cfg.seed)
        value = start_state_value(algo, data, cfg.seed)
        if value is not None:
            scores[START_VALUE] = value
        rows.append({"name": ckpt.name, "step": int(info.get("step") or 0), "algo": info["algo"], "task": meta.get("task"),
                     "scores": scores})
        if progress:
            print(f"  {ckpt.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()), flush=True)
    directions = criteria_directions([r["scores"] for r in rows])
    chosen = {}
    for name, direction in directions.items():
        row = choose(rows, name, direction)
        chosen[name] = {"direction": direction, "checkpoint": row and row["name"], "step": row and row["step"]}
    table = {
        "run": str(run), "data": str(folder), "split": cfg.split, "episodes": data.num_episodes,
        "batches": cfg.batches, "seed": cfg.seed, "algo": rows[0]["algo"],
        "checkpoints": rows, "criteria": chosen, "final": rows[-1]["name"], "warnings": warnings,
    }
    if json_out is not None:
        atomic_write_bytes(Path(json_out), (json.dumps(table, indent=2) + "\n").encode())
    return table


def _validation_data(run: str | os.PathLike, cfg: SelectionConfig, info: dict[str, Any],
                     warnings: list[str]) -> tuple[Path, DemoDataset]:
    """The held-out episodes as a dataset over the run's observation keys (and, in ``warnings``,
    a note when the run trained on more episodes than the folder's train split holds)."""
    meta = info.get("meta") or {}
    trained = meta.get("data") or {}
    if cfg.data is None and not trained.get("path"):
        raise ConfigError("--data", "data", f"the checkpoints of {run} do not name their demo folder; pass --data FOLDER")
    folder = resolve_path(cfg.data or trained["path"])
    reader, episodes = held_out_episodes(folder, cfg.split)
    if meta.get("task") and reader.meta.task != meta["task"]:
        raise ConfigError("--data", "data", f"{folder} holds task {reader.meta.task!r}; the run was trained on {meta['task']!r}")
    if not episodes:
        raise DemoFormatError(reader.folder / META_NAME, f"split.{cfg.split}", "names no episodes to validate on")
    same_folder = bool(trained.get("path")) and resolve_path(trained["path"]).resolve() == folder.resolve()
    train_split = reader.meta.split.get("train")
    if same_folder and train_split is not None and trained.get("episodes") not in (None, len(train_split)):
        warnings.append(f"the run trained on {trained['episodes']} episodes but the folder's train split has "
                        f"{len(train_split)}: the split may have been drawn after training, so the "
                        f"{cfg.split!r} episodes may have been trained on")
    return folder, DemoDataset(episodes, list(info["obs_keys"]) + training_only_keys(info), source=f"{folder}: split {cfg.split}")


def markdown_table(table: dict[str, Any]) -> str:
    """The scores per checkpoint and the checkpoint each criterion picks, as markdown."""
    names = list(table["criteria"])
    lines = ["| checkpoint | step | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in table["checkpoints"]:
        cells = [f"{row['scores'][n]:.4g}" if n in row["scores"] else "n/a" for n in names]
        lines.append(f"| {row['name']} | {row['step']} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, pick in table["criteria"].items():
        better = "highest" if pick["direction"] == "max" else "lowest"
        lines.append(f"- {name} ({better}): {pick['checkpoint']}")
    lines.append(f"- final: {table['final']}")
    return "\n".join(lines)
