"""Perception benchmark: the marker estimator's errors against the simulator's state at 640 x 480,
on frames of scripted episodes (the operator acts on the true state; the estimator only watches).

    .venv/bin/python bench/perception.py [--tasks lift,can] [--episodes 3] [--json bench/results/perception.json]

Per task: frames, the share with an estimate, position and rotation error (median, 90th
percentile, max) over those frames, the longest run of frames without an estimate (what
``--perception-hold-s`` must cover for an episode to survive it), and the time per frame to render
and to estimate. Prints a table and writes JSON keyed by task.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "osmesa")


def pct(values, q) -> float | None:
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 3) if len(values) else None


def measure(task: str, episodes: int, operator: str, seed: int) -> dict:
    from robolearn.collect import OperatorActor
    from robolearn.perception.episode import perceived_task
    from robolearn.runtime.seeds import evaluation_seeds
    from robolearn.tasks.base import make_env

    env = make_env(task)
    watcher = perceived_task(env, "marker", hold_s=0.0)  # only its cameras and estimator are used
    pos, rot, render_ms, estimate_ms, streaks, successes, frames = [], [], [], [], [], 0, 0
    try:
        for i in range(episodes):
            seeds = evaluation_seeds(seed, i)
            obs = env.reset(seed=seeds.reset)
            actor = OperatorActor(task, operator, env)
            actor.reset(seeds.actor)
            streak, longest, prior = 0, 0, None
            for _ in range(env.horizon + 1):
                e = watcher.estimate_now(prior)
                render_ms.append(watcher.last_timing_ms[0])
                estimate_ms.append(watcher.last_timing_ms[1])
                frames += 1
                if e.pose is None:
                    streak += 1
                    longest = max(longest, streak)
                else:
                    streak, prior = 0, e.pose
                    p, r = e.pose.errors_to(watcher.truth.pose())
                    pos.append(p)
                    rot.append(r)
                result = env.step(actor.act(obs))
                obs = result.obs
                if result.done or result.success:
                    successes += bool(result.success)
                    break
            streaks.append(longest)
    finally:
        watcher.close()
    return {
        "episodes": episodes, "operator": operator, "operator_successes": successes, "frames": frames,
        "estimated_share": round(len(pos) / max(frames, 1), 4),
        "pos_err_mm_median": pct(pos, 50), "pos_err_mm_p90": pct(pos, 90), "pos_err_mm_max": pct(pos, 100),
        "rot_err_deg_median": pct(rot, 50), "rot_err_deg_p90": pct(rot, 90), "rot_err_deg_max": pct(rot, 100),
        "longest_miss_frames": int(max(streaks) if streaks else 0), "miss_streak_per_episode": streaks,
        "render_ms_median": pct(render_ms, 50), "estimate_ms_median": pct(estimate_ms, 50),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="lift,can")
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--operator", default="proficient")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "perception.json"))
    args = ap.parse_args(argv)
    out = {"resolution": [640, 480], "estimator": "marker (cv2.aruco DICT_4X4_50, subpix corners, IPPE_SQUARE + LM)"}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        out[task] = measure(task, args.episodes, args.operator, args.seed)
    print("| task | frames | estimated | pos mm median / p90 / max | rot deg median / p90 / max | longest miss | render ms | estimate ms |")
    print("|---|---:|---:|---|---|---:|---:|---:|")
    for task, r in out.items():
        if not isinstance(r, dict):
            continue
        print(f"| {task} | {r['frames']} | {100 * r['estimated_share']:.1f} % | {r['pos_err_mm_median']} / {r['pos_err_mm_p90']} / "
              f"{r['pos_err_mm_max']} | {r['rot_err_deg_median']} / {r['rot_err_deg_p90']} / {r['rot_err_deg_max']} | "
              f"{r['longest_miss_frames']} | {r['render_ms_median']} | {r['estimate_ms_median']} |")
    from robolearn.data.format import atomic_write_bytes

    atomic_write_bytes(Path(args.json), (json.dumps(out, indent=2) + "\n").encode())
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
