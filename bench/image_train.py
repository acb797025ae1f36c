"""Image-policy training throughput: gradient steps per second and peak memory of each image
launch file (``launch/*_image.yaml``), on its recorded demo folder when one exists, else on a
synthetic one of the same keys and shapes (84 x 84 cameras, proprioception).

    .venv/bin/python bench/image_train.py [--steps 30] [--threads 2] [--json bench/results/image_train.json]

Each launch file runs in its own process, so its peak resident memory (``ru_maxrss``) is its
own: the dataset's uint8 frames, the networks, the optimiser state and the activations of one
step. The table's ``budget min`` is the launch file's ``train.steps`` at the measured rate:
what its stated budget (2 cores, 60 minutes) is checked against. ``cpu s/step`` (process CPU
time, all threads) is the figure to read on a shared machine, where the wall-clock rate is
whatever share of the cores the other processes leave.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Sizes of the proprioceptive keys of robosuite's Panda, for synthetic folders.
LOW_DIM_SIZES = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}
CAMERA_SHAPE = (84, 84, 3)


def synthetic_episodes(obs_keys: list[str], episodes: int, length: int, action_dim: int = 7):
    """Episodes with the launch file's keys: random uint8 frames for ``*_image`` keys, noise for the rest."""
    import numpy as np

    from robolearn.data.format import Episode

    rng = np.random.default_rng(0)
    out = []
    for _ in range(episodes):
        obs = {}
        for k in obs_keys:
            if k.endswith("_image"):
                obs[k] = rng.integers(0, 256, (length + 1, *CAMERA_SHAPE), dtype=np.uint8)
            else:
                obs[k] = rng.normal(size=(length + 1, LOW_DIM_SIZES.get(k, 3))).astype(np.float32)
        dones = np.zeros(length, bool)
        dones[-1] = True
        out.append(Episode(obs=obs, actions=rng.uniform(-1, 1, (length, action_dim)).astype(np.float32),
                           rewards=dones.astype(np.float32), dones=dones, success=True))
    return out


def measure(launch: Path, steps: int, warmup: int, threads: int | None, episodes: int, length: int) -> dict:
    """One launch file, in this process: build its algorithm on its data and time ``steps`` steps."""
    import torch

    from robolearn.algos.base import algo_class
    from robolearn.data.dataset import DemoDataset
    from robolearn.distributed import Ranks, training_threads
    from robolearn.launch import load_launch
    from robolearn.train import load_dataset, training_only_keys

    cfg = load_launch(launch)
    threads = threads or training_threads(cfg.train, Ranks())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recorded = bool(cfg.data.path) and cfg.data_path().is_dir()
    if recorded:
        data = load_dataset(cfg)[3]
    else:
        keys = cfg.data.obs_keys + training_only_keys(cfg)  # goal-only keys are recorded in the demos too
        data = DemoDataset(synthetic_episodes(keys, episodes, length), keys)
    algo = algo_class(cfg.algo_name).build(cfg.algo_params, data.obs_spec, data.normalizers, data.action_dim, str(launch))
    algo.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(warmup):
        algo.train_step(data, gen)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        algo.train_step(data, gen)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = steps / wall
    params = sum(p.numel() for p in algo.encoder.parameters())
    return {
        "launch": launch.name, "algo": cfg.algo_name, "data": "recorded" if recorded else "synthetic",
        "rows": int(data.obs[cfg.data.obs_keys[0]].shape[0]), "threads": threads, "steps": steps,
        "steps_per_s": round(rate, 3), "s_per_step": round(1 / rate, 3), "cpu_s_per_step": round(cpu / steps, 3),
        "train_steps": cfg.train.steps, "budget_min": round(cfg.train.steps / rate / 60, 1),
        "encoder_params": int(params), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--launch", nargs="*", help="launch files (default: launch/*_image.yaml)")
    ap.add_argument("--steps", type=int, default=30, help="timed gradient steps per launch file")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the launch file's train.threads)")
    ap.add_argument("--episodes", type=int, default=20, help="synthetic folders: episodes")
    ap.add_argument("--length", type=int, default=100, help="synthetic folders: steps per episode")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "image_train.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(Path(args.one), args.steps, args.warmup, args.threads, args.episodes, args.length)))
        return 0
    launches = [Path(p) for p in args.launch] if args.launch else sorted((REPO / "launch").glob("*_image.yaml"))
    rows = []
    for launch in launches:
        cmd = [sys.executable, __file__, "--one", str(launch), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--episodes", str(args.episodes), "--length", str(args.length)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{launch.name}: failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    head = (f"{'launch':28} {'algo':7} {'data':9} {'thr':>3} {'steps/s':>8} {'s/step':>7} {'cpu s/step':>10} {'steps':>6} "
            f"{'budget min':>10} {'enc params':>10} {'peak MB':>8}")
    print(head)
    for r in rows:
        print(f"{r['launch']:28} {r['algo']:7} {r['data']:9} {r['threads']:>3} {r['steps_per_s']:>8.2f} {r['s_per_step']:>7.3f} "
              f"{r['cpu_s_per_step']:>10.3f} {r['train_steps']:>6} {r['budget_min']:>10.1f} {r['encoder_params']:>10} {r['peak_rss_mb']:>8.0f}")
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "load_average": os.getloadavg(), "timed_steps": args.steps, "results": rows}
    from robolearn.data.format import atomic_write_bytes

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
