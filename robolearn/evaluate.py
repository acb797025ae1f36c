"""``robolearn eval``: closed-loop rollouts of a trained policy in its task's simulator.

Episode i is seeded with ``robolearn.runtime.seeds.evaluation_seeds(seed, i)`` for both the
environment's reset distribution and the policy's sampling, so a result is reproducible episode
by episode and independent of how episodes are spread over worker processes
(``robolearn.runtime.workers``). Each episode is ``robolearn.runtime.rollout.rollout``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from robolearn.config import ConfigError
from robolearn.data.format import atomic_write_bytes
from robolearn.policy import load_policy, read_checkpoint_info
from robolearn.runtime.rollout import evaluation_rollout
from robolearn.runtime.workers import Backend, pool_backend, run_jobs
from robolearn.tasks.base import TaskEnv, make_env


def make_eval_env(meta: dict[str, Any], horizon: int | None = None) -> TaskEnv:
    overrides = dict(meta.get("env") or {})
    h = horizon or meta.get("eval_horizon")
    if h:
        overrides["horizon"] = int(h)
    return make_env(meta["task"], **overrides)


# --- the work of one episode, here or in a worker process -----------------------------------

def _init_state(ckpt: str, horizon: int | None, video_dir: str | None, fps: float, video_episodes: int | None,
                perception: str | None = None, hold_s: float = 0.5) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    policy = load_policy(ckpt)
    env = make_eval_env(policy.meta, horizon)
    if perception is not None:
        from robolearn.perception.episode import perceived_task

        env = perceived_task(env, perception, hold_s)
    return {"policy": policy, "env": env, "video_dir": video_dir, "fps": fps, "video_episodes": video_episodes}


def _run_episode(w: dict[str, Any], job: tuple[int, int]) -> dict[str, Any]:
    i, base_seed = job
    want_video = w["video_dir"] is not None and (w["video_episodes"] is None or i < w["video_episodes"])
    policy = w["policy"]
    seen = tuple(k for k in policy.obs_keys if policy.obs_spec[k].kind == "image")
    r = evaluation_rollout(w["env"], policy, base_seed, i, video_size=256 if want_video else None, video_keys=seen)
    result = {"seed": r.seeds.reset, "success": r.success, "length": r.length, "return": r.total_return, "obs": r.obs,
              "index": i}
    stats = getattr(w["env"], "stats", None)
    if stats is not None:  # a PerceivedTask: the episode's estimator errors and lost frames
        result["perception"] = stats.as_dict()
    if w["video_dir"] is not None and r.frames:
        from robolearn.video import write_mp4

        path = Path(w["video_dir"]) / f"episode_{i:04d}.mp4"
        write_mp4(path, r.frames, fps=w["fps"])
        result["video"] = str(path)
    return result


def _results(jobs: list[tuple[int, int]], workers: int, init_args: tuple, local_state: dict[str, Any] | None,
             backend: Backend | None = None) -> Iterator[dict[str, Any]]:
    """Episode results in job order, from this process (``local_state``, closed at the end), a worker pool or a ``backend``."""
    try:
        yield from run_jobs(jobs, workers, _init_state, _run_episode, init_args=init_args, local_state=local_state,
                            backend=backend)
    finally:
        if local_state is not None:
            local_state["env"].close()


def evaluate_run(run_dir: str | os.PathLike, episodes: int = 50, seed: int = 0, workers: int = 1,
                 video_dir: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                 horizon: int | None = None, progress: bool = True, json_out: str | os.PathLike | None = None,
                 plot_path: str | os.PathLike | None = None, video_episodes: int | None = None,
                 perception: str | None = None, perception_hold_s: float = 0.5, ray: str | None = None) -> dict[str, Any]:
    """Roll ``episodes`` episodes out; videos for the first ``video_episodes`` (all when None).
    ``ray`` ("auto" or a cluster address): the episodes run on ``workers`` Ray actors there
    (``robolearn.runtime.ray_pool``), with the same per-episode results.
    ``perception`` ("marker", "ground_truth"): the policy's ``object`` is estimated from the task's
    perception camera (``robolearn.perception.episode``); a lost object held past
    ``perception_hold_s`` holds the arm and fails the episode."""
    if episodes < 1:
        raise ConfigError("--episodes", "episodes", f"expected a positive integer, got {episodes}")
    if perception is not None:
        from robolearn.perception.episode import check_perception_args

        check_perception_args(perception, perception_hold_s)
    ckpt, info = read_checkpoint_info(checkpoint or run_dir)
    meta = info.get("meta", {})
    fps = float(meta.get("control_hz") or 20.0)
    if video_dir is not None:
        Path(video_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed) for i in range(episodes)]
    init_args = (str(ckpt), horizon, None if video_dir is None else str(video_dir), fps, video_episodes, perception,
                 perception_hold_s)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    local_state = None
    if workers <= 1 and ray is None:
        local_state = _init_state(*init_args)
    else:
        load_policy(ckpt)  # a bad checkpoint fails here, once, before any worker starts
    backend = pool_backend(ray, progress)
    bar = tqdm(total=episodes, desc="eval", disable=not progress, dynamic_ncols=True)
    try:
        for r in _results(jobs, workers, init_args, local_state, backend):
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
        **({"ray": ray} if ray is not None else {}),
        "wall_s": round(wall, 3),
        "episodes_per_s": round(episodes / max(wall, 1e-9), 3),
        "per_episode": [{"index": r["index"], "seed": r["seed"], "success": r["success"], "length": r["length"],
                         "return": r["return"], **({"video": r["video"]} if "video" in r else {}),
                         **({"lost_frames": r["perception"]["lost_frames"]} if "perception" in r else {})} for r in results],
    }
    if perception is not None:
        from robolearn.perception.episode import perception_summary

        summary["perception"] = perception_summary([r["perception"] for r in results], perception, perception_hold_s)
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
