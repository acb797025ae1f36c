"""Operators that fail some of their episodes, the way real operators do.

Offline RL's promise is to learn from every episode, rewarded or not, so a demo folder may hold
episodes whose operator dropped the object, gave up on a missed grasp, took a wrong turn or ran
out of time. A scripted operator that can fail lists its ``failure_modes`` and follows
``plan_failure(mode)`` (called before ``reset()``): ``None`` or ``""`` means "succeed as usual".

Which episodes fail, and how, is drawn per episode by ``draw_failure`` from a stream of its own,
derived from the episode's operator seed (a ``SeedSequence`` from
``robolearn.runtime.seeds.demonstration_seeds``) but apart from the generator the operator
acts with. So the choice is reproducible and the same whatever the number of workers, and an
episode that is not chosen to fail is the very episode, bit for bit, that the operator records
at a failure rate of 0.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from robolearn.config import ConfigError, require_number

#: Spawn-key component of the failure stream: beyond any child index ``SeedSequence.spawn`` hands out.
FAILURE_STREAM_KEY = 0xFA11


def check_failure_rate(value: Any, source: str = "--failure-rate") -> float:
    """The share of episodes to fail, a finite number in [0, 1] (not a bool)."""
    return require_number(source, "failure_rate", value, at_least=0.0, at_most=1.0)


def failure_stream(seed: Any) -> np.random.Generator:
    """The generator that decides an episode's failure, from its operator seed (a ``SeedSequence``
    or an int) without touching the operator's own stream."""
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, FAILURE_STREAM_KEY))
    else:
        ss = np.random.SeedSequence(int(seed), spawn_key=(FAILURE_STREAM_KEY,))
    return np.random.default_rng(ss)


def draw_failure(seed: Any, rate: float, modes: tuple[str, ...]) -> str:
    """The failure mode of the episode seeded ``seed`` ("" when it is to succeed): it fails with
    probability ``rate``, in one of ``modes`` drawn uniformly."""
    rng = failure_stream(seed)
    fails = bool(rng.random() < rate)
    mode = str(modes[int(rng.integers(len(modes)))])
    return mode if fails else ""


def operator_failure_modes(operator: Any, task: str) -> tuple[str, ...]:
    """The failure modes ``operator`` can play, or ConfigError when its task's operators have none."""
    modes = tuple(getattr(operator, "failure_modes", ()) or ())
    if not modes or not callable(getattr(operator, "plan_failure", None)):
        raise ConfigError("--failure-rate", "failure_rate", f"task {task!r}'s scripted operators cannot play failures")
    return modes


class FailurePlan:
    """The failure bookkeeping scripted operators share: which mode this episode plays, checked
    against the operator's ``failure_modes``, and what the demo folder records about it."""

    failure_modes: ClassVar[tuple[str, ...]] = ()
    #: None: no failure rate was asked for (the episode info is what it always was);
    #: "": asked, and this episode succeeds; otherwise the mode being played.
    failure_mode: str | None = None

    def plan_failure(self, mode: str | None) -> None:
        """Play ``mode`` in the next episode (``None`` / ``""``: none). Call before ``reset()``."""
        if mode and mode not in self.failure_modes:
            raise ConfigError("operator", "failure_mode", f"unknown failure mode {mode!r}; expected one of {list(self.failure_modes)}")
        self.failure_mode = mode or ""

    def failure_info(self) -> dict[str, np.ndarray]:
        """``{"failure_mode": ...}`` (stored as ``extra/failure_mode``) once a failure was planned."""
        return {} if self.failure_mode is None else {"failure_mode": np.asarray(self.failure_mode)}
