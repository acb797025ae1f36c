"""The one episode loop: evaluation and collection roll episodes out through ``rollout``.

An *actor* is anything with ``reset(seed)`` and ``act(obs) -> action``: a trained ``Policy``, a
scripted operator behind ``OperatorActor``, a pipelined re-planner. Optionally ``prime(obs)``
(work to do once the first observation is in, before the first action: a pipelined planner plans
its first subgoal there) and ``current_goal`` (a subgoal to draw into videos).

One step: the actor's command as float32, clipped to the task's action bounds, goes to
``env.step``; the episode ends when the task says done, at the horizon, or at the first success
when ``stop_on_success`` (evaluation scores the first success; demonstrations may go on to the
task's own end, ``done_on_success: false``). ``ControlLoop`` runs the same kind of actor on a
real arm at a fixed rate and starts its episodes with the same ``start_episode``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from robolearn.runtime.seeds import EpisodeSeeds, evaluation_seeds


@dataclass
class Rollout:
    """One episode. ``obs[k]`` and ``states`` have T+1 rows (the last is the final one), the rest T."""

    seeds: EpisodeSeeds
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    success: bool
    #: Sum of the rewards, accumulated in float64 as the task returned them.
    total_return: float
    states: np.ndarray | None = None
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])


def start_episode(actor: Any, obs: Any, seed: Any = None, reset: bool = True) -> None:
    """Reset ``actor`` for a new episode (with ``seed`` when given) and let it ``prime`` itself on the
    first observation, before its first action: the order every episode loop follows."""
    if reset and hasattr(actor, "reset"):
        if seed is None:
            actor.reset()
        else:
            actor.reset(seed)
    prime = getattr(actor, "prime", None)
    if callable(prime):
        prime(obs)


def _frame(env: Any, actor: Any, size: int) -> np.ndarray | None:
    return env.render(size, size, goal=getattr(actor, "current_goal", None))


def rollout(
    env: Any,
    actor: Any,
    seeds: EpisodeSeeds | int,
    *,
    horizon: int | None = None,
    stop_on_success: bool = True,
    record_states: bool = False,
    video_size: int | None = None,
    obs_keys: list[str] | None = None,
    on_step: Callable[[int, dict[str, np.ndarray], np.ndarray, Any], None] | None = None,
) -> Rollout:
    """Roll one episode of ``actor`` out in ``env``.

    seeds: the episode's ``EpisodeSeeds``, or an int (an evaluation seed, for reset and actor alike).
    horizon: the step limit (the env's own when None).
    record_states: also keep ``env.get_state()`` at every step, for exact replay.
    video_size: render a ``video_size``-square frame before each step and after the last.
    obs_keys: the observation keys to keep (all of the first observation's when None).
    on_step: ``f(step, obs, action, result)`` after each env step (keep it cheap).
    """
    if not isinstance(seeds, EpisodeSeeds):
        seeds = EpisodeSeeds(index=0, reset=int(seeds), actor=int(seeds))
    limit = int(env.horizon if horizon is None else horizon)
    obs = env.reset(seed=seeds.reset)
    start_episode(actor, obs, seeds.actor)
    get_state = getattr(env, "get_state", None) if record_states else None
    low, high = env.action_spec.bounds()
    keys = list(obs) if obs_keys is None else list(obs_keys)
    rows = {k: [np.asarray(obs[k])] for k in keys}
    states = [np.asarray(get_state())] if get_state else None
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    dones: list[bool] = []
    frames: list[np.ndarray] = []
    total, success = 0.0, False
    for step in range(limit):
        action = np.clip(np.asarray(actor.act(obs), dtype=np.float32).reshape(-1), low, high)
        if video_size:
            frame = _frame(env, actor, video_size)
            if frame is not None:
                frames.append(frame)
        result = env.step(action)
        obs = result.obs
        for k in keys:
            rows[k].append(np.asarray(obs[k]))
        if states is not None:
            states.append(np.asarray(get_state()))
        actions.append(action)
        rewards.append(float(result.reward))
        total += float(result.reward)
        success = success or bool(result.success)
        dones.append(bool(result.done))
        if on_step is not None:
            on_step(step, obs, action, result)
        if result.done or (stop_on_success and success):
            break
    if video_size:
        frame = _frame(env, actor, video_size)
        if frame is not None:
            frames.append(frame)
    if dones:
        dones[-1] = True
    return Rollout(
        seeds=seeds,
        obs={k: np.stack(v) for k, v in rows.items()},
        actions=np.stack(actions).astype(np.float32) if actions else np.zeros((0, len(low)), np.float32),
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones, bool),
        success=success,
        total_return=total,
        states=np.stack(states) if states is not None else None,
        frames=frames,
    )


def evaluation_rollout(env: Any, policy: Any, base_seed: int, index: int, **kwargs: Any) -> Rollout:
    """Evaluation episode ``index`` of a run seeded ``base_seed`` (``robolearn eval``'s episodes)."""
    return rollout(env, policy, evaluation_seeds(base_seed, index), **kwargs)
