"""The step body every episode runs: observe, act, send, record, and the rules that end it.

One function, ``run_episode``, for a simulated task (``rollout``: evaluation and collection, as
fast as the simulator goes) and for an arm (``robolearn.hal.loop.ControlLoop``: deployment and
teleoperation, paced against the clock), so a policy deployed on an arm takes the same steps, in
the same order, as in the evaluation that scored it. What differs is behind two small interfaces:

- a ``Plant`` is what the actor acts on: ``begin()`` (the episode's first observation: a task's
  seeded reset, an arm's current state), ``observe()`` (the state now), ``send(action) -> Sent``
  (the command applied and, for a task, its reward, end and success), ``state()`` (a simulator
  state for exact replay, or None) and ``timestamp`` (when the last observation was taken, or None);
- a ``Pacer`` keeps the rate: ``start()`` once the actor is primed, ``tick()`` after each step
  (the ControlLoop's deadline schedule; a simulation has none).

One step k: observe (for k > 0), then the end rules in this order: the task's end (``done``),
the first success when ``stop_on_success``, ``stop_when(obs)``, ``max_steps``, a stop request;
then ``actor.act(obs)``, the simulator state before the command, ``send``, ``recorder.record``
(the observation the action was chosen from and the command applied, so row k is what the actor
saw and did) and ``on_step(k, obs, applied)``. The final observation is the one the end rules
were checked on: ``progress.obs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np



def start_episode(actor: Any, obs: Any, seed: Any = None, reset: bool = True) -> None:
    """Reset ``actor`` for a new episode (with ``seed`` when given) and let it ``prime`` itself on the
    first observation, before its first action: the order every episode follows."""
    if reset and hasattr(actor, "reset"):
        if seed is None:
            actor.reset()
        else:
            actor.reset(seed)
    prime = getattr(actor, "prime", None)
    if callable(prime):
        prime(obs)


@dataclass
class Sent:
    """What one command did: the command as applied, and the task's verdict on the step."""

    applied: np.ndarray
    reward: float = 0.0
    done: bool = False
    success: bool = False


class Plant(Protocol):
    timestamp: float | None

    def begin(self) -> Mapping[str, np.ndarray]: ...

    def observe(self) -> Mapping[str, np.ndarray]: ...

    def send(self, action: Any) -> Sent: ...

    def state(self) -> Any: ...


class Pacer(Protocol):
    def start(self) -> None: ...

    def tick(self) -> None: ...


@dataclass
class EpisodeProgress:
    """Where an episode is: readable after it ended and after an exception stopped it."""

    steps: int = 0
    #: The last observation taken (the final one once the episode ended).
    obs: Mapping[str, np.ndarray] | None = None
    timestamp: float | None = None
    total_return: float = 0.0
    #: Whether any step succeeded.
    success: bool = False
    done: bool = False
    #: Which rule ended it: done, success, stop_when, max_steps or request_stop ("" while running).
    ended_by: str = ""


def _observe(plant: Plant, progress: EpisodeProgress, first: bool) -> Mapping[str, np.ndarray]:
    obs = plant.begin() if first else plant.observe()
    progress.obs, progress.timestamp = obs, plant.timestamp
    return obs


def _end_rule(progress: EpisodeProgress, stop_on_success: bool,
              stop_when: Callable[[Mapping[str, np.ndarray]], bool] | None) -> str:
    if progress.done:
        return "done"
    if stop_on_success and progress.success:
        return "success"
    if stop_when is not None and stop_when(progress.obs):
        return "stop_when"
    return ""


def run_episode(
    plant: Plant,
    actor: Any,
    *,
    seed: Any = None,
    reset_actor: bool = True,
    max_steps: int | None = None,
    stop_on_success: bool = True,
    stop_when: Callable[[Mapping[str, np.ndarray]], bool] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    recorder: Any = None,
    on_step: Callable[[int, Mapping[str, np.ndarray], np.ndarray], None] | None = None,
    pacer: Pacer | None = None,
    progress: EpisodeProgress | None = None,
) -> EpisodeProgress:
    """Run one episode of ``actor`` on ``plant``; ``progress`` (pass one in to read it after an
    exception) says how many steps it took, its final observation and what ended it.

    recorder: anything with ``record(obs, action, reward=, done=, timestamp=, state=)`` (an
    ``EpisodeRecorder``, rollout's arrays); starting and finishing the episode stays the caller's.
    """
    progress = progress if progress is not None else EpisodeProgress()
    obs = _observe(plant, progress, first=True)
    # Reset, then prime on the first observation (a pipelined planner makes its first plan here,
    # while an arm holds still), before the clock starts.
    start_episode(actor, obs, seed, reset=reset_actor)
    if pacer is not None:
        pacer.start()
    while True:
        if progress.steps > 0:
            obs = _observe(plant, progress, first=False)
            progress.ended_by = _end_rule(progress, stop_on_success, stop_when)
            if progress.ended_by:
                break
        if max_steps is not None and progress.steps >= max_steps:
            progress.ended_by = "max_steps"
            break
        if stop_requested is not None and stop_requested():
            progress.ended_by = "request_stop"
            break
        action = actor.act(obs)
        state = plant.state() if recorder is not None else None
        sent = plant.send(action)
        progress.total_return += float(sent.reward)
        progress.success = progress.success or bool(sent.success)
        progress.done = bool(sent.done)
        if recorder is not None:
            recorder.record(obs, sent.applied, reward=float(sent.reward), done=bool(sent.done),
                            timestamp=progress.timestamp, state=state)
        if on_step is not None:
            on_step(progress.steps, obs, sent.applied)
        progress.steps += 1
        if pacer is not None:
            pacer.tick()
    return progress
