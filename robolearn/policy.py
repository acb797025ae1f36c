"""The runtime ``Policy`` and checkpoints.

A checkpoint is a folder: ``model.safetensors`` (weights), ``optim.safetensors`` (optimiser
moments and the sampler's RNG, for ``--resume``) and ``checkpoint.json`` (algorithm name and
config, observation keys and shapes, normaliser, step, task metadata). Loading rebuilds the
algorithm from the registry by name and copies tensors in: nothing in a checkpoint is ever
executed, unlike a pickled ``torch.save``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robolearn.algos.base import Algo, algo_class
from robolearn.config import ConfigError
from robolearn.data.dataset import Normalizer, flatten_obs
from robolearn.data.format import atomic_write_bytes

CHECKPOINT_JSON = "checkpoint.json"
LATEST = "latest.json"


class Policy:
    """Observation dict in, action out. Wraps any algorithm with flattening and normalisation."""

    def __init__(
        self,
        algo: Algo,
        normalizer: Normalizer,
        obs_keys: list[str],
        obs_shapes: dict[str, list[int]],
        meta: dict[str, Any],
        source: str = "policy",
    ):
        self.algo = algo.eval()
        self.normalizer = normalizer
        self.obs_keys = list(obs_keys)
        self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
        self.meta = meta
        #: The checkpoint this policy came from, named in observation errors.
        self.source = source

    def check_observation(self, obs: dict[str, np.ndarray]) -> None:
        """Fail with the key and the expected shape when an env's observation does not match the
        one the policy was trained on (another robot, another object, a different key set), rather
        than inside numpy broadcasting or, worse, acting on a silently misaligned vector."""
        for k in self.obs_keys:
            if k not in obs:
                raise ConfigError(self.source, k, f"the observation has no key {k!r} (it has {sorted(obs)}); the policy was trained on {self.obs_keys}")
            want = self.obs_shapes.get(k)
            if want is None:
                continue
            got = np.shape(obs[k])
            if int(np.prod(got)) != int(np.prod(want)):
                raise ConfigError(self.source, k, f"observation {k!r} has shape {tuple(got)}; the policy was trained on shape {tuple(want)}")

    def reset(self, seed: int = 0) -> None:
        self.algo.reset_policy(torch.Generator().manual_seed(int(seed)))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.check_observation(obs)
        x = torch.from_numpy(self.normalizer(flatten_obs(obs, self.obs_keys)).astype(np.float32))
        with torch.no_grad():
            a = self.algo.act(x)
        return a.numpy().astype(np.float32).clip(-1.0, 1.0)

    @property
    def current_goal(self) -> dict[str, np.ndarray] | None:
        """The subgoal a hierarchical policy is pursuing, as an observation dict (un-normalised)."""
        g = self.algo.current_goal()
        return None if g is None else self.to_observation(g)

    def to_observation(self, x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Normalised flat vectors (..., D), as the algorithms see them, back to an observation
        dict in the recorded units, keeping any leading batch dimensions."""
        flat = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x) * self.normalizer.std + self.normalizer.mean
        lead = flat.shape[:-1]
        out, i = {}, 0
        for k in self.obs_keys:
            n = int(np.prod(self.obs_shapes[k])) if self.obs_shapes[k] else 1
            out[k] = flat[..., i : i + n].reshape(lead + tuple(self.obs_shapes[k]))
            i += n
        return out


# --- saving -------------------------------------------------------------------------------

def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"{name}/{pid}/{k}"] = t.detach().clone().contiguous()
    return {"param_groups": sd["param_groups"]}


def _restore_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    prefix = f"{name}/"
    for key, t in tensors.items():
        if key.startswith(prefix):
            pid, k = key[len(prefix):].split("/", 1)
            state.setdefault(int(pid), {})[k] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    folder: str | os.PathLike,
    algo: Algo,
    *,
    step: int,
    normalizer: Normalizer,
    obs_keys: list[str],
    obs_shapes: dict[str, list[int]],
    meta: dict[str, Any],
    gen: torch.Generator | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temp folder, then rename)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in algo.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_meta = {name: _flatten_optimizer(name, opt, opt_tensors) for name, opt in algo.optimizers().items()}
    if gen is not None:
        opt_tensors["rng/train"] = gen.get_state()
    save_file(opt_tensors, str(tmp / "optim.safetensors"))
    info = {
        "format": "robolearn-checkpoint-1",
        "algo": algo.name,
        "algo_config": dataclasses.asdict(algo.cfg),
        "obs_dim": algo.obs_dim,
        "action_dim": algo.action_dim,
        "obs_keys": obs_keys,
        "obs_shapes": {k: list(v) for k, v in obs_shapes.items()},
        "normalizer": normalizer.to_json(),
        "step": step,
        "optimizers": opt_meta,
        "meta": meta,
    }
    (tmp / CHECKPOINT_JSON).write_text(json.dumps(info, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    atomic_write_bytes(folder.parent / LATEST, json.dumps({"name": folder.name, "step": step}).encode())
    return folder


# --- loading ------------------------------------------------------------------------------

def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, a run folder (its latest checkpoint) or a run's checkpoints folder."""
    path = Path(path)
    if (path / CHECKPOINT_JSON).is_file():
        return path
    for base in (path / "checkpoints", path):
        latest = base / LATEST
        if latest.is_file():
            name = json.loads(latest.read_text())["name"]
            return base / name
    raise ConfigError(path, "<checkpoint>", f"no {CHECKPOINT_JSON} here and no checkpoints/{LATEST}: not a checkpoint or run folder")


def read_checkpoint_info(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    ckpt = resolve_checkpoint(path)
    try:
        info = json.loads((ckpt / CHECKPOINT_JSON).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(ckpt / CHECKPOINT_JSON, "<file>", f"unreadable JSON ({exc})") from None
    for key in ("algo", "algo_config", "obs_dim", "action_dim", "obs_keys", "normalizer"):
        if key not in info:
            raise ConfigError(ckpt / CHECKPOINT_JSON, key, "missing required key")
    return ckpt, info


def load_algo(path: str | os.PathLike) -> tuple[Algo, dict[str, Any], Path]:
    ckpt, info = read_checkpoint_info(path)
    algo = algo_class(info["algo"]).build(info["algo_config"], info["obs_dim"], info["action_dim"], str(ckpt / CHECKPOINT_JSON))
    state = load_file(str(ckpt / "model.safetensors"))
    missing, unexpected = algo.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(ckpt / "model.safetensors", (missing or unexpected)[0], "weights do not match the algorithm's networks")
    return algo, info, ckpt


def restore_training_state(algo: Algo, ckpt: Path, info: dict[str, Any], gen: torch.Generator) -> int:
    tensors = load_file(str(ckpt / "optim.safetensors"))
    for name, opt in algo.optimizers().items():
        _restore_optimizer(name, opt, tensors, info["optimizers"][name])
    if "rng/train" in tensors:
        gen.set_state(tensors["rng/train"])
    return int(info["step"])


def load_policy(path: str | os.PathLike) -> Policy:
    algo, info, ckpt = load_algo(path)
    return Policy(
        algo, Normalizer.from_json(info["normalizer"]), info["obs_keys"], info.get("obs_shapes", {}), info.get("meta", {}),
        source=str(ckpt / CHECKPOINT_JSON),
    )
