"""``robolearn eval``: closed-loop rollouts of a trained policy in its task's simulator.

Episode i is seeded with ``seed * 1_000_003 + i`` for both the environment's reset
distribution and the policy's sampling, so a result is reproducible episode by episode and
independent of how episodes are spread over worker processes.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from robolearn.config import ConfigError
from robolearn.data.format import atomic_write_bytes
from robolearn.errors import portable
from robolearn.policy import Policy, load_policy, read_checkpoint_info
from robolearn.tasks.base import TaskEnv, make_env


def episode_seed(seed: int, i: int) -> int:
    return seed * 1_000_003 + i


def make_eval_env(meta: dict[str, Any], horizon: int | None = None) -> TaskEnv:
    overrides = dict(meta.get("env") or {})
    h = horizon or meta.get("eval_horizon")
    if h:
        overrides["horizon"] = int(h)
    return make_env(meta["task"], **overrides)


def rollout(env: TaskEnv, policy: Policy, seed: int, video: bool = False, size: int = 256) -> dict[str, Any]:
    """One closed-loop episode; returns its observations (for plots), outcome and frames."""
    obs = env.reset(seed=seed)
    policy.reset(seed=seed)
    observations = [obs]
    frames: list[np.ndarray] = []
    total, success, steps = 0.0, False, 0
    for steps in range(1, env.horizon + 1):
        action = policy.act(obs)
        if video:
            frame = env.render(size, size, goal=policy.current_goal)
            if frame is not None:
                frames.append(frame)
        result = env.step(action)
        obs = result.obs
        observations.append(obs)
        total += float(result.reward)
        success = success or bool(result.success)
        if result.done or success:
            break
    if video:
        frame = env.render(size, size, goal=policy.current_goal)
        if frame is not None:
            frames.append(frame)
    stacked = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return {"seed": seed, "success": success, "length": steps, "return": total, "obs": stacked, "frames": frames}


# --- worker processes -----------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(ckpt: str, horizon: int | None, video_dir: str | None, fps: float, video_episodes: int | None) -> None:
    import torch

    torch.set_num_threads(1)
    policy = load_policy(ckpt)
    _WORKER.update(policy=policy, env=make_eval_env(policy.meta, horizon), video_dir=video_dir, fps=fps,
                   video_episodes=video_episodes)


def _init_pool_worker(*init_args: Any) -> None:
    """A pool worker's initializer. Ctrl-C is the parent's to handle (it terminates the pool), so
    workers ignore SIGINT instead of each printing a KeyboardInterrupt traceback. A failure is
    kept for the first job to raise: an initializer that raises kills its worker, prints a
    traceback and makes the pool start another one, forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _init_worker(*init_args)
    except Exception as exc:  # noqa: BLE001 - every failure travels to the parent
        _WORKER["error"] = portable(exc)


def _run_pool_job(job: tuple[int, int]) -> dict[str, Any]:
    """``_run_one`` in a pool worker; its exception reaches the parent as one it can unpickle."""
    if "error" in _WORKER:
        raise _WORKER["error"]
    try:
        return _run_one(job)
    except Exception as exc:  # noqa: BLE001
        raise portable(exc)


def _run_one(args: tuple[int, int]) -> dict[str, Any]:
    i, seed = args
    w = _WORKER
    want_video = w["video_dir"] is not None and (w["video_episodes"] is None or i < w["video_episodes"])
    result = rollout(w["env"], w["policy"], seed, video=want_video)
    frames = result.pop("frames")
    if w["video_dir"] is not None and frames:
        from robolearn.video import write_mp4

        path = Path(w["video_dir"]) / f"episode_{i:04d}.mp4"
        write_mp4(path, frames, fps=w["fps"])
        result["video"] = str(path)
    result["index"] = i
    return result


def _results(jobs: list[tuple[int, int]], workers: int, init_args: tuple) -> Iterator[dict[str, Any]]:
    """Episode results in job order, from this process (already initialised) or a worker pool."""
    if workers <= 1:
        try:
            for job in jobs:
                yield _run_one(job)
        finally:
            _WORKER["env"].close()
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_pool_worker, initargs=init_args) as pool:
        yield from pool.imap(_run_pool_job, jobs)


def evaluate_run(run_dir: str | os.PathLike, episodes: int = 50, seed: int = 0, workers: int = 1,
                 video_dir: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                 horizon: int | None = None, progress: bool = True, json_out: str | os.PathLike | None = None,
                 plot_path: str | os.PathLike | None = None, video_episodes: int | None = None) -> dict[str, Any]:
    """Roll ``episodes`` episodes out; videos for the first ``video_episodes`` (all when None)."""
    if episodes < 1:
        raise ConfigError("--episodes", "episodes", f"expected a positive integer, got {episodes}")
    ckpt, info = read_checkpoint_info(checkpoint or run_dir)
    meta = info.get("meta", {})
    fps = float(meta.get("control_hz") or 20.0)
    if video_dir is not None:
        Path(video_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(i, episode_seed(seed, i)) for i in range(episodes)]
    init_args = (str(ckpt), horizon, None if video_dir is None else str(video_dir), fps, video_episodes)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    if workers <= 1:
        _init_worker(*init_args)
    else:
        load_policy(ckpt)  # a bad checkpoint fails here, once, before any worker starts
    bar = tqdm(total=episodes, desc="eval", disable=not progress, dynamic_ncols=True)
    try:
        for r in _results(jobs, workers, init_args):
            results.append(r)
            bar.update(1)
            bar.set_postfix(success=f"{np.mean([x['success'] for x in results]):.2f}")
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    successes = [r["success"] for r in results]
    lengths = [r["length"] for r in results]
    ok_lengths = [r["length"] for r in results if r["success"]]
    summary: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "step": info.get("step"),
        "algo": info["algo"],
        "task": meta.get("task"),
        "episodes": episodes,
        "seed": seed,
        "success_rate": float(np.mean(successes)) if results else 0.0,
        "mean_length": float(np.mean(lengths)) if results else 0.0,
        "mean_return": float(np.mean([r["return"] for r in results])) if results else 0.0,
        "successful_mean_length": float(np.mean(ok_lengths)) if ok_lengths else None,
        "demo_median_length": (meta.get("data") or {}).get("median_length"),
        "workers": workers,
        "wall_s": round(wall, 3),
        "episodes_per_s": round(episodes / max(wall, 1e-9), 3),
        "per_episode": [{"index": r["index"], "seed": r["seed"], "success": r["success"], "length": r["length"],
                         "return": r["return"], **({"video": r["video"]} if "video" in r else {})} for r in results],
    }
    if plot_path is None and json_out is not None:
        plot_path = Path(json_out).with_suffix(".png")
    if plot_path is not None and results:
        env = make_eval_env(meta, horizon)
        plotter = getattr(env, "plot_rollouts", None)
        if plotter is not None:
            title = f"{info['algo']} on {meta.get('task')}: {summary['success_rate']:.0%} success"
            plotter([r["obs"] for r in results], successes, str(plot_path), title)
            summary["plot"] = str(plot_path)
        env.close()
    if json_out is not None:
        atomic_write_bytes(Path(json_out), (json.dumps(summary, indent=2) + "\n").encode())
    return summary
