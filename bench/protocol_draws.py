"""The draws file (``bench/draws.yaml``): which demo folders a benchmark trains on.

Why a checked-in file: a headline figure is only free of tuning if the data it was measured on
was fixed before any setting was chosen. The file names, per task and demo set, the tuning draws
(seeds settings may be chosen on) and the evaluation draws (seeds nothing was chosen on), and the
loader refuses an evaluation seed that is also a tuning one, so the split cannot drift.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robolearn.config import ConfigError, load_yaml

DRAW_SETS = ("tuning", "evaluation")
#: Training seeds a call may use: eval seeds are ``eval_seed[set] + training seed``, so the two
#: sets' bases must lie at least this far apart for their evaluation episodes never to meet.
MAX_TRAINING_SEEDS = 1000
#: What the runner itself passes to ``robolearn collect``; draws.yaml flags may not repeat them.
RUNNER_FLAGS = ("--operator", "--episodes", "--seed", "--out", "--workers", "--no-progress")


@dataclass(frozen=True)
class DemoSet:
    """One kind of demos of a task (an operator and its flags) and the seeds of its draws."""

    task: str
    name: str
    operator: str
    flags: tuple[str, ...]
    episodes: int
    seeds: dict[str, tuple[int, ...]]
    eval_seed: dict[str, int]
    field: str  # where it is stated, for error messages: "graph_reach.demos.suboptimal"

    def collect_argv(self, seed: int, out: str | Path, workers: int) -> list[str]:
        """The ``robolearn collect`` command line of draw ``seed`` (without the program name)."""
        return [self.task, "--operator", self.operator, *self.flags, "--episodes", str(self.episodes),
                "--seed", str(seed), "--out", str(out), "--workers", str(workers), "--no-progress"]

    def fingerprint(self, seed: int) -> dict[str, Any]:
        """What makes a draw's folder what it is (not where it is, nor how many workers wrote it)."""
        return {"task": self.task, "operator": self.operator, "flags": list(self.flags), "episodes": self.episodes,
                "seed": seed}


def _int(value: Any, source: Path, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(source, where, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _seed_list(value: Any, source: Path, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(source, where, f"expected a non-empty list of collection seeds, got {value!r}")
    seeds = tuple(_int(v, source, f"{where}[{i}]", 0) for i, v in enumerate(value))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(source, where, f"lists seed(s) {repeated} twice")
    return seeds


def _mapping(value: Any, source: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(source, where, f"expected a mapping, got {value!r}")
    return value


def _unknown_keys(value: dict[str, Any], allowed: set[str], source: Path, where: str) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        raise ConfigError(source, f"{where}.{extra[0]}", f"unknown key; expected one of {sorted(allowed)}")


def _eval_seeds(value: Any, source: Path, where: str) -> dict[str, int]:
    raw = _mapping(value, source, where)
    _unknown_keys(raw, set(DRAW_SETS), source, where)
    seeds = {}
    for name in DRAW_SETS:
        if name not in raw:
            raise ConfigError(source, f"{where}.{name}", "missing; give the base seed of that set's evaluation episodes")
        seeds[name] = _int(raw[name], source, f"{where}.{name}", 0)
    if abs(seeds["evaluation"] - seeds["tuning"]) < MAX_TRAINING_SEEDS:
        raise ConfigError(source, where, f"tuning and evaluation bases must be at least {MAX_TRAINING_SEEDS} apart "
                          f"(the episodes of base + training seed would overlap), got {seeds}")
    return seeds


def _flags(value: Any, source: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or any(isinstance(v, (dict, list)) or v is None for v in value):
        raise ConfigError(source, where, f"expected a list of command-line words, got {value!r}")
    flags = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in value)
    taken = [f for f in flags if f.split("=", 1)[0] in RUNNER_FLAGS]
    if taken:
        raise ConfigError(source, where, f"{taken[0]} is set by the runner itself; remove it")
    return flags


def _demo_set(task: str, name: str, raw: Any, eval_seed: dict[str, int], source: Path) -> DemoSet:
    where = f"{task}.demos.{name}"
    raw = _mapping(raw, source, where)
    _unknown_keys(raw, {"operator", "flags", "episodes", *DRAW_SETS}, source, where)
    operator = raw.get("operator")
    if not isinstance(operator, str) or not operator:
        raise ConfigError(source, f"{where}.operator", f"expected an operator name, got {operator!r}")
    if "episodes" not in raw:
        raise ConfigError(source, f"{where}.episodes", "missing; give the episodes rolled out per draw")
    seeds = {}
    for s in DRAW_SETS:
        if s not in raw:
            raise ConfigError(source, f"{where}.{s}", "missing; list the collection seeds of its draws")
        seeds[s] = _seed_list(raw[s], source, f"{where}.{s}")
    return DemoSet(task=task, name=name, operator=operator, flags=_flags(raw.get("flags"), source, f"{where}.flags"),
                   episodes=_int(raw["episodes"], source, f"{where}.episodes", 1), seeds=seeds, eval_seed=eval_seed,
                   field=where)


def load_draws(path: str | Path, task: str) -> list[DemoSet]:
    """The demo sets of ``task`` in ``path``, checked; a ConfigError names the file and field."""
    source = Path(path)
    data = load_yaml(source)
    if task not in data:
        raise ConfigError(source, task, f"no such task; the file has {sorted(data)}")
    entry = _mapping(data[task], source, task)
    _unknown_keys(entry, {"eval_seed", "demos"}, source, task)
    if "eval_seed" not in entry:
        raise ConfigError(source, f"{task}.eval_seed", "missing; give {tuning: BASE, evaluation: BASE}")
    eval_seed = _eval_seeds(entry["eval_seed"], source, f"{task}.eval_seed")
    demos = _mapping(entry.get("demos"), source, f"{task}.demos")
    if not demos:
        raise ConfigError(source, f"{task}.demos", "no demo set")
    sets = [_demo_set(task, str(name), raw, eval_seed, source) for name, raw in demos.items()]
    tuning = {s for d in sets for s in d.seeds["tuning"]}
    for d in sets:
        shared = sorted(set(d.seeds["evaluation"]) & tuning)
        if shared:
            raise ConfigError(source, f"{d.field}.evaluation", f"seed(s) {shared} are tuning draws of {task}; "
                              "an evaluation draw must be one no setting was chosen on")
    return sets


def collect_options() -> set[str]:
    """The option strings ``robolearn collect`` accepts, read from its own parser."""
    from robolearn.commands import collect as collect_command

    parser = argparse.ArgumentParser(add_help=False)
    collect_command.add_arguments(parser)
    return set(parser._option_string_actions)


def unsupported_flags(demo_set: DemoSet, options: set[str]) -> list[str]:
    """Flags of ``demo_set`` that ``robolearn collect`` does not have (yet)."""
    return [f for f in demo_set.flags if f.startswith("--") and f.split("=", 1)[0] not in options]


def select_demo_sets(sets: list[DemoSet], names: list[str] | None, source: Path) -> tuple[list[DemoSet], list[str]]:
    """The demo sets a call runs, and a note for each one skipped: by default every set whose flags
    collect supports; a set named explicitly must exist and be supported."""
    options = collect_options()
    by_name = {d.name: d for d in sets}
    notes: list[str] = []
    if names:
        chosen = []
        for n in names:
            if n not in by_name:
                raise ConfigError(source, f"{sets[0].task}.demos", f"no demo set {n!r}; have {sorted(by_name)}")
            missing = unsupported_flags(by_name[n], options)
            if missing:
                raise ConfigError(source, f"{by_name[n].field}.flags", f"robolearn collect has no option {missing[0]}")
            chosen.append(by_name[n])
        return chosen, notes
    chosen = []
    for d in sets:
        missing = unsupported_flags(d, options)
        if missing:
            notes.append(f"skipping demo set {d.name}: robolearn collect has no option {', '.join(missing)} yet")
        else:
            chosen.append(d)
    return chosen, notes
