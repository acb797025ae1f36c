"""``robolearn train``: one launch file, one seed, one run folder.

The run folder holds everything a person needs to look at afterwards: ``launch.json``
(the resolved config), ``metrics.jsonl``, TensorBoard scalars under ``tb/``, a PNG of the
loss curves, ``train_summary.json`` (with the device, threads and ranks it ran on) and
periodic checkpoints under ``checkpoints/``.

Training runs on ``train.device`` (the dataset's tensors and the networks live there; the
samplers' generators stay on the CPU, so a seed draws the same batches on any device and their
saved states resume anywhere), optionally in mixed precision (``train.amp``, CUDA only), with
``train.threads`` CPU threads (default: the available cores, divided between local ranks). With
several ranks (``--nproc N`` or torchrun; ``robolearn.distributed``) every rank trains on its
share of each global batch with averaged gradients, and rank 0 alone writes the run folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from robolearn.algos.base import OptimizerStep, algo_class, optimizer_steps
from robolearn.config import ConfigError, from_dict
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import META_NAME, load_folder, read_meta
from robolearn.distributed import (GradientAverage, RankShare, Ranks, autocast, average_metrics, barrier,
                                   broadcast_state, every_rank, generator_states, gradient_scalers, process_group,
                                   rank_generator, ranks_from_environment, resolve_device, spawn_ranks,
                                   training_threads)
from robolearn.launch import LaunchConfig, load_launch, lr_factor
from robolearn.policy import (LATEST, RNG_TRAIN, load_algo, load_tensors, read_checkpoint_info, restore_training_state,
                              save_checkpoint)
from robolearn.tasks.base import task_control_hz


class TrainingDivergedError(ConfigError):
    """A loss (or any other number the algorithm reports) turned NaN or infinite, or the weights did.

    Weights that produced a NaN are poisoned, so training stops before a checkpoint is written from
    them; earlier checkpoints, and ``latest.json`` pointing at the last of them, stay. A ConfigError,
    so the command prints it on one line: the cause is the launch file's settings or its data.
    """

    def __init__(self, source: str, step: int, name: str, value: float, last_checkpoint: int | None):
        kept = f"the latest checkpoint stays step {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
        self.step, self.value = step, value
        self.source, self.field = str(source), name
        self.problem = f"{name} is {value} at step {step}; training stopped and {kept}"
        ValueError.__init__(self, f"{source}: training diverged: {self.problem}")


def first_nonfinite(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The first NaN/inf metric, losses before the rest: the loss is what the message should name."""
    for name in sorted(metrics, key=lambda k: (not k.startswith("loss/"), k)):
        if not math.isfinite(metrics[name]):
            return name, metrics[name]
    return None


def first_nonfinite_weight(algo) -> tuple[str, float] | None:
    for name, tensor in algo.state_dict().items():
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
            return f"weights {name}", float(tensor[~torch.isfinite(tensor)].flatten()[0])
    return None


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_demo_rate(cfg: LaunchConfig, meta: Any, path: Path) -> None:
    """A policy acts at the rate its demos were recorded at: one trained on 10 Hz steps and run
    at 20 Hz moves at half the speed it learned, and nothing else would notice. The task's rate
    (its settings, the folder's recorded env and the launch file's ``env``) must be the folder's."""
    meta_file = str(path / META_NAME)
    recorded = dict(meta.extra.get("env") or {})  # a mapping: DemoMeta.from_json checks it
    # The folder's own settings are checked alone first, so a bad one is named in meta.json, not the launch file.
    task_control_hz(cfg.task, recorded, meta_file)
    rate = task_control_hz(cfg.task, {**recorded, **cfg.env}, cfg.source)
    if rate is not None and abs(rate - meta.control_hz) > 1e-6:
        raise ConfigError(cfg.source, "data.path", f"demo folder {path} was recorded at {meta.control_hz:g} Hz and task "
                          f"{cfg.task!r} runs at {rate:g} Hz; set env.control_hz: {meta.control_hz:g} in the launch file "
                          "(or --set env.control_hz=...) to train and evaluate at the demos' rate")


def load_dataset(cfg: LaunchConfig):
    """The folder's meta, its training episodes with only the launch file's observation keys and
    the algorithm's training-only keys (camera frames nothing reads are never decoded), the
    observation keys (the policy's inputs) and the dataset of both."""
    path = cfg.data_path()
    meta = read_meta(path)
    if meta.task != cfg.task:
        raise ConfigError(cfg.source, "data.path", f"demo folder {path} holds task {meta.task!r}, the launch file trains {cfg.task!r}")
    check_demo_rate(cfg, meta, path)
    extra = training_only_keys(cfg)
    obs_keys = cfg.data.obs_keys or [k for k in meta.obs_spec if k not in extra]
    unknown = [k for k in obs_keys if k not in meta.obs_spec]
    if unknown:
        raise ConfigError(cfg.source, "data.obs_keys", f"{unknown} not recorded in {path} (have {list(meta.obs_spec)})")
    unknown = [k for k in extra if k not in meta.obs_spec]
    if unknown:
        raise ConfigError(cfg.source, "algo.goal_only_keys", f"{unknown} not recorded in {path} (have {list(meta.obs_spec)})")
    both = [k for k in extra if k in obs_keys]
    if both:
        raise ConfigError(cfg.source, "algo.goal_only_keys", f"{both[0]!r} is in data.obs_keys too: a goal-only key is one "
                          "the policy does not read")
    meta, episodes = load_folder(path, cfg.data.split, keys=obs_keys + extra)
    if cfg.data.success_only:
        episodes = [ep for ep in episodes if ep.success]
        if not episodes:
            raise ConfigError(cfg.source, "data.success_only", f"demo folder {path} has no successful episode to train on")
    return meta, episodes, obs_keys, DemoDataset(episodes, obs_keys + extra, source=str(path))


def launch_algo_config(cfg: LaunchConfig):
    """The launch file's algorithm class and its typed config, checked before any demo is read."""
    cls = algo_class(cfg.algo_name, cfg.source)
    source = f"{cfg.source}: algo"
    return cls, from_dict(cls.Config, cls.without_retired(cfg.algo_params, source), source)


def training_only_keys(cfg: LaunchConfig) -> list[str]:
    """The recorded keys the launch file's algorithm reads in training only (goal-only keys)."""
    cls, algo_cfg = launch_algo_config(cfg)
    return cls.training_only_keys(algo_cfg)


def plot_losses(metrics_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot(*zip(*pts))
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.set_yscale("log" if min(v for _, v in pts) > 0 else "linear")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def scheduled_optimizers(cfg: LaunchConfig, algo) -> list[tuple[torch.optim.Optimizer, list[float]]]:
    """The optimisers ``train.lr_schedule`` drives, each with its configured rates (read now, before a
    resumed optimiser state, which holds an already scheduled lr, replaces them). None for a constant lr."""
    optimizers = algo.optimizers()
    named = cfg.train.lr_schedule_optimizers
    unknown = sorted(set(named or ()) - set(optimizers))
    if unknown:
        raise ConfigError(cfg.source, "train.lr_schedule_optimizers",
                          f"{unknown} are not optimisers of {cfg.algo_name}; it has {sorted(optimizers)}")
    if cfg.train.lr_schedule == "constant":
        return []
    return [(opt, [g["lr"] for g in opt.param_groups]) for name, opt in optimizers.items() if named is None or name in named]


#: What a run folder holds from its first seconds on; a folder with files but neither is someone else's.
RUN_FOLDER_MARKERS = ("launch.json", "checkpoints")


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse an ``--out`` that training would damage: a file, a folder of other files (a demo
    folder, a home directory: ``launch.json``, ``metrics.jsonl``, ``tb/`` would be written over
    them), or a finished run without ``--resume``. A new or empty folder, or a run folder, is fine."""
    if out.exists() and not out.is_dir():
        raise ConfigError(out, "--out", "is a file, not a run folder; choose a new folder")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in RUN_FOLDER_MARKERS):
        raise ConfigError(out, "--out", "exists and is not a run folder (no launch.json or checkpoints/), "
                          "so training would write over its files; choose a new or empty folder")
    if (out / "checkpoints" / LATEST).exists() and not resume:
        raise ConfigError(out, "--out", "run folder already has checkpoints; pass --resume to continue it or choose a new folder")


def check_training(cfg: LaunchConfig, out: Path, resume: bool, ranks: Ranks) -> torch.device:
    """Everything about a run that can be refused before it starts: the run folder (and the ranks
    a resumed run was trained on), this rank's device (one that exists here; mixed precision only
    on CUDA) and a global batch that every rank has a share of."""
    device = resolve_device(cfg.train, cfg.source, ranks)
    check_run_folder(out, resume)
    if resume and (out / "checkpoints" / LATEST).exists():
        resume_world(out, read_checkpoint_info(out)[1], ranks)
    if ranks.parallel:
        _, algo_cfg = launch_algo_config(cfg)
        batch = algo_cfg.batch_size
        if batch < ranks.world:
            raise ConfigError(cfg.source, "algo.batch_size", f"{batch} is less than the {ranks.world} ranks; the global "
                              "batch gives every rank a share of at least one")
        # Gradients are weighted by each rank's share of batch_size; a second batch size must split in the same shares.
        goal_batch = getattr(algo_cfg, "goal_batch_size", None)
        if goal_batch is not None and goal_batch != batch and (goal_batch % ranks.world or batch % ranks.world):
            raise ConfigError(cfg.source, "algo.goal_batch_size", f"{goal_batch} and batch_size {batch} must both be "
                              f"multiples of the {ranks.world} ranks, so every rank's share of each is the same fraction")
    return device


def train(cfg: LaunchConfig, out: str | Path, seed: int = 0, resume: bool = False, progress: bool = True) -> Path:
    """Train one run; several ranks when the environment says so (torchrun, or ``train_ranks``)."""
    out = Path(out)
    ranks = ranks_from_environment()
    device = check_training(cfg, out, resume, ranks)
    torch.set_num_threads(training_threads(cfg.train, ranks))
    with process_group(ranks, device):
        return _train(cfg, out, seed, resume, progress and ranks.main, ranks, device)


def train_ranks(cfg: LaunchConfig, out: str | Path, seed: int = 0, resume: bool = False, progress: bool = True,
                nproc: int = 1) -> Path:
    """``--nproc N``: the run checked once here, then trained by N local ranks (``spawn_ranks``)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError("--nproc", "nproc", f"expected a positive integer, got {nproc!r}")
    if nproc == 1:
        return train(cfg, out, seed=seed, resume=resume, progress=progress)
    if ranks_from_environment().parallel:
        raise ConfigError("--nproc", "WORLD_SIZE", "this process is already one of several ranks (torchrun); "
                          "let the launcher start the ranks and drop --nproc")
    for rank in range(nproc):
        check_training(cfg, Path(out), resume, Ranks(rank, nproc, rank, nproc))
    return spawn_ranks(train, (cfg, Path(out), seed, resume, progress), nproc)


def resume_world(out: Path, info: dict[str, Any], ranks: Ranks) -> None:
    """A run resumes on as many ranks as it was trained on: each rank's sampler state is saved,
    and another count would split the global batches another way."""
    trained_on = int(info.get("meta", {}).get("world_size", 1))
    if trained_on != ranks.world:
        raise ConfigError(out, "--nproc", f"the run was trained on {trained_on} rank(s); resume it with --nproc "
                          f"{trained_on} (or {trained_on} torchrun processes), not on {ranks.world}")


def rank_rng_key(rank: int) -> str:
    """Where rank ``rank``'s sampler state lies in ``optim.safetensors`` (rank 0: ``rng/train``)."""
    return RNG_TRAIN if rank == 0 else f"{RNG_TRAIN}/rank_{rank}"


def training_state(gen: torch.Generator, device: torch.device, scalers: dict[str, Any]) -> dict[str, torch.Tensor]:
    """What a checkpoint holds for ``--resume`` besides the optimisers: every other rank's sampler
    state (a collective: every rank calls it) and each float16 loss scale."""
    states = generator_states(gen, device)
    out = {rank_rng_key(r): s for r, s in enumerate(states) if r > 0}
    for name, scaler in scalers.items():
        out[f"amp/{name}/scale"] = torch.tensor([scaler.get_scale()], dtype=torch.float64)
        out[f"amp/{name}/growth_tracker"] = torch.tensor([scaler.state_dict()["_growth_tracker"]], dtype=torch.int64)
    return out


def restore_scalers(ckpt: Path, scalers: dict[str, Any]) -> None:
    if not scalers:
        return
    tensors = load_tensors(ckpt / "optim.safetensors")
    for name, scaler in scalers.items():
        if f"amp/{name}/scale" in tensors:
            state = scaler.state_dict()
            state.update(scale=float(tensors[f"amp/{name}/scale"][0]),
                         _growth_tracker=int(tensors[f"amp/{name}/growth_tracker"][0]))
            scaler.load_state_dict(state)


def _train(cfg: LaunchConfig, out: Path, seed: int, resume: bool, progress: bool, ranks: Ranks,
           device: torch.device) -> Path:
    ckpt_dir = out / "checkpoints"
    seed_everything(seed)
    gen = rank_generator(seed, ranks)
    meta, episodes, obs_keys, data = load_dataset(cfg)
    data.to(device)
    cls = algo_class(cfg.algo_name, cfg.source)
    algo = cls.build(cfg.algo_params, data.obs_spec, data.normalizers, data.action_dim, f"{cfg.source}: algo")
    algo.to(device)
    scheduled = scheduled_optimizers(cfg, algo)
    scalers = gradient_scalers(cfg.train, algo.optimizers())
    start = 0
    if resume and (ckpt_dir / LATEST).exists():
        loaded, info, ckpt = load_algo(out)
        if info["algo"] != cfg.algo_name:
            raise ConfigError(out, "algo.name", f"run was trained with {info['algo']!r}, launch file says {cfg.algo_name!r}")
        algo.load_state_dict(loaded.state_dict())
        start = restore_training_state(algo, ckpt, info, gen, rng_key=rank_rng_key(ranks.rank))
        restore_scalers(ckpt, scalers)
    starts = every_rank(start, device)
    if len(set(starts)) > 1:
        raise ConfigError(out, "--resume", f"the ranks resumed from different steps {starts}: every rank must see "
                          "the same run folder (a shared filesystem across nodes)")
    broadcast_state(algo, device)
    sampled, weight = data, 1.0
    if ranks.parallel:
        sampled, weight = RankShare(data, ranks), ranks.share(algo.cfg.batch_size) / algo.cfg.batch_size
    stepper = OptimizerStep(GradientAverage(weight) if ranks.parallel else None,
                            {opt: scalers[name] for name, opt in algo.optimizers().items() if name in scalers})
    lengths = [ep.length for ep in episodes]
    run_meta: dict[str, Any] = {
        "task": cfg.task,
        "control_hz": meta.control_hz,
        "action_dim": data.action_dim,
        "obs_keys": obs_keys,
        "env": {**(meta.extra.get("env") or {}), **cfg.env},
        "eval_horizon": cfg.eval.horizon,
        "seed": seed,
        "world_size": ranks.world,
        "data": {"path": str(cfg.data_path()), "episodes": len(episodes), "median_length": float(np.median(lengths)),
                 "success_rate": float(np.mean([ep.success for ep in episodes]))},
    }
    writes = ranks.main  # rank 0 alone writes the run folder
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        (out / "launch.json").write_text(json.dumps({**dataclasses.asdict(cfg), "seed": seed}, indent=2, default=str))

    def checkpoint(step: int) -> None:
        extra = training_state(gen, device, scalers)
        if writes:
            save_checkpoint(ckpt_dir / f"step_{step:07d}", algo, step=step, meta=run_meta, gen=gen, training=extra)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"), purge_step=start if start else None) if writes else None
    metrics_path = out / "metrics.jsonl"
    t0 = time.perf_counter()
    algo.train()
    bar = tqdm(range(start, cfg.train.steps), desc=f"train {cfg.algo_name}", disable=not progress, dynamic_ncols=True,
               initial=start, total=cfg.train.steps)
    last: dict[str, float] = {}
    last_checkpoint = start or None
    with contextlib.ExitStack() as files:
        mf = files.enter_context(metrics_path.open("a")) if writes else None
        if writer is not None:
            files.callback(writer.close)
        for step in bar:
            factor = lr_factor(cfg.train.lr_schedule, step, cfg.train.steps)
            for opt, base in scheduled:
                # opt.param_groups, not groups saved earlier: loading a resumed state replaces them
                for group, lr in zip(opt.param_groups, base):
                    group["lr"] = lr * factor
            with optimizer_steps(stepper), autocast(cfg.train, device):
                m = algo.train_step(sampled, gen)
            m = average_metrics(m, weight, device)
            done = step + 1
            bad = first_nonfinite(m)
            if bad:
                raise TrainingDivergedError(cfg.source, done, *bad, last_checkpoint)
            if done % cfg.train.log_every == 0 or done == cfg.train.steps:
                last = m
                m = {**m, "train/lr_factor": factor}
                if writes:
                    for k, v in m.items():
                        writer.add_scalar(k, v, done)
                    mf.write(json.dumps({"step": done, "wall_s": round(time.perf_counter() - t0, 3), **m}) + "\n")
                    mf.flush()
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in list(m.items())[:3]})
            if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
                bad = first_nonfinite_weight(algo)
                if bad:
                    raise TrainingDivergedError(cfg.source, done, *bad, last_checkpoint)
                checkpoint(done)
                last_checkpoint = done
    if writes:
        wall = time.perf_counter() - t0
        plot_losses(metrics_path, out / "losses.png")
        summary = {"algo": cfg.algo_name, "steps": cfg.train.steps, "resumed_from": start, "wall_s": round(wall, 2),
                   "steps_per_s": round((cfg.train.steps - start) / max(wall, 1e-9), 2), "final": last, "seed": seed,
                   "device": str(device), "threads": torch.get_num_threads(), "world_size": ranks.world}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    # No rank returns before the run folder is complete (a resume started next would miss files).
    barrier()
    return out


def train_from_launch(launch_path: str | Path, out_dir: str | Path, seed: int = 0, overrides: list[str] | None = None,
                      resume: bool = False, progress: bool = True, nproc: int = 1) -> Path:
    return train_ranks(load_launch(launch_path, overrides), out_dir, seed=seed, resume=resume, progress=progress,
                       nproc=nproc)
