"""robomimic HDF5 <-> demo folder, lossless on the fields both formats share.

robomimic layout (what its ``SequenceDataset`` reads, as ``dataset_states_to_obs.py`` writes it)::

    data/                 attrs: total (int), env_args (JSON: env_name, type, env_kwargs)
      demo_N/             attrs: num_samples (int), optional model_file (MJCF XML)
        obs/<key>         (N, ...)    observation before each action
        next_obs/<key>    (N, ...)    observation after each action
        actions           (N, A)
        rewards, dones    (N,)
        states            (N, S)      optional flattened MuJoCo states
    mask/<name>           array of demo names (bytes), e.g. train / valid

Camera frames are observation keys like any other: ``obs/agentview_image`` and
``obs/robot0_eye_in_hand_image`` are uint8 (N, H, W, 3) datasets, which become image keys of
the folder (uint8 H x W x C, stored compressed by ``image_codec``). On export they are written
chunked (about 1 MiB of frames per chunk) and compressed with gzip (robomimic's
``--compress``) or lzf; numbers are unchanged by either, so the round trip is bit-exact.

A demo folder stores T+1 observation rows, so ``obs = obs ++ next_obs[-1]``. Whatever a
folder has that robomimic does not (timestamps, the final simulator state, the success
flag, per-episode extras, folder meta) is written under ``demo_N/robolearn/`` and
``data.attrs['robolearn_meta']``, which robomimic ignores, so folder -> HDF5 -> folder
gives back equal arrays. In the other direction, when a file's ``next_obs`` is not just
``obs`` shifted by one (it is for files made by robomimic's dataset_states_to_obs), the
full ``next_obs`` is kept as an episode extra so HDF5 -> folder -> HDF5 is also lossless.
The one narrowing: the folder format stores actions and rewards as float32.
"""
from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data import image_codec
from robolearn.data.errors import DemoWriteError
from robolearn.data.format import (
    ActionSpec,
    DemoFormatError,
    DemoMeta,
    DemoReader,
    DemoWriter,
    ObsFieldSpec,
)
from robolearn.data.staging import check_new_output, staged_dir, staged_file

DEMO_RE = re.compile(r"^demo_(\d+)$")
#: robosuite env names -> robolearn task names (others are lowercased).
TASK_FROM_ENV = {"Lift": "lift", "PickPlaceCan": "can"}
ENV_FROM_TASK = {v: k for k, v in TASK_FROM_ENV.items()}
NEXT_OBS_EXTRA = "next_obs/"
DEMO_NAME_EXTRA = "robomimic_demo"
MODEL_FILE_EXTRA = "model_file"
SPLIT_MASKS = ("train", "valid")
#: Compression of exported image datasets: robomimic's ``--compress`` writes gzip (h5py's level 4);
#: lzf is faster to write and read and larger; "none" stores them chunked but uncompressed.
COMPRESSIONS = ("gzip", "lzf", "none")
#: Exported image datasets are chunked to about this many bytes of whole frames: HDF5's default
#: chunk cache per dataset is 1 MiB, so a reader stepping through frames inflates each chunk once.
IMAGE_CHUNK_BYTES = 1 << 20


def task_from_env_name(env_name: str) -> str:
    return TASK_FROM_ENV.get(env_name, env_name.lower())


def _h5py():
    import h5py

    return h5py


def _open_hdf5(path: Path):
    h5py = _h5py()
    if not path.is_file():
        raise DemoFormatError(path, "<file>", "no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DemoFormatError(path, "<file>", f"not a readable HDF5 file ({exc})") from None


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return str(value)


def sorted_demo_names(path: Path, data_group) -> list[str]:
    """The ``demo_N`` groups of ``data/`` in number order. Anything else under ``data/`` (``demo_x``,
    ``demo_3_old``, a second ``demo_03`` beside ``demo_3``) is an error rather than skipped: a
    conversion that silently drops demonstrations looks like a smaller dataset, not a fault."""
    keys = list(data_group.keys())
    names = [k for k in keys if DEMO_RE.match(k)]
    if not names:
        raise DemoFormatError(path, "data", f"no demo_N groups (found {sorted(keys)[:10]})")
    others = sorted(k for k in keys if not DEMO_RE.match(k))
    if others:
        raise DemoFormatError(path, "data", f"entries that are not demo_N groups would be skipped: {others[:10]}; "
                              "rename them demo_<number> or remove them")
    numbers = [int(DEMO_RE.match(n).group(1)) for n in names]
    twice = sorted({n for n in names if numbers.count(int(DEMO_RE.match(n).group(1))) > 1})
    if twice:
        raise DemoFormatError(path, "data", f"demo groups share a number: {twice[:10]}")
    return sorted(names, key=lambda n: int(DEMO_RE.match(n).group(1)))


def _number(path: Path, where: str, value: Any, *, positive: bool = False, whole: bool = False) -> float | int:
    """A number read from a file's attributes or JSON (numpy scalars included); a bool, a string
    or a NaN is an error naming the file and the field, never converted."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    kinds = (int, np.integer) if whole else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)
    if not ok or (positive and value <= 0):
        words = ("a positive " if positive else "a ") + ("whole number" if whole else "finite number")
        raise DemoFormatError(path, where, f"expected {words}, got {value!r}")
    return int(value) if whole else float(value)


def _flag(path: Path, where: str, value: Any) -> bool:
    """A success flag: bool or 0/1, never a string (``bool('False')`` is True)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise DemoFormatError(path, where, f"expected a bool (or 0/1) flag, got {value!r}")


def detect_hdf5_kind(path: str | os.PathLike) -> str:
    """'robomimic' (has observations) or 'robosuite_raw' (states and actions only, from gather_demonstrations)."""
    path = Path(path)
    with _open_hdf5(path) as f:
        if "data" not in f or not isinstance(f["data"], _h5py().Group):
            raise DemoFormatError(path, "data", "missing group; expected a robomimic or robosuite demo.hdf5 file")
        data = f["data"]
        names = sorted_demo_names(path, data)
        first = data[names[0]]
        if "obs" in first:
            return "robomimic"
        if "env" in data.attrs or "env_info" in data.attrs:
            return "robosuite_raw"
        raise DemoFormatError(
            path, f"data/{names[0]}/obs", "missing; not a robomimic file (no observations) nor a robosuite raw file (no data.attrs['env'])"
        )


# --------------------------------------------------------------------------- import


def _read_dataset(path: Path, group, name: str, where: str) -> np.ndarray:
    """A numeric dataset, its numbers finite. Strings (variable-length ones included) are errors
    here: converted, they would become episodes no reader can load."""
    if name not in group:
        raise DemoFormatError(path, f"{where}/{name}", "missing dataset")
    ds = group[name]
    if not isinstance(ds, _h5py().Dataset):
        raise DemoFormatError(path, f"{where}/{name}", "expected a dataset, found a group")
    if ds.dtype.kind not in "biuf":
        kind = "variable-length string" if _h5py().check_string_dtype(ds.dtype) is not None else f"{ds.dtype}"
        raise DemoFormatError(path, f"{where}/{name}", f"expected numbers, found a {kind} dataset")
    arr = np.asarray(ds[()])
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DemoFormatError(path, f"{where}/{name}", "contains NaN or inf")
    return arr


def _env_args(path: Path, data) -> dict[str, Any]:
    if "env_args" not in data.attrs:
        return {}
    try:
        env_args = json.loads(_attr_str(data.attrs["env_args"]))
    except json.JSONDecodeError as exc:
        raise DemoFormatError(path, "data.attrs.env_args", f"expected a JSON string ({exc})") from None
    if not isinstance(env_args, dict):
        raise DemoFormatError(path, "data.attrs.env_args", "expected a JSON object with env_name, env_kwargs")
    return env_args


def _meta_from_file(path: Path, data, obs_spec: dict[str, ObsFieldSpec], action_dim: int) -> DemoMeta:
    env_args = _env_args(path, data)
    stored = None
    if "robolearn_meta" in data.attrs:
        try:
            stored = DemoMeta.from_json(json.loads(_attr_str(data.attrs["robolearn_meta"])), f"{path}:data.attrs.robolearn_meta")
        except json.JSONDecodeError as exc:
            raise DemoFormatError(path, "data.attrs.robolearn_meta", f"expected JSON ({exc})") from None
    if stored is not None:
        stored.obs_spec = obs_spec
        stored.split = None
        return stored
    kwargs = env_args.get("env_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise DemoFormatError(path, "data.attrs.env_args.env_kwargs", f"expected a JSON object, got {kwargs!r}")
    env_name = env_args.get("env_name") or "unknown"
    if not isinstance(env_name, str):
        raise DemoFormatError(path, "data.attrs.env_args.env_name", f"expected a string, got {env_name!r}")
    robots = kwargs.get("robots")
    robot = robots[0] if isinstance(robots, list) and robots else robots if isinstance(robots, str) else None
    ctrl = kwargs.get("controller_configs") or {}
    controller = None
    if isinstance(ctrl, dict):
        controller = ctrl.get("type")
        body = ctrl.get("body_parts") or {}
        if controller in (None, "BASIC") and isinstance(body, dict) and isinstance(body.get("right"), dict):
            controller = body["right"].get("type", controller)
    return DemoMeta(
        task=task_from_env_name(env_name),
        control_hz=_number(path, "data.attrs.env_args.env_kwargs.control_freq", kwargs.get("control_freq", 20.0), positive=True),
        obs_spec=obs_spec,
        action_spec=ActionSpec(dim=action_dim),
        robot=robot,
        controller=controller,
        source=f"robomimic:{path.name}",
        extra={"env_args": env_args},
    )


def _read_demo(path: Path, demo, name: str, obs_keys: list[str], action_dim: int, index: int) -> dict[str, Any]:
    """Read and check one robomimic demo; returns DemoWriter.write_episode kwargs."""
    where = f"data/{name}"
    actions = _read_dataset(path, demo, "actions", where)
    if actions.ndim != 2 or actions.shape[1] != action_dim:
        raise DemoFormatError(path, f"{where}/actions", f"expected shape (N, {action_dim}), got {actions.shape}")
    N = actions.shape[0]
    if N == 0:
        raise DemoFormatError(path, f"{where}/actions", "demo has no steps")
    if "num_samples" in demo.attrs:
        num_samples = _number(path, f"{where}.attrs.num_samples", demo.attrs["num_samples"], whole=True)
        if num_samples != N:
            raise DemoFormatError(path, f"{where}.attrs.num_samples", f"says {num_samples} but actions has {N} rows")
    if "obs" not in demo:
        raise DemoFormatError(path, f"{where}/obs", "missing group")
    obs, extra = {}, {}
    has_next = "next_obs" in demo
    for k in obs_keys:
        o = _read_dataset(path, demo["obs"], k, f"{where}/obs")
        if o.shape[0] != N:
            raise DemoFormatError(path, f"{where}/obs/{k}", f"observation/action length mismatch: {o.shape[0]} rows for {N} actions")
        if has_next:
            n = _read_dataset(path, demo["next_obs"], k, f"{where}/next_obs")
            if n.shape != o.shape:
                raise DemoFormatError(path, f"{where}/next_obs/{k}", f"expected shape {o.shape} like obs/{k}, got {n.shape}")
            obs[k] = np.concatenate([o, n[-1:]], axis=0)
            if not np.array_equal(n[:-1], o[1:]):
                extra[NEXT_OBS_EXTRA + k] = n  # not a shifted copy: keep it so export is lossless
        else:
            obs[k] = o
    ep: dict[str, Any] = {"obs": obs, "actions": actions, "extra": extra}
    if not has_next:
        # Without next_obs the last action has no resulting observation: N obs rows give N-1
        # transitions; the last action is kept as an extra rather than dropped silently.
        if N < 2:
            raise DemoFormatError(path, f"{where}/next_obs", "missing, and a 1-step demo needs it for the final observation")
        ep["actions"] = actions[:-1]
        extra["final_action"] = actions[-1]
    T = ep["actions"].shape[0]
    for key in ("rewards", "dones"):
        if key in demo:
            v = _read_dataset(path, demo, key, where).reshape(-1)
            if v.shape[0] != N:
                raise DemoFormatError(path, f"{where}/{key}", f"expected {N} values to match actions, got {v.shape[0]}")
            if key == "dones" and not np.all((v == 0) | (v == 1)):
                raise DemoFormatError(path, f"{where}/dones", f"expected 0/1 flags, got values {np.unique(v)[:5].tolist()}")
            ep[key] = v[:T]
    if "states" in demo:
        s = _read_dataset(path, demo, "states", where)
        if s.shape[0] != N:
            raise DemoFormatError(path, f"{where}/states", f"expected {N} rows to match actions, got {s.shape[0]}")
        ep["states"] = s[:T]
    rl = demo["robolearn"] if "robolearn" in demo else None
    if rl is not None:
        if "final_state" in rl and "states" in ep:
            ep["states"] = np.concatenate([ep["states"], _read_dataset(path, rl, "final_state", f"{where}/robolearn")[None]], axis=0)
        if "timestamps" in rl:
            ep["timestamps"] = _read_dataset(path, rl, "timestamps", f"{where}/robolearn")
        if "extra" in rl:
            for k in rl["extra"].keys():
                extra[k] = _decode_extra(rl["extra"][k][()])
    if "success" in demo.attrs:
        ep["success"] = _flag(path, f"{where}.attrs.success", demo.attrs["success"])
    else:
        # robomimic stores no flag; its datasets use a sparse reward of 1 at success and done at the end.
        r, d = ep.get("rewards"), ep.get("dones")
        ep["success"] = bool((r is not None and r.reshape(-1)[-1] >= 1.0) or (d is not None and d.reshape(-1)[-1]))
    if "model_file" in demo.attrs:
        extra[MODEL_FILE_EXTRA] = np.asarray(_attr_str(demo.attrs["model_file"]))
    if name != f"demo_{index}":
        extra.setdefault(DEMO_NAME_EXTRA, np.asarray(name))  # keeps demo_1.. names through a round trip
    return ep


def _decode_extra(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in ("S", "O"):
        return np.asarray(_attr_str(arr[()]) if arr.shape == () else [_attr_str(v) for v in arr])
    return arr


def import_robomimic(
    src: str | os.PathLike, dst: str | os.PathLike, obs_keys: list[str] | None = None, progress: bool = True, obs_dtype: str | None = None
) -> Path:
    """Convert a robomimic HDF5 file into a new demo folder (written staged, renamed at the end).

    ``obs_dtype``: None keeps the file's dtypes (lossless; robomimic stores float64); "float32"
    matches the folders ``robolearn collect`` writes, so the two can be merged."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    with _open_hdf5(src) as f:
        if "data" not in f:
            raise DemoFormatError(src, "data", "missing group; expected a robomimic file with data/demo_N groups")
        data = f["data"]
        names = sorted_demo_names(src, data)
        first = data[names[0]]
        if "obs" not in first:
            raise DemoFormatError(src, f"data/{names[0]}/obs", "missing group; a robomimic file stores observations per demo")
        available = sorted(first["obs"].keys())
        keys = list(obs_keys or available)
        for k in keys:
            if k not in first["obs"]:
                raise DemoFormatError(src, f"data/{names[0]}/obs/{k}", f"requested key missing; available {available}")
        if "actions" not in first:
            raise DemoFormatError(src, f"data/{names[0]}/actions", "missing dataset")
        a_shape = first["actions"].shape
        if len(a_shape) != 2:
            raise DemoFormatError(src, f"data/{names[0]}/actions", f"expected shape (N, A), got {a_shape}")
        obs_spec = {}
        for k in keys:
            ds = first["obs"][k]
            if not isinstance(ds, _h5py().Dataset) or ds.dtype.kind not in "biuf":
                _read_dataset(src, first["obs"], k, f"data/{names[0]}/obs")  # raises, naming the dataset
            shape, dtype = tuple(int(s) for s in ds.shape[1:]), np.dtype(ds.dtype).name
            # Camera frames stay uint8 whatever --obs-dtype says: it sets the low-dimensional keys' dtype.
            obs_spec[k] = ObsFieldSpec(shape=shape, dtype=dtype if image_codec.is_image(shape, dtype) else obs_dtype or dtype)
        meta = _meta_from_file(src, data, obs_spec, int(a_shape[1]))
        masks = _read_masks(src, f)
        with staged_dir(dst) as tmp:
            writer = DemoWriter(tmp, meta)
            index_of: dict[str, int] = {}
            for name in tqdm(names, desc=f"import {src.name}", disable=not progress, unit="demo"):
                ep = _read_demo(src, data[name], name, keys, int(a_shape[1]), writer.next_index)
                index_of[name] = writer.next_index
                try:
                    writer.write_episode(**ep)
                except DemoFormatError as exc:
                    raise DemoFormatError(src, f"data/{name}/{exc.field}", exc.problem) from None
            _apply_masks(tmp, writer.meta, masks, index_of, src)
    return dst


def _read_masks(path: Path, f) -> dict[str, list[str]]:
    if "mask" not in f:
        return {}
    out = {}
    for name in f["mask"].keys():
        arr = np.asarray(f["mask"][name][()]).reshape(-1)
        out[name] = [_attr_str(v) for v in arr]
    return out


def _apply_masks(folder: Path, meta: DemoMeta, masks: dict[str, list[str]], index_of: dict[str, int], src: Path) -> None:
    from robolearn.data.format import check_split, write_meta

    if not masks:
        return
    split, other = {}, {}
    for name, demos in masks.items():
        idx = []
        for d in demos:
            if d not in index_of:
                raise DemoFormatError(src, f"mask/{name}", f"names demo {d!r} which is not in data/")
            idx.append(index_of[d])
        (split if name in SPLIT_MASKS else other)[name] = idx
    try:
        meta.split = check_split(src, split or None)
    except DemoFormatError as exc:
        names = {i: d for d, i in index_of.items()}
        raise DemoFormatError(src, "mask/" + exc.field.removeprefix("split."), re.sub(
            r"episode (\d+)", lambda m: f"demo {names.get(int(m.group(1)), m.group(1))!r}", exc.problem)) from None
    if other:
        meta.extra["robomimic_masks"] = other
    write_meta(folder, meta)


# --------------------------------------------------------------------------- export


class _GuardedFile:
    """The file object HDF5 writes the export through (h5py's file-object driver).

    Why: HDF5 meeting a failed write (a full disk) raises from its destructors and can leave
    the interpreter in a state where it crashes. Here the first OS error is kept and every
    later write is dropped, so HDF5 never sees a failure; the exporter checks ``failure``
    after each demo and stops with one ``DemoWriteError``, and the half-written temporary file
    is deleted. Writes go straight to the file (no Python buffer), so a failure shows at once
    and memory stays at one demo whatever the size of the file.
    """

    def __init__(self, path: Path):
        self._f = open(path, "r+b", buffering=0)
        self.failure: OSError | None = None

    def _guard(self, op, *args):
        if self.failure is None:
            try:
                return op(*args)
            except OSError as exc:
                self.failure = exc
        return None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        while self.failure is None and view.nbytes:
            written = self._guard(self._f.write, view)
            if written == 0:  # never for a regular file; a write that makes no progress is a failure all the same
                self.failure = OSError(errno.EIO, "a write made no progress")
            view = view[written or 0:]
        return size

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def readinto(self, buf) -> int:
        return self._f.readinto(buf)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int | None = None) -> int:
        self._guard(self._f.truncate, size)
        return self._f.tell() if size is None else size

    def flush(self) -> None:
        self._guard(self._f.flush)

    def finish(self) -> None:
        """Flush the finished file to disk; the first failure of the whole write, if any, is raised."""
        self._guard(os.fsync, self._f.fileno())
        self.close()
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        if not self._f.closed:
            self._guard(self._f.close)


def _default_env_args(meta: DemoMeta) -> dict[str, Any]:
    """robomimic's env metadata for a folder recorded here: the robosuite env, its rate, and for
    image keys named ``<camera>_image`` the cameras robomimic must render at evaluation."""
    kwargs: dict[str, Any] = {"control_freq": meta.control_hz}
    cameras = [(k[:-len("_image")], spec.shape) for k, spec in meta.obs_spec.items() if spec.is_image and k.endswith("_image")]
    if cameras:
        kwargs.update(use_camera_obs=True, has_offscreen_renderer=True, camera_names=[c for c, _ in cameras],
                      camera_heights=cameras[0][1][0], camera_widths=cameras[0][1][1])
    return {"env_name": ENV_FROM_TASK.get(meta.task, meta.task), "type": 1, "env_kwargs": kwargs}  # type 1: EnvType.ROBOSUITE_TYPE


def _obs_dataset(group, name: str, data: np.ndarray, image: bool, compression: str) -> None:
    """One obs/next_obs dataset: camera frames chunked by whole frames and compressed, the rest as robomimic stores them."""
    if not image:
        group.create_dataset(name, data=data)
        return
    rows = max(1, min(data.shape[0], IMAGE_CHUNK_BYTES // max(1, int(np.prod(data.shape[1:])))))
    group.create_dataset(name, data=data, chunks=(rows,) + data.shape[1:],
                         compression=None if compression == "none" else compression)


def _write_demo(data, src: Path, i: int, ep, meta: DemoMeta, compression: str) -> str:
    name = str(ep.extra.get(DEMO_NAME_EXTRA, f"demo_{i}"))
    if not DEMO_RE.match(name) or name in data:
        name = f"demo_{i}"
    if name in data:
        raise DemoFormatError(src, f"episode {i}", f"demo name {name} used twice")
    g = data.create_group(name)
    T = ep.length
    g.attrs["num_samples"] = T
    g.attrs["success"] = bool(ep.success)
    og, ng = g.create_group("obs"), g.create_group("next_obs")
    for k, v in ep.obs.items():
        image = meta.obs_spec[k].is_image
        _obs_dataset(og, k, v[:-1], image, compression)
        nxt = ep.extra.get(NEXT_OBS_EXTRA + k)
        _obs_dataset(ng, k, nxt if nxt is not None else v[1:], image, compression)
    g.create_dataset("actions", data=ep.actions)
    g.create_dataset("rewards", data=ep.rewards)
    g.create_dataset("dones", data=ep.dones.astype(np.int64))
    rl = g.create_group("robolearn")
    if ep.states is not None:
        g.create_dataset("states", data=ep.states[:T])
        if ep.states.shape[0] == T + 1:
            rl.create_dataset("final_state", data=ep.states[T])
    if ep.timestamps is not None:
        rl.create_dataset("timestamps", data=ep.timestamps)
    ex = rl.create_group("extra")
    for k, v in ep.extra.items():
        if k == MODEL_FILE_EXTRA:
            g.attrs["model_file"] = str(v)
        elif k.startswith(NEXT_OBS_EXTRA) or k == DEMO_NAME_EXTRA:
            continue
        elif v.dtype.kind == "U":
            ex.create_dataset(k, data=np.char.encode(v, "utf-8"))
        else:
            ex.create_dataset(k, data=v)
    return name


def export_robomimic(src: str | os.PathLike, dst: str | os.PathLike, progress: bool = True, compression: str = "gzip") -> Path:
    """Write a demo folder as a new robomimic HDF5 file, one episode at a time (so image folders
    larger than memory export too) into a temporary file that is renamed at the end.

    ``compression``: of the image datasets, one of ``COMPRESSIONS``."""
    from tqdm import tqdm

    if compression not in COMPRESSIONS:
        raise DemoFormatError("--compression", "compression", f"expected one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    h5py = _h5py()
    src, dst = Path(src), Path(dst)
    check_new_output(dst)  # before any work; checked again when the file is put in place
    reader = DemoReader(src)
    meta = reader.meta
    env_args = meta.extra.get("env_args") or _default_env_args(meta)
    try:
        with staged_file(dst) as tmp:
            out = _GuardedFile(tmp)
            try:
                with h5py.File(out, "w") as f:
                    data = f.create_group("data")
                    names: dict[int, str] = {}
                    total = 0
                    for i in tqdm(reader.indices, desc=f"export {src.name}", disable=not progress, unit="ep"):
                        ep = reader.load(i)
                        names[i] = _write_demo(data, src, i, ep, meta, compression)
                        total += ep.length
                        del ep
                        if out.failure is not None:
                            raise out.failure
                    data.attrs["total"] = total
                    data.attrs["env_args"] = json.dumps(env_args)
                    meta_json = meta.to_json()
                    meta_json["split"] = None
                    data.attrs["robolearn_meta"] = json.dumps(meta_json)
                    masks: dict[str, list[int]] = dict(meta.extra.get("robomimic_masks") or {})
                    masks.update(meta.split or {})
                    if masks:
                        mg = f.create_group("mask")
                        for mname, idx in masks.items():
                            mg.create_dataset(mname, data=np.array([names[j] for j in idx if j in names], dtype="S"))
                out.finish()
            except Exception:
                if out.failure is not None:  # what HDF5 did after a dropped write is only a consequence
                    raise out.failure from None
                raise
            finally:
                out.close()
    except DemoFormatError:
        raise
    except OSError as exc:
        raise DemoWriteError(dst, exc, "write the HDF5 file", "nothing was written") from None
    return dst
