"""Record scripted-operator demos for any registered task into a demo folder.

Why this shape: one generic loop serves Graph Reach, Lift and Can alike, so every task's
data comes out in the same format with the same bookkeeping: the runtime's ``rollout``
(the one evaluation uses), with the task's scripted operator behind the actor interface a
trained policy has. Episodes are rolled out either in this process or in W worker
processes (``robolearn.runtime.workers``: one env per worker, created once), but always
*written by this process in episode order*, so the folder is the same whatever W is.

Reproducibility: episode ``i`` of a folder (its index, counting the episodes already
there when appending) is seeded by ``robolearn.runtime.seeds.demonstration_seeds(seed, i)``:
the env reset seed and the operator's rng both come from it, and timestamps are simulated time
(``t / control_hz``), so the same ``--seed`` gives the same episodes. That is also why one
collect at a time writes a folder: a second one would roll out the same indices' seeds, so the
folder's lock (``DemoWriter``) refuses it before any rollout.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from robolearn.config import ConfigError
from robolearn.data.format import DemoMeta, DemoWriter
from robolearn.paths import ENVS_DIR
from robolearn.runtime.rollout import rollout
from robolearn.runtime.seeds import demonstration_seeds
from robolearn.runtime.workers import Backend, pool_backend, run_jobs
from robolearn.tasks.base import env_spec, make_env, make_operator
from robolearn.tasks.operator_failures import check_failure_rate, draw_failure, operator_failure_modes


@dataclass
class CollectConfig:
    task: str
    operator: str
    episodes: int
    out: str
    seed: int = 0
    workers: int = 1
    keep_failed: bool = False
    #: Share of episodes the operator fails on purpose, in the ways real operators do
    #: (robolearn.tasks.operator_failures); keep them with ``keep_failed``.
    failure_rate: float = 0.0
    #: Env overrides on top of envs/<task>.yaml (e.g. {"horizon": 200}); recorded in meta.extra["env"].
    env: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    #: "auto" or a Ray cluster's address: the episodes run on ``workers`` Ray actors there
    #: (robolearn.runtime.ray_pool); the folder is the same as with local workers.
    ray: str | None = None

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError("--episodes", "episodes", f"expected a positive integer, got {self.episodes}")
        if self.workers < 1:
            raise ConfigError("--workers", "workers", f"expected a positive integer, got {self.workers}")
        if self.seed < 0:
            raise ConfigError("--seed", "seed", f"expected a non-negative integer, got {self.seed}")
        self.failure_rate = check_failure_rate(self.failure_rate)


@dataclass
class CollectStats:
    attempted: int
    kept: int
    failed: int
    #: Median length of the kept episodes (of all attempted ones when none was kept).
    median_length: float
    success_rate: float
    steps: int
    seconds: float
    out: Path
    first_index: int

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(self.seconds, 1e-9)

    def summary(self) -> str:
        fate = "kept (--keep-failures)" if self.kept == self.attempted else "dropped"
        failed = f"{self.failed} failed, {fate}" if self.failed else "none failed"
        return (
            f"{self.kept} episodes kept of {self.attempted} ({failed}); success rate {self.success_rate:.1%}; "
            f"median length {self.median_length:.1f} steps; {self.steps} steps in {self.seconds:.1f} s "
            f"({self.steps_per_s:.0f} steps/s) -> {self.out}"
        )


class OperatorActor:
    """A task's scripted operator behind the actor interface trained policies have: ``reset(seed)``
    builds the episode's operator (after the env's reset, since a factory may read the scene) with
    its generator seeded from ``seed``, and ``act`` asks it for a command."""

    def __init__(self, task: str, kind: str, env: Any, failure_rate: float = 0.0):
        self.task, self.kind, self.env, self.failure_rate = task, kind, env, failure_rate
        self.operator: Any = None

    def reset(self, seed: Any) -> None:
        self.operator = make_operator(self.task, self.env, self.kind, np.random.default_rng(seed))
        if self.failure_rate > 0:
            modes = operator_failure_modes(self.operator, self.task)
            self.operator.plan_failure(draw_failure(seed, self.failure_rate, modes))
        self.operator.reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.operator.act(obs)

    def episode_info(self) -> dict[str, Any]:
        info = getattr(self.operator, "episode_info", None)
        return dict(info()) if info else {}


def record_episode(env: Any, task: str, kind: str, seed: int, index: int, failure_rate: float = 0.0) -> dict[str, Any]:
    """Roll demo episode ``index`` of a run seeded ``seed`` out; returns the arrays DemoWriter takes
    plus its success flag."""
    seeds = demonstration_seeds(seed, index)
    actor = OperatorActor(task, env=env, kind=kind, failure_rate=failure_rate)
    r = rollout(env, actor, seeds, stop_on_success=False, record_states=True, obs_keys=list(env.obs_spec))
    return {
        "obs": r.obs,
        "actions": r.actions,
        "rewards": r.rewards,
        "dones": r.dones,
        "success": r.success,
        "states": r.states,
        "timestamps": np.arange(r.length + 1, dtype=np.float64) / float(env.control_hz),
        # The reset seed lets `robolearn replay --mode actions` rebuild the controller's reset-time
        # references exactly (robosuite's set_state alone does not restore them).
        "extra": {**actor.episode_info(), "reset_seed": np.int64(seeds.reset)},
    }


# ---------------------------------------------------------------- worker processes
def _init_state(task: str, kind: str, env_overrides: dict[str, Any], seed: int, failure_rate: float = 0.0) -> dict[str, Any]:
    return {"env": make_env(task, **env_overrides), "task": task, "kind": kind, "seed": seed, "failure_rate": failure_rate}


def _record(w: dict[str, Any], index: int) -> dict[str, Any]:
    return record_episode(w["env"], w["task"], w["kind"], w["seed"], index, w["failure_rate"])


def _rollouts(cfg: CollectConfig, env, indices: range, episode_env: dict[str, Any],
              backend: Backend | None = None) -> Iterator[dict[str, Any]]:
    # imap keeps episode order; chunks of a few episodes amortise the inter-process round trip.
    chunk = max(1, min(8, len(indices) // (4 * cfg.workers)))
    local = {"env": env, "task": cfg.task, "kind": cfg.operator, "seed": cfg.seed, "failure_rate": cfg.failure_rate}
    return run_jobs(indices, cfg.workers, _init_state, _record,
                    init_args=(cfg.task, cfg.operator, episode_env, cfg.seed, cfg.failure_rate), local_state=local, chunksize=chunk,
                    backend=backend)


def build_meta(env, cfg: CollectConfig) -> DemoMeta:
    def text(name: str) -> str | None:
        v = getattr(env, name, None)
        return None if v is None else str(v)

    return DemoMeta(
        task=cfg.task,
        control_hz=float(env.control_hz),
        obs_spec=dict(env.obs_spec),
        action_spec=env.action_spec,
        robot=text("robot"),
        controller=text("controller"),
        source=f"scripted:{cfg.operator}",
        # "env" holds only what the caller set: policies trained on the folder inherit it
        # (train.py), so the operators' longer episode limit is recorded apart from it.
        extra={"env": dict(cfg.env), "episode_horizon": int(env.horizon), "seed": cfg.seed, "operator": cfg.operator,
               **({"failure_rate": cfg.failure_rate} if cfg.failure_rate > 0 else {})},
    )


def with_demo_horizon(task: str, env: dict[str, Any]) -> dict[str, Any]:
    """``env`` with the task's ``demo_horizon`` (envs/<task>.yaml) as the episode limit, unless
    the caller set a horizon: operators get longer than policies, so that a slow demo is
    recorded whole instead of being dropped as a failure (which would keep only the faster
    demos and quietly make the data less suboptimal than the operator is)."""
    demo_horizon = env_spec(task).get("demo_horizon")
    if "horizon" in env or demo_horizon is None:
        return dict(env)
    if isinstance(demo_horizon, bool) or not isinstance(demo_horizon, int) or demo_horizon < 1:
        raise ConfigError(ENVS_DIR / f"{task}.yaml", "demo_horizon", f"expected a positive number of steps, got {demo_horizon!r}")
    return {**env, "horizon": demo_horizon}


def collect(cfg: CollectConfig) -> CollectStats:
    """Roll out ``cfg.episodes`` operator episodes and append the kept ones to ``cfg.out``."""
    cfg.validate()
    episode_env = with_demo_horizon(cfg.task, cfg.env)
    env = make_env(cfg.task, **episode_env)
    try:
        # Fail on a bad operator name before creating the folder or starting workers (after a
        # reset, since an operator factory may read the scene it is built for).
        env.reset(seed=0)
        operator = make_operator(cfg.task, env, cfg.operator, np.random.default_rng(0))
        if cfg.failure_rate > 0:
            operator_failure_modes(operator, cfg.task)
        # A Ray cluster that is not there is reported before the folder is created.
        backend = pool_backend(cfg.ray, cfg.progress)
        # The writer holds the folder's lock until the end: a second collect into this folder is
        # refused here, before it rolls out episodes under the seeds this one is using.
        writer = DemoWriter(cfg.out, build_meta(env, cfg))
        first = writer.next_index
        indices = range(first, first + cfg.episodes)
        lengths: list[int] = []
        kept_lengths: list[int] = []
        kept = failed = steps = 0
        t0 = time.perf_counter()
        bar = tqdm(total=cfg.episodes, desc=f"collect {cfg.task}/{cfg.operator}", unit="ep", disable=not cfg.progress)
        # closing(): when a write fails (a full disk), the worker pool is stopped right away
        # rather than whenever the suspended generator is garbage collected.
        try:
            with writer, contextlib.closing(_rollouts(cfg, env, indices, episode_env, backend)) as rollouts:
                for ep in rollouts:
                    T = int(ep["actions"].shape[0])
                    steps += T
                    lengths.append(T)
                    if not ep["success"]:
                        failed += 1
                    if ep["success"] or cfg.keep_failed:
                        kept_lengths.append(T)
                        writer.write_episode(
                            ep["obs"], ep["actions"], ep["rewards"], ep["dones"], ep["success"],
                            states=ep["states"], timestamps=ep["timestamps"], extra=ep["extra"],
                        )
                        kept += 1
                    bar.update(1)
                    bar.set_postfix(kept=kept, failed=failed)
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
    finally:
        env.close()
    attempted = len(lengths)
    return CollectStats(
        attempted=attempted,
        kept=kept,
        failed=failed,
        median_length=float(np.median(kept_lengths or lengths)) if lengths else 0.0,
        success_rate=(attempted - failed) / attempted if attempted else 0.0,
        steps=steps,
        seconds=seconds,
        out=Path(cfg.out),
        first_index=first,
    )
