"""Episode seeds: what seeds episode ``index`` of a job run with ``--seed base_seed``.

Every job derives each episode's randomness from ``(base_seed, index)`` alone, in the parent
process, so a result is reproducible episode by episode and the same whatever the number of
workers. Two streams follow from it, kept apart on purpose so that ``collect --seed 3`` and
``eval --seed 3`` never replay each other's reset states (demonstrations and evaluation episodes
are different draws):

- evaluation episodes: ``episode_seed(base_seed, index) = base_seed * 1_000_003 + index`` seeds
  both the task's reset distribution and the policy's sampling (the episodes BENCHMARKS.md's
  evaluation tables were measured on);
- demonstration episodes: the ``index``-th child of ``SeedSequence(base_seed)``, split into the
  reset seed and the operator's generator (the rule the recorded datasets were collected with).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: A prime larger than any episode count, so distinct (base_seed, index) pairs of a run do not collide.
EVAL_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class EpisodeSeeds:
    """What one episode is seeded with: the environment's reset and the actor's own sampling."""

    index: int
    reset: int
    #: Passed to ``actor.reset(seed)``: an int for a policy, a ``SeedSequence`` for an operator.
    actor: Any


def episode_seed(base_seed: int, index: int) -> int:
    """The seed of evaluation episode ``index``, for the reset distribution and the policy alike."""
    return int(base_seed) * EVAL_SEED_STRIDE + int(index)


def evaluation_seeds(base_seed: int, index: int) -> EpisodeSeeds:
    seed = episode_seed(base_seed, index)
    return EpisodeSeeds(index=int(index), reset=seed, actor=seed)


def demonstration_seeds(base_seed: int, index: int) -> EpisodeSeeds:
    """Episode ``index`` of a demo folder (counting the episodes already there when appending)."""
    ss = np.random.SeedSequence(int(base_seed), spawn_key=(int(index),))
    env_ss, actor_ss = ss.spawn(2)
    return EpisodeSeeds(index=int(index), reset=int(env_ss.generate_state(1, np.uint32)[0]), actor=actor_ss)
