"""The one episode loop of simulated tasks: evaluation and collection roll episodes out through ``rollout``.

An *actor* is anything with ``reset(seed)`` and ``act(obs) -> action``: a trained ``Policy``, a
scripted operator behind ``OperatorActor``, a pipelined re-planner. Optionally ``prime(obs)``
(work to do once the first observation is in, before the first action: a pipelined planner plans
its first subgoal there) and ``current_goal`` (a subgoal to draw into videos).

The steps are ``robolearn.runtime.episode.run_episode``'s, the same ``ControlLoop`` takes on an
arm; here the plant is the task (``TaskPlant``): the episode begins with the task's seeded reset,
the actor's command as float32, clipped to the task's action bounds, goes to ``env.step``, and the
episode ends when the task says done, at the horizon, or at the first success when
``stop_on_success`` (evaluation scores the first success; demonstrations may go on to the task's
own end, ``done_on_success: false``). Nothing paces it: a simulator runs as fast as it goes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from robolearn.runtime.episode import Sent, run_episode
from robolearn.runtime.seeds import EpisodeSeeds, evaluation_seeds
from robolearn.video import side_by_side


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


class TaskPlant:
    """A simulated task as ``run_episode``'s plant: a seeded reset, clipped commands, the task's
    reward, end and success; optionally a frame rendered before each command (with the actor's
    subgoal drawn in) and the simulator state."""

    timestamp = None

    def __init__(self, env: Any, reset_seed: int, *, record_states: bool = False, video_size: int | None = None,
                 goal: Callable[[], Any] = lambda: None, video_keys: tuple[str, ...] = ()):
        self.env, self.reset_seed, self.video_size, self.goal = env, reset_seed, video_size, goal
        self.video_keys = list(video_keys)
        self.low, self.high = env.action_spec.bounds()
        self._get_state = getattr(env, "get_state", None) if record_states else None
        self.frames: list[np.ndarray] = []
        self._obs: dict[str, np.ndarray] | None = None

    def begin(self) -> dict[str, np.ndarray]:
        self._obs = self.env.reset(seed=self.reset_seed)
        return self._obs

    def observe(self) -> dict[str, np.ndarray]:
        return self._obs

    def state(self) -> np.ndarray | None:
        return np.asarray(self._get_state()) if self._get_state is not None else None

    def render(self) -> None:
        """One video frame: the scene, then the camera frames the actor is about to act on."""
        if self.video_size:
            frame = self.env.render(self.video_size, self.video_size, goal=self.goal())
            if frame is not None and self.video_keys and self._obs is not None:
                frame = side_by_side([frame] + [self._obs[k] for k in self.video_keys if k in self._obs])
            if frame is not None:
                self.frames.append(frame)

    def send(self, action: Any) -> Sent:
        applied = np.clip(np.asarray(action, dtype=np.float32).reshape(-1), self.low, self.high)
        self.render()
        result = self.env.step(applied)
        self._obs = result.obs
        return Sent(applied=applied, reward=float(result.reward), done=bool(result.done), success=bool(result.success))


class _Rows:
    """Rollout's recorder: the episode's rows in memory, for the observation keys asked for."""

    def __init__(self, keys: list[str] | None):
        self.keys = keys
        self.obs: dict[str, list[np.ndarray]] = {}
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []
        self.states: list[Any] = []

    def record(self, obs: Any, action: np.ndarray, reward: float = 0.0, done: bool = False,
               timestamp: float | None = None, state: Any = None) -> None:
        self.keep(obs)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.dones.append(bool(done))
        self.states.append(state)

    def keep(self, obs: Any) -> None:
        """Keep one observation's rows (the final one is kept without a step)."""
        if self.keys is None:
            self.keys = list(obs)
        for k in self.keys:
            self.obs.setdefault(k, []).append(np.asarray(obs[k]))


def rollout(
    env: Any,
    actor: Any,
    seeds: EpisodeSeeds | int,
    *,
    horizon: int | None = None,
    stop_on_success: bool = True,
    record_states: bool = False,
    video_size: int | None = None,
    video_keys: tuple[str, ...] = (),
    obs_keys: list[str] | None = None,
    on_step: Callable[[int, dict[str, np.ndarray], np.ndarray], None] | None = None,
) -> Rollout:
    """Roll one episode of ``actor`` out in ``env``.

    seeds: the episode's ``EpisodeSeeds``, or an int (an evaluation seed, for reset and actor alike).
    horizon: the step limit (the env's own when None).
    record_states: also keep ``env.get_state()`` at every step, for exact replay.
    video_size: render a ``video_size``-square frame before each step and after the last.
    video_keys: camera keys of the observation shown beside each rendered frame (what an image
        policy saw when it chose the step's action).
    obs_keys: the observation keys to keep (all of the first observation's when None).
    on_step: ``f(step, obs, action)`` after each env step, with the observation the action was
        chosen from and the action as applied (keep it cheap).
    """
    if not isinstance(seeds, EpisodeSeeds):
        seeds = EpisodeSeeds(index=0, reset=int(seeds), actor=int(seeds))
    limit = int(env.horizon if horizon is None else horizon)
    plant = TaskPlant(env, seeds.reset, record_states=record_states, video_size=video_size,
                      goal=lambda: getattr(actor, "current_goal", None), video_keys=tuple(video_keys))
    rows = _Rows(None if obs_keys is None else list(obs_keys))
    end = run_episode(plant, actor, seed=seeds.actor, max_steps=limit, stop_on_success=stop_on_success, recorder=rows,
                      on_step=on_step)
    rows.keep(end.obs)
    plant.render()
    final_state = plant.state()
    states = np.stack(rows.states + [final_state]) if final_state is not None else None
    dones = np.asarray(rows.dones, bool)
    if dones.size:
        dones[-1] = True
    return Rollout(
        seeds=seeds,
        obs={k: np.stack(v) for k, v in rows.obs.items()},
        actions=np.stack(rows.actions).astype(np.float32) if rows.actions else np.zeros((0, len(plant.low)), np.float32),
        rewards=np.asarray(rows.rewards, np.float32),
        dones=dones,
        success=end.success,
        total_return=end.total_return,
        states=states,
        frames=plant.frames,
    )


def evaluation_rollout(env: Any, policy: Any, base_seed: int, index: int, **kwargs: Any) -> Rollout:
    """Evaluation episode ``index`` of a run seeded ``base_seed`` (``robolearn eval``'s episodes)."""
    return rollout(env, policy, evaluation_seeds(base_seed, index), **kwargs)
