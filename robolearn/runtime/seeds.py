"""Episode seeds: the one rule that seeds episode ``index`` of a job run with ``--seed base_seed``.

Every job derives each episode's randomness from ``(base_seed, stream, index)`` alone, in the
parent process, so a result is reproducible episode by episode and the same whatever the number
of workers::

    SeedSequence(entropy=[base_seed, stream], spawn_key=(index,)).spawn(2) -> (reset, actor)

The first child gives the environment's reset seed (one 32-bit word), the second seeds the
actor's own sampling: a scripted operator's NumPy generator takes the ``SeedSequence`` itself, a
trained policy's torch generator an int (the child's first word, ``EpisodeSeeds.with_int_actor``).

``stream`` names what the episodes are for, so that ``collect --seed 3`` and ``eval --seed 3``
never replay each other's reset states: demonstrations are stream 0, evaluation episodes stream 1,
episodes on an arm over a simulated task (``deploy``, ``teleop``, ``serve-arm``) stream 2.
Stream 0 is also the demonstrations' rule of the recorded demo folders
(``SeedSequence(base_seed).spawn`` children): ``SeedSequence`` pads its entropy with zero words,
so ``[base_seed, 0]`` and ``base_seed`` are the same entropy, and a folder's ``extra.seed``
still rebuilds its episodes exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from robolearn.config import ConfigError

#: What the episodes of a stream are for (a fixed small integer each; never renumber one).
DEMONSTRATION_STREAM = 0
EVALUATION_STREAM = 1
DEPLOYMENT_STREAM = 2


@dataclass(frozen=True)
class EpisodeSeeds:
    """What one episode is seeded with: the environment's reset and the actor's own sampling."""

    index: int
    reset: int
    #: Passed to ``actor.reset(seed)``: a ``SeedSequence`` for an operator, an int for a policy.
    actor: Any
    stream: int = DEMONSTRATION_STREAM

    def with_int_actor(self) -> "EpisodeSeeds":
        """The same seeds with the actor's as an int, for actors that take one (a policy's torch generator)."""
        if not isinstance(self.actor, np.random.SeedSequence):
            return self
        return dataclasses.replace(self, actor=_word(self.actor))


def _word(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, np.uint32)[0])


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        flag = "--seed" if name == "seed" else name
        raise ConfigError(flag, name, f"expected a non-negative integer, got {value!r}")
    return int(value)


def episode_seeds(base_seed: int, stream: int, index: int) -> EpisodeSeeds:
    """The seeds of episode ``index`` of ``stream`` in a job run with ``--seed base_seed``."""
    base = _non_negative_int("seed", base_seed)
    stream = _non_negative_int("stream", stream)
    index = _non_negative_int("index", index)
    reset_ss, actor_ss = np.random.SeedSequence([base, stream], spawn_key=(index,)).spawn(2)
    return EpisodeSeeds(index=index, reset=_word(reset_ss), actor=actor_ss, stream=stream)


def evaluation_seeds(base_seed: int, index: int) -> EpisodeSeeds:
    """Evaluation episode ``index`` (``robolearn eval``): a policy's actor seed is an int."""
    return episode_seeds(base_seed, EVALUATION_STREAM, index).with_int_actor()


def demonstration_seeds(base_seed: int, index: int) -> EpisodeSeeds:
    """Episode ``index`` of a demo folder (counting the episodes already there when appending)."""
    return episode_seeds(base_seed, DEMONSTRATION_STREAM, index)


def deployment_seeds(base_seed: int, index: int) -> EpisodeSeeds:
    """Episode ``index`` on an arm (``robolearn deploy``, teleop): the simulated task's reset
    (``TaskBoundArm.home``) and the policy's sampling; a policy's actor seed is an int."""
    return episode_seeds(base_seed, DEPLOYMENT_STREAM, index).with_int_actor()
