"""Record scripted-operator demos for any registered task into a demo folder.

Why this shape: one generic loop (``make_env`` + ``make_operator``) serves Graph Reach,
Lift and Can alike, so every task's data comes out in the same format with the same
bookkeeping. Episodes are rolled out either in this process or in W worker processes
(spawn context, one env per worker, created once), but always *written by this process
in episode order*, so the folder is the same whatever W is.

Reproducibility: episode ``i`` of a folder (its index, counting the episodes already
there when appending) is seeded from ``SeedSequence(seed, spawn_key=(i,))``: the env
reset seed and the operator's rng both come from it, and timestamps are simulated time
(``t / control_hz``), so the same ``--seed`` gives the same episodes. That is also why one
collect at a time writes a folder: a second one would roll out the same indices' seeds, so the
folder's lock (``DemoWriter``) refuses it before any rollout.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from robolearn.config import ConfigError
from robolearn.data.format import DemoMeta, DemoWriter
from robolearn.errors import portable
from robolearn.paths import ENVS_DIR
from robolearn.tasks.base import env_spec, make_env, make_operator


@dataclass
class CollectConfig:
    task: str
    operator: str
    episodes: int
    out: str
    seed: int = 0
    workers: int = 1
    keep_failed: bool = False
    #: Env overrides on top of envs/<task>.yaml (e.g. {"horizon": 200}); recorded in meta.extra["env"].
    env: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError("--episodes", "episodes", f"expected a positive integer, got {self.episodes}")
        if self.workers < 1:
            raise ConfigError("--workers", "workers", f"expected a positive integer, got {self.workers}")
        if self.seed < 0:
            raise ConfigError("--seed", "seed", f"expected a non-negative integer, got {self.seed}")


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
        fate = "kept (--keep-failed)" if self.kept == self.attempted else "dropped"
        failed = f"{self.failed} failed, {fate}" if self.failed else "none failed"
        return (
            f"{self.kept} episodes kept of {self.attempted} ({failed}); success rate {self.success_rate:.1%}; "
            f"median length {self.median_length:.1f} steps; {self.steps} steps in {self.seconds:.1f} s "
            f"({self.steps_per_s:.0f} steps/s) -> {self.out}"
        )


def episode_seeds(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """(env reset seed, operator rng) for episode ``index`` of a run seeded with ``seed``."""
    ss = np.random.SeedSequence(seed, spawn_key=(index,))
    env_ss, op_ss = ss.spawn(2)
    return int(env_ss.generate_state(1, np.uint32)[0]), np.random.default_rng(op_ss)


def rollout(env, task: str, kind: str, seed: int, index: int) -> dict[str, Any]:
    """Roll one operator episode out; returns the arrays DemoWriter takes plus its success flag."""
    env_seed, op_rng = episode_seeds(seed, index)
    obs = env.reset(seed=env_seed)
    op = make_operator(task, env, kind, op_rng)
    op.reset()
    get_state = getattr(env, "get_state", None)
    low, high = env.action_spec.bounds()
    keys = list(env.obs_spec)
    obs_rows = {k: [np.asarray(obs[k])] for k in keys}
    states = [np.asarray(get_state())] if get_state else None
    actions, rewards, dones = [], [], []
    success = False
    for _ in range(int(env.horizon)):
        action = np.clip(np.asarray(op.act(obs), dtype=np.float32).reshape(-1), low, high)
        res = env.step(action)
        obs = res.obs
        for k in keys:
            obs_rows[k].append(np.asarray(obs[k]))
        if states is not None:
            states.append(np.asarray(get_state()))
        actions.append(action)
        rewards.append(float(res.reward))
        success = success or bool(res.success)
        dones.append(bool(res.done))
        if res.done:
            break
    T = len(actions)
    dones[-1] = True
    info = getattr(op, "episode_info", None)
    return {
        "obs": {k: np.stack(v) for k, v in obs_rows.items()},
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "dones": np.asarray(dones, bool),
        "success": success,
        "states": np.stack(states) if states is not None else None,
        "timestamps": np.arange(T + 1, dtype=np.float64) / float(env.control_hz),
        # The reset seed lets `robolearn replay --mode actions` rebuild the controller's reset-time
        # references exactly (robosuite's set_state alone does not restore them).
        "extra": {**(dict(info()) if info else {}), "reset_seed": np.int64(env_seed)},
    }


# ---------------------------------------------------------------- worker processes
_WORKER: dict[str, Any] = {}


def _init_worker(task: str, kind: str, env_overrides: dict[str, Any], seed: int) -> None:
    """A pool worker's initializer. Ctrl-C is the parent's to handle, and a failure is kept for
    the first rollout to raise (an initializer that raises prints a traceback and makes the
    pool restart the worker forever); robolearn/errors.py's ``portable`` carries it across."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    try:
        _WORKER.update(env=make_env(task, **env_overrides), task=task, kind=kind, seed=seed)
    except Exception as exc:  # noqa: BLE001 - every failure travels to the parent
        _WORKER["error"] = portable(exc)


def _worker_rollout(index: int) -> dict[str, Any]:
    w = _WORKER
    if "error" in w:
        raise w["error"]
    try:
        return rollout(w["env"], w["task"], w["kind"], w["seed"], index)
    except Exception as exc:  # noqa: BLE001
        raise portable(exc)


def _rollouts(cfg: CollectConfig, env, indices: range, episode_env: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if cfg.workers == 1:
        for i in indices:
            yield rollout(env, cfg.task, cfg.operator, cfg.seed, i)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg.task, cfg.operator, episode_env, cfg.seed)) as pool:
        # imap keeps episode order; chunks of a few episodes amortise the inter-process round trip.
        chunk = max(1, min(8, len(indices) // (4 * cfg.workers)))
        yield from pool.imap(_worker_rollout, indices, chunksize=chunk)


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
        extra={"env": dict(cfg.env), "episode_horizon": int(env.horizon), "seed": cfg.seed, "operator": cfg.operator},
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
        make_operator(cfg.task, env, cfg.operator, np.random.default_rng(0))
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
            with writer, contextlib.closing(_rollouts(cfg, env, indices, episode_env)) as rollouts:
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
