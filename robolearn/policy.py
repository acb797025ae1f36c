"""The runtime ``Policy`` and checkpoints.

A checkpoint is a folder: ``model.safetensors`` (weights), ``optim.safetensors`` (optimiser
moments and the sampler's RNG, for ``--resume``) and ``checkpoint.json`` (algorithm name and
config, observation spec (ordered keys with shape and dtype), per-key normalisers, step, task
metadata). Checkpoints of the first format (one normaliser over the flattened observation, and
``obs_shapes``) load too: their normaliser is split per key, which encodes the same numbers. Loading rebuilds the
algorithm from the registry by name and copies tensors in: nothing in a checkpoint is ever
executed, unlike a pickled ``torch.save``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors

from robolearn.algos.base import Algo, acting_only, algo_class
from robolearn.config import ConfigError
from robolearn.data.format import atomic_write_bytes
from robolearn.models.encoders import LOW_DIM_DTYPES, Normalizer, ObsKey, ObsSpec

CHECKPOINT_JSON = "checkpoint.json"
#: What ``save_checkpoint`` writes; ``FORMAT_V1`` checkpoints (a flat normaliser) still load.
CHECKPOINT_FORMAT = "robolearn-checkpoint-2"
FORMAT_V1 = "robolearn-checkpoint-1"
LATEST = "latest.json"
#: The sampler generator's state in ``optim.safetensors`` (rank 0's, in a run of several ranks).
RNG_TRAIN = "rng/train"


class Policy:
    """Observation dict in, action out: any algorithm behind its observation encoder."""

    def __init__(self, algo: Algo, meta: dict[str, Any], source: str = "policy"):
        self.algo = algo.eval()
        #: Where the networks are (``load_policy(..., device=...)``): observations go there, actions come back as numpy.
        self.device = next((t.device for t in algo.state_dict().values()), torch.device("cpu"))
        self.encoder = algo.encoder
        self.obs_keys = list(self.encoder.keys)
        self.obs_spec: ObsSpec = dict(self.encoder.spec)
        self.obs_shapes = {k: s.shape for k, s in self.obs_spec.items()}
        self._obs_sizes = {k: s.size for k, s in self.obs_spec.items()}  # checked on every step: computed once
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
            if np.size(obs[k]) != self._obs_sizes[k]:
                raise ConfigError(self.source, k, f"observation {k!r} has shape {tuple(np.shape(obs[k]))}; the policy was trained "
                                  f"on shape {tuple(self.obs_shapes[k])}")
            if self.obs_spec[k].kind == "image":
                self.check_frame(k, obs[k])

    def check_frame(self, key: str, frame: np.ndarray) -> None:
        """Camera frames exactly as trained: uint8 H x W x C. A CHW frame has the right size and a
        float frame in [0, 1] the right shape, and either would be encoded as a different picture."""
        want = self.obs_shapes[key]
        if np.shape(frame) != want:
            raise ConfigError(self.source, key, f"frame {key!r} has shape {tuple(np.shape(frame))}; the policy was trained on "
                              f"{tuple(want)} (height, width, channels)")
        dtype = np.asarray(frame).dtype
        if dtype != np.uint8:
            raise ConfigError(self.source, key, f"frame {key!r} is {dtype}; the policy was trained on uint8 frames (0-255)")

    def observation_tensors(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """One observation dict (checked against the training spec) as the encoder's per-key tensors."""
        self.check_observation(obs)
        out = {}
        for k, spec in self.obs_spec.items():
            dtype = np.float32 if spec.kind == "low_dim" else np.dtype(spec.dtype)
            out[k] = torch.from_numpy(np.array(obs[k], dtype=dtype, copy=True).reshape(spec.shape)).to(self.device)
        return out

    def reset(self, seed: int = 0) -> None:
        self.algo.reset_policy(torch.Generator().manual_seed(int(seed)))

    def features(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        """The features the algorithm sees for ``obs``: its encoder of the observation's tensors.

        Acting runs under ``torch.inference_mode`` (no autograd bookkeeping at all, less than
        ``no_grad`` keeps): its tensors are for acting, and cannot be used to train."""
        with torch.inference_mode():
            return self.algo.encode(self.observation_tensors(obs))

    @staticmethod
    def _command(a: torch.Tensor) -> np.ndarray:
        return a.detach().cpu().numpy().astype(np.float32).clip(-1.0, 1.0)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            a = self.algo.act(self.features(obs))
        return self._command(a)

    # --- the algorithm's planning interface, on observation dicts (see robolearn.algos.base) --
    @property
    def plans(self) -> bool:
        return bool(self.algo.plans)

    @property
    def steps(self) -> int:
        return int(self.algo.steps)

    def needs_plan(self, step: int) -> bool:
        return bool(self.algo.needs_plan(step))

    def plan(self, obs: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            return self.algo.plan(self.features(obs))

    def adopt(self, plan: Any) -> None:
        self.algo.adopt(plan)

    def act_on_plan(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            a = self.algo.act_on_plan(self.features(obs))
        return self._command(a)

    @property
    def current_goal(self) -> dict[str, np.ndarray] | None:
        """The subgoal a hierarchical policy is pursuing, as a dict of its goal keys (recorded units)."""
        g = self.algo.current_goal()
        return None if g is None else self.algo.decode_goal(g)

    @property
    def goal_keys(self) -> list[str]:
        """The keys a hierarchical policy's goals are made of (all keys for the others)."""
        return list(getattr(self.algo, "goal_keys", self.obs_keys))

    def to_observation(self, x: torch.Tensor | np.ndarray, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """Features (..., D) of ``keys`` (all observation keys by default), as the algorithms see
        them, back to an observation dict in the recorded units, keeping leading batch dimensions."""
        return self.encoder.decode(x, keys)


# --- saving -------------------------------------------------------------------------------

def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"{name}/{pid}/{k}"] = t.detach().cpu().clone().contiguous()
    return {"param_groups": sd["param_groups"]}


def _restore_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    prefix = f"{name}/"
    for key, t in tensors.items():
        if key.startswith(prefix):
            pid, k = key[len(prefix):].split("/", 1)
            state.setdefault(int(pid), {})[k] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _naming_user_path(exc: OSError, staging: Path, folder: Path, file: Path | None = None) -> OSError:
    """``exc`` naming the file the user will look for: a path inside the hidden staging folder
    becomes the same path inside ``folder``; a write error without a path (a full disk) names
    ``file`` (or ``folder``)."""
    name = exc.filename
    if name is None:
        shown = file or folder
    else:
        try:
            shown = folder / Path(os.fsdecode(name)).relative_to(staging)
        except ValueError:
            return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(shown))


def training_only_json(algo: Algo) -> dict[str, Any]:
    """The spec and normalisers of the keys the algorithm reads only in training (goal-only keys),
    under ``training_only``; nothing when it has none (checkpoints read as before)."""
    spec = algo.training_only_spec
    if not spec:
        return {}
    norms = algo.training_only_normalizers
    return {"training_only": {"obs_keys": list(spec), "obs_spec": {k: s.to_json() for k, s in spec.items()},
                              "normalizers": {k: n.to_json() for k, n in norms.items()}}}


def save_checkpoint(
    folder: str | os.PathLike,
    algo: Algo,
    *,
    step: int,
    meta: dict[str, Any],
    gen: torch.Generator | None = None,
    training: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temp folder, then rename). A failed write removes
    the temp folder (freeing what a full disk had taken) and names the checkpoint's own path.

    Every tensor is written from the CPU, whatever device trained it, so the checkpoint loads
    anywhere. ``gen`` is the sampler's generator (``rng/train``); ``training`` holds further
    tensors a resumed run needs (other ranks' generators, mixed-precision loss scales), saved
    beside the optimiser state under their own names."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    state = {k: v.detach().cpu().clone().contiguous() for k, v in algo.state_dict().items()}
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_meta = {name: _flatten_optimizer(name, opt, opt_tensors) for name, opt in algo.optimizers().items()}
    if gen is not None:
        opt_tensors[RNG_TRAIN] = gen.get_state()
    for name, t in (training or {}).items():
        opt_tensors[name] = t.detach().cpu().clone().contiguous()
    info = {
        "format": CHECKPOINT_FORMAT,
        "algo": algo.name,
        "algo_config": dataclasses.asdict(algo.cfg),
        "obs_dim": algo.obs_dim,
        "action_dim": algo.action_dim,
        "obs_keys": list(algo.encoder.keys),
        "obs_spec": algo.encoder.spec_json(),
        "normalizers": algo.encoder.normalizers_json(),
        **training_only_json(algo),
        "step": step,
        "optimizers": opt_meta,
        "meta": meta,
    }
    files = {"model.safetensors": save_tensors(state), "optim.safetensors": save_tensors(opt_tensors),
             CHECKPOINT_JSON: json.dumps(info, indent=2).encode()}
    writing: Path | None = None
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            writing = folder / name
            _write_file(tmp / name, data)
        writing = None
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        shown = _naming_user_path(exc, tmp, folder, writing)
        if shown is exc:
            raise
        raise shown from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest = folder.parent / LATEST
    try:
        atomic_write_bytes(latest, json.dumps({"name": folder.name, "step": step}).encode())
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(latest)) from exc
    return folder


# --- loading ------------------------------------------------------------------------------
#
# Every file of a checkpoint is checked before it is trusted: the JSON files field by field,
# the safetensors headers (parsed here, with bounds, before the library sees the file) against
# the networks the config builds, and the weights for NaN and infinity. Each problem is a
# CheckpointError naming the file and the tensor or field.

#: Largest checkpoint.json / latest.json read (the normaliser of a very wide observation fits).
MAX_JSON_BYTES = 64 * 1024 * 1024
#: Largest safetensors header accepted (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000

#: safetensors dtype name -> (bytes per element, torch dtype).
SAFETENSORS_DTYPES: dict[str, tuple[int, torch.dtype]] = {
    "F64": (8, torch.float64), "F32": (4, torch.float32), "F16": (2, torch.float16), "BF16": (2, torch.bfloat16),
    "I64": (8, torch.int64), "I32": (4, torch.int32), "I16": (2, torch.int16), "I8": (1, torch.int8),
    "U8": (1, torch.uint8), "BOOL": (1, torch.bool),
}


class CheckpointError(ConfigError):
    """A checkpoint file that cannot be loaded; the message names the file and the tensor or field.
    A ConfigError, since a checkpoint is an input like a launch file."""

    def __reduce__(self):
        return (type(self), (self.source, self.field, self.problem))


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    if not path.is_file():
        raise CheckpointError(path, "<file>", f"missing: the checkpoint has no {what}")
    size = path.stat().st_size
    if size > limit:
        raise CheckpointError(path, "<file>", f"{size} bytes, more than the {limit} a {what} may have")
    return path.read_bytes()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"key {dup!r} appears twice")
    return dict(pairs)


def _parse_json_object(path: Path, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        problem = "empty file (truncated?)" if not data.strip() else f"unreadable JSON ({exc})"
        raise CheckpointError(path, "<file>", problem) from None
    if not isinstance(value, dict):
        raise CheckpointError(path, "<root>", f"expected a JSON object, got {type(value).__name__}")
    return value


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return _parse_json_object(path, _read_bounded(path, MAX_JSON_BYTES, what))


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_finite_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _header_entry(path: Path, name: str, raw: Any, data_len: int) -> TensorEntry:
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(path, name, f"header entry must have exactly dtype, shape and data_offsets, got {raw!r}")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        raise CheckpointError(path, name, f"unsupported dtype {dtype!r}; expected one of {sorted(SAFETENSORS_DTYPES)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CheckpointError(path, name, f"shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise CheckpointError(path, name, f"data_offsets must be two non-negative integers, got {offsets!r}")
    begin, end = offsets
    if not begin <= end <= data_len:
        raise CheckpointError(path, name, f"data_offsets {offsets} lie outside the {data_len} data bytes (truncated or crafted file)")
    want = int(np.prod(shape, dtype=object)) * SAFETENSORS_DTYPES[dtype][0]
    if end - begin != want:
        raise CheckpointError(path, name, f"shape {shape} of {dtype} needs {want} bytes, data_offsets give {end - begin}")
    return TensorEntry(dtype, tuple(shape), begin, end)


def read_safetensors_header(path: str | os.PathLike) -> dict[str, TensorEntry]:
    """The tensors a safetensors file declares, checked against the file's size.

    Why parse it here: the format is an 8-byte little-endian header length, a JSON header and
    the raw data. A crafted length or offset must be refused before any library maps or
    allocates from it; after these checks the data region holds exactly the declared tensors,
    back to back, so loading cannot read past the file or allocate more than its size."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "<file>", "missing: the checkpoint has no such weights file")
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(path, "<header>", f"{size} bytes: truncated before the 8-byte header length")
        n = int.from_bytes(prefix, "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(path, "<header>", f"header length {n} exceeds the file ({size} bytes) or the "
                                  f"{MAX_HEADER_BYTES}-byte limit (truncated or crafted file)")
        header = _parse_json_object(path, f.read(n))
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    entries = {name: _header_entry(path, name, raw, data_len) for name, raw in header.items()}
    end = 0
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if e.begin != end:
            raise CheckpointError(path, name, f"data_offsets start at {e.begin}, expected {end}: tensors overlap or leave gaps")
        end = e.end
    if end != data_len:
        raise CheckpointError(path, "<data>", f"tensors cover {end} of the {data_len} data bytes (truncated or padded file)")
    return entries


def check_tensors_match(path: Path, entries: dict[str, TensorEntry], expected: dict[str, torch.Tensor]) -> None:
    """Refuse a weights file whose tensors are not exactly the networks' (names, shapes, dtypes)."""
    for name, want in expected.items():
        got = entries.get(name)
        if got is None:
            raise CheckpointError(path, name, "tensor missing: the weights do not match the algorithm's networks")
        if got.shape != tuple(want.shape):
            raise CheckpointError(path, name, f"shape {list(got.shape)}, the algorithm's network has {list(want.shape)}")
        if SAFETENSORS_DTYPES[got.dtype][1] != want.dtype:
            raise CheckpointError(path, name, f"dtype {got.dtype}, the algorithm's network has {want.dtype}")
    unexpected = sorted(set(entries) - set(expected))
    if unexpected:
        raise CheckpointError(path, unexpected[0], "unexpected tensor: the weights do not match the algorithm's networks")


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors once its header passed ``read_safetensors_header``, refusing
    non-finite floats: a NaN weight acts as NaN actions, which nothing downstream should
    have to catch."""
    path = Path(path)
    read_safetensors_header(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError alike name this file
        raise CheckpointError(path, "<file>", f"unreadable safetensors ({exc})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(path, name, "contains NaN or infinite values; refusing to load it")
    return tensors


def _checkpoint_dir(base: Path, name: Any, latest: Path) -> Path:
    """The checkpoint ``latest.json`` names: a folder directly inside ``base`` with a checkpoint.json."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise CheckpointError(latest, "name", f"expected the name of a checkpoint folder beside latest.json, got {name!r}")
    target = base / name
    if not target.resolve().is_relative_to(base.resolve()):
        raise CheckpointError(latest, "name", f"{name!r} points outside {base}")
    if not target.is_dir():
        raise CheckpointError(latest, "name", f"points to {target}, which does not exist")
    if not (target / CHECKPOINT_JSON).is_file():
        raise CheckpointError(target / CHECKPOINT_JSON, "<file>", f"missing: {latest} names this checkpoint, which has none")
    return target


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, a run folder (its latest checkpoint) or a run's checkpoints folder."""
    path = Path(path)
    if (path / CHECKPOINT_JSON).is_file():
        return path
    if (path / "model.safetensors").exists():
        raise CheckpointError(path / CHECKPOINT_JSON, "<file>", "missing: the folder has weights but no checkpoint.json")
    for base in (path / "checkpoints", path):
        latest = base / LATEST
        if latest.is_file():
            return _checkpoint_dir(base, _read_json(latest, LATEST).get("name"), latest)
    if not path.exists():
        raise CheckpointError(path, "<checkpoint>", "no such file or folder")
    raise CheckpointError(path, "<checkpoint>", f"no {CHECKPOINT_JSON} here and no checkpoints/{LATEST}: not a checkpoint or run folder")


def _check_info(path: Path, info: dict[str, Any]) -> None:
    """checkpoint.json field by field, so a bad value fails here and not deep in torch."""
    def need(key: str, ok: bool, expected: str) -> None:
        if key not in info:
            raise CheckpointError(path, key, "missing required key")
        if not ok:
            raise CheckpointError(path, key, f"expected {expected}, got {info[key]!r}")

    fmt = info.get("format", FORMAT_V1)
    if fmt not in (FORMAT_V1, CHECKPOINT_FORMAT):
        raise CheckpointError(path, "format", f"unsupported checkpoint format {fmt!r}")
    need("algo", isinstance(info.get("algo"), str), "an algorithm name")
    need("algo_config", isinstance(info.get("algo_config"), dict), "a mapping")
    for key in ("obs_dim", "action_dim"):
        need(key, _is_count(info.get(key)) and info.get(key) > 0, "a positive integer")
    keys = info.get("obs_keys")
    need("obs_keys", isinstance(keys, list) and bool(keys) and all(isinstance(k, str) for k in keys)
         and len(set(keys)) == len(keys), "a non-empty list of distinct key names")
    if fmt == FORMAT_V1:
        _check_normalizer(path, info)
        _check_obs_shapes(path, info)
    else:
        _check_obs_spec(path, info)
        _check_normalizers(path, info)
        _check_training_only(path, info)
    if "step" in info and not _is_count(info["step"]):
        raise CheckpointError(path, "step", f"expected a non-negative integer, got {info['step']!r}")
    for key in ("meta", "optimizers"):
        if key in info and not isinstance(info[key], dict):
            raise CheckpointError(path, key, f"expected a mapping, got {type(info[key]).__name__}")


def _check_normalizer(path: Path, info: dict[str, Any]) -> None:
    norm = info.get("normalizer")
    if not isinstance(norm, dict):
        raise CheckpointError(path, "normalizer", "missing required key" if norm is None else f"expected a mapping, got {norm!r}")
    for part in ("mean", "std"):
        values = norm.get(part)
        if not isinstance(values, list) or len(values) != info["obs_dim"]:
            raise CheckpointError(path, f"normalizer.{part}", f"expected a list of obs_dim={info['obs_dim']} numbers")
        if not all(_is_finite_number(v) for v in values):
            raise CheckpointError(path, f"normalizer.{part}", "expected finite numbers")
    if not all(v > 0 for v in norm["std"]):
        raise CheckpointError(path, "normalizer.std", "expected positive numbers (observations are divided by them)")


def _check_obs_shapes(path: Path, info: dict[str, Any]) -> None:
    shapes = info.get("obs_shapes", {})
    if not isinstance(shapes, dict):
        raise CheckpointError(path, "obs_shapes", f"expected a mapping, got {shapes!r}")
    for k, shape in shapes.items():
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise CheckpointError(path, f"obs_shapes.{k}", f"expected a list of non-negative integers, got {shape!r}")
    if set(info["obs_keys"]) <= set(shapes):
        width = sum(int(np.prod(shapes[k], dtype=object)) for k in info["obs_keys"])
        if width != info["obs_dim"]:
            raise CheckpointError(path, "obs_shapes", f"the observation keys flatten to {width} numbers, obs_dim is {info['obs_dim']}")


def _check_obs_spec(path: Path, info: dict[str, Any]) -> None:
    spec = info.get("obs_spec")
    if not isinstance(spec, dict):
        raise CheckpointError(path, "obs_spec", "missing required key" if spec is None else f"expected a mapping, got {spec!r}")
    if set(spec) != set(info["obs_keys"]):
        raise CheckpointError(path, "obs_spec", f"describes keys {sorted(spec)}, obs_keys are {info['obs_keys']}")
    for k in info["obs_keys"]:
        entry = spec[k]
        if not isinstance(entry, dict) or set(entry) != {"shape", "dtype"}:
            raise CheckpointError(path, f"obs_spec.{k}", f"expected exactly shape and dtype, got {entry!r}")
        shape, dtype = entry["shape"], entry["dtype"]
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise CheckpointError(path, f"obs_spec.{k}.shape", f"expected a list of non-negative integers, got {shape!r}")
        if dtype not in LOW_DIM_DTYPES and dtype != "uint8":
            raise CheckpointError(path, f"obs_spec.{k}.dtype", f"expected a numeric dtype name, got {dtype!r}")


def _spec_of(info: dict[str, Any]) -> ObsSpec:
    """The observation spec of a checked checkpoint.json, in ``obs_keys`` order."""
    return {k: ObsKey(tuple(info["obs_spec"][k]["shape"]), info["obs_spec"][k]["dtype"]) for k in info["obs_keys"]}


def _check_normalizers(path: Path, info: dict[str, Any]) -> None:
    """One normaliser per low-dimensional key, as long as the key, finite, with positive stds; and
    the low-dimensional keys' widths adding up to ``obs_dim``."""
    norms = info.get("normalizers")
    if not isinstance(norms, dict):
        raise CheckpointError(path, "normalizers", "missing required key" if norms is None else f"expected a mapping, got {norms!r}")
    spec = _spec_of(info)
    low = [k for k, s in spec.items() if s.kind == "low_dim"]
    if set(norms) != set(low):
        raise CheckpointError(path, "normalizers", f"has keys {sorted(norms)}, expected one per low-dimensional key {low}")
    for k in low:
        entry = norms[k]
        if not isinstance(entry, dict):
            raise CheckpointError(path, f"normalizers.{k}", f"expected a mapping, got {entry!r}")
        for part in ("mean", "std"):
            values = entry.get(part)
            if not isinstance(values, list) or len(values) != spec[k].size:
                raise CheckpointError(path, f"normalizers.{k}.{part}", f"expected a list of {spec[k].size} numbers (the key's size)")
            if not all(_is_finite_number(v) for v in values):
                raise CheckpointError(path, f"normalizers.{k}.{part}", "expected finite numbers")
        if not all(v > 0 for v in entry["std"]):
            raise CheckpointError(path, f"normalizers.{k}.std", "expected positive numbers (observations are divided by them)")
    if all(s.kind == "low_dim" for s in spec.values()):
        width = sum(s.size for s in spec.values())
        if width != info["obs_dim"]:
            raise CheckpointError(path, "obs_dim", f"the observation keys flatten to {width} numbers, obs_dim is {info['obs_dim']}")


def _upgrade_v1(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """A checked first-format checkpoint.json in the current form: float32 keys shaped as
    ``obs_shapes`` says, the flat normaliser split per key (the same numbers, so the same features)."""
    keys, shapes = info["obs_keys"], info.get("obs_shapes", {})
    if not set(keys) <= set(shapes):
        if len(keys) != 1:
            raise CheckpointError(path, "obs_shapes", f"has no shape for every key of {keys}, so the normaliser cannot be "
                                  "split per key; retrain the policy with this version")
        shapes = {keys[0]: [info["obs_dim"]]}
    spec = {k: {"shape": list(shapes[k]), "dtype": "float32"} for k in keys}
    norm = Normalizer.from_json(info["normalizer"])
    sizes = {k: ObsKey(tuple(spec[k]["shape"])).size for k in keys}
    normalizers = {k: n.to_json() for k, n in norm.split(sizes).items()}
    upgraded = {k: v for k, v in info.items() if k not in ("normalizer", "obs_shapes")}
    return {**upgraded, "format": CHECKPOINT_FORMAT, "obs_spec": spec, "normalizers": normalizers}


def read_checkpoint_info(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The checked checkpoint.json of a checkpoint (of either format, in the current form)."""
    ckpt = resolve_checkpoint(path)
    info = _read_json(ckpt / CHECKPOINT_JSON, CHECKPOINT_JSON)
    _check_info(ckpt / CHECKPOINT_JSON, info)
    if info.get("format", FORMAT_V1) == FORMAT_V1:
        info = _upgrade_v1(ckpt / CHECKPOINT_JSON, info)
    return ckpt, info


def checkpoint_normalizers(info: dict[str, Any]) -> dict[str, Normalizer]:
    """Every key's normaliser: the policy's inputs and the keys only training read."""
    norms = {**info["normalizers"], **(info.get("training_only") or {}).get("normalizers", {})}
    return {k: Normalizer.from_json(v) for k, v in norms.items()}


def checkpoint_spec(info: dict[str, Any]) -> ObsSpec:
    """The spec the algorithm was built with: its inputs (``obs_keys``), then the keys only training read."""
    part = info.get("training_only")
    return {**_spec_of(info), **({} if part is None else _spec_of(part))}


def training_only_keys(info: dict[str, Any]) -> list[str]:
    """The keys a checked checkpoint.json's algorithm reads in training only (goal-only keys)."""
    return list((info.get("training_only") or {}).get("obs_keys", []))


def _check_training_only(path: Path, info: dict[str, Any]) -> None:
    """``training_only`` (when present): keys apart from ``obs_keys``, each low-dimensional, with a
    spec and a normaliser checked as the inputs' are; errors name ``training_only.<field>``."""
    if "training_only" not in info:
        return
    part = info["training_only"]
    try:
        if not isinstance(part, dict):
            raise CheckpointError(path, "", f"expected a mapping, got {part!r}")
        keys = part.get("obs_keys")
        if not (isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)):
            raise CheckpointError(path, "obs_keys", f"expected a non-empty list of distinct key names, got {keys!r}")
        if set(keys) & set(info["obs_keys"]):
            raise CheckpointError(path, "obs_keys", f"{sorted(set(keys) & set(info['obs_keys']))} are the policy's inputs too")
        _check_obs_spec(path, part)
        spec = _spec_of(part)
        images = [k for k, s in spec.items() if s.kind != "low_dim"]
        if images:
            raise CheckpointError(path, f"obs_spec.{images[0]}", "expected a low-dimensional key")
        _check_normalizers(path, {**part, "obs_dim": sum(s.size for s in spec.values())})
    except CheckpointError as exc:
        raise CheckpointError(exc.source, "training_only" + (f".{exc.field}" if exc.field else ""), exc.problem) from None


def _build_algo(ckpt: Path, info: dict[str, Any], device: str | None = None) -> Algo:
    """The algorithm checkpoint.json describes; on the ``meta`` device it allocates nothing, which
    lets its tensor shapes be checked against the weights before a crafted config (a hidden
    width of 10^9) can claim memory."""
    source = str(ckpt / CHECKPOINT_JSON)
    try:
        cls = algo_class(info["algo"], source)
    except ConfigError as exc:
        raise CheckpointError(source, "algo", exc.problem) from None
    try:
        args = (info["algo_config"], checkpoint_spec(info), checkpoint_normalizers(info), info["action_dim"], source)
        # Optimisers deferred: built only if something steps or saves them (not to act, nor to check shapes).
        with acting_only(), (contextlib.nullcontext() if device is None else torch.device(device)):
            algo = cls.build(*args)
    except CheckpointError:
        raise
    except ConfigError as exc:
        # The encoder's errors name an observation key; the rest a field of the algorithm's config.
        section = "obs_spec" if exc.field in info["obs_keys"] else "algo_config"
        raise CheckpointError(exc.source, f"{section}.{exc.field}", exc.problem) from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(source, "algo_config", f"cannot build {info['algo']} from it ({exc})") from None
    if list(algo.training_only_spec) != training_only_keys(info):
        raise CheckpointError(source, "training_only", f"the algorithm reads {list(algo.training_only_spec)} in training only, "
                              f"the checkpoint describes {training_only_keys(info)}")
    if algo.obs_dim != info["obs_dim"]:
        raise CheckpointError(source, "obs_dim", f"the observation spec encodes to {algo.obs_dim} features, obs_dim is {info['obs_dim']}")
    return algo


def load_algo(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[Algo, dict[str, Any], Path]:
    """The checkpoint's algorithm with its weights, on ``device`` (checkpoints hold CPU tensors,
    whatever device trained them)."""
    ckpt, info = read_checkpoint_info(path)
    weights = ckpt / "model.safetensors"
    skeleton = _build_algo(ckpt, info, device="meta")
    check_tensors_match(weights, read_safetensors_header(weights), skeleton.state_dict())
    algo = _build_algo(ckpt, info)
    algo.load_state_dict(load_tensors(weights), strict=True)
    return algo.to(device), info, ckpt


def _check_optimizer_state(ckpt: Path, name: str, opt: torch.optim.Optimizer, meta: Any,
                           tensors: dict[str, torch.Tensor]) -> None:
    """The saved state of optimiser ``name`` fits ``opt``: same parameter groups and sizes, and
    every per-parameter tensor shaped like its parameter (else the next step fails in torch)."""
    info_path, state_path = ckpt / CHECKPOINT_JSON, ckpt / "optim.safetensors"
    groups = meta.get("param_groups") if isinstance(meta, dict) else None
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        raise CheckpointError(info_path, f"optimizers.{name}.param_groups", f"expected {len(opt.param_groups)} parameter group(s)")
    params: dict[int, torch.Tensor] = {}
    for i, (saved, live) in enumerate(zip(groups, opt.param_groups)):
        ids = saved.get("params") if isinstance(saved, dict) else None
        if not isinstance(ids, list) or len(ids) != len(live["params"]) or not all(_is_count(p) for p in ids):
            raise CheckpointError(info_path, f"optimizers.{name}.param_groups[{i}].params",
                                  f"expected {len(live['params'])} parameter ids")
        params.update(zip(ids, live["params"]))
    for key, t in tensors.items():
        if not key.startswith(f"{name}/"):
            continue
        pid, _, kind = key[len(name) + 1:].partition("/")
        if not pid.isdigit() or int(pid) not in params or not kind:
            raise CheckpointError(state_path, key, f"not a state tensor of optimiser {name!r}")
        if t.dim() > 0 and t.shape != params[int(pid)].shape:
            raise CheckpointError(state_path, key, f"shape {list(t.shape)}, its parameter has {list(params[int(pid)].shape)}")


def restore_training_state(algo: Algo, ckpt: Path, info: dict[str, Any], gen: torch.Generator,
                           rng_key: str = RNG_TRAIN) -> int:
    """The optimisers' state (moved to their parameters' device) and the sampler generator's
    (``rng_key``: this rank's) from a checkpoint; returns its step."""
    path = ckpt / "optim.safetensors"
    tensors = load_tensors(path)
    opt_meta = info.get("optimizers")
    if not isinstance(opt_meta, dict):
        raise CheckpointError(ckpt / CHECKPOINT_JSON, "optimizers", "missing: this checkpoint cannot resume training")
    for name, opt in algo.optimizers().items():
        if name not in opt_meta:
            raise CheckpointError(ckpt / CHECKPOINT_JSON, f"optimizers.{name}", "missing: this checkpoint cannot resume training")
        _check_optimizer_state(ckpt, name, opt, opt_meta[name], tensors)
        try:
            _restore_optimizer(name, opt, tensors, opt_meta[name])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(ckpt / CHECKPOINT_JSON, f"optimizers.{name}", f"does not fit the optimiser ({exc})") from None
    if rng_key in tensors:
        state, want = tensors[rng_key], gen.get_state()
        if state.dtype != want.dtype or state.shape != want.shape:
            raise CheckpointError(path, rng_key, f"expected a {want.dtype} tensor of shape {list(want.shape)}")
        gen.set_state(state)
    elif rng_key != RNG_TRAIN:
        raise CheckpointError(path, rng_key, "missing: this checkpoint has no sampler state for this rank")
    step = info.get("step")
    if not _is_count(step):
        raise CheckpointError(ckpt / CHECKPOINT_JSON, "step", f"expected a non-negative integer, got {step!r}")
    return int(step)


def load_policy(path: str | os.PathLike, device: torch.device | str = "cpu") -> Policy:
    """A checkpoint as a runtime policy on ``device`` (the CPU unless asked)."""
    algo, info, ckpt = load_algo(path, device)
    return Policy(algo, info.get("meta", {}), source=str(ckpt / CHECKPOINT_JSON))
