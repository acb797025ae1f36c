"""Demo folder, format 1: one ``meta.json`` plus one ``.npz`` file per episode.

Why a folder of small files rather than one big HDF5: a recording process that
crashes loses at most the episode it was writing (each episode is written under
a temporary name and renamed into place), folders merge and append by copying
files, and every file can be validated on its own with an error that names it.

Image keys (uint8 H x W x C per step, camera frames) are stored inside the same episode
file, losslessly compressed by ``robolearn.data.image_codec`` (temporal delta + deflate, in
chunks) rather than as raw ``obs/<key>`` arrays; readers decode them back to the exact
(T+1, H, W, C) uint8 array, and read raw ``obs/<key>`` image arrays too.

The layout is documented for users in ``datasets/README.md``.
"""
from __future__ import annotations

import copy
import errno
import io
import json
import math
import os
import re
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

import robolearn.data.image_codec as image_codec
from robolearn.data.errors import DemoFormatError, DemoWriteError
from robolearn.data.lock import FolderLock
from robolearn.tempfiles import new_temp_file

FORMAT_VERSION = 1
META_NAME = "meta.json"
EPISODE_DIR = "episodes"
EPISODE_PATTERN = re.compile(r"^episode_(\d{6})\.npz$")
_REQUIRED_META = ("format_version", "task", "control_hz", "obs_spec", "action_spec")


@dataclass
class ObsFieldSpec:
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def is_image(self) -> bool:
        """uint8 H x W x C: a camera frame, stored compressed and never normalised."""
        return image_codec.is_image(self.shape, self.dtype)


@dataclass
class ActionSpec:
    """Actions follow robosuite's OSC_POSE convention by default (7 numbers in [-1, 1])."""

    dim: int
    low: float | list[float] = -1.0
    high: float | list[float] = 1.0
    names: list[str] | None = None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.broadcast_to(np.asarray(self.low, dtype=np.float32), (self.dim,)).copy()
        high = np.broadcast_to(np.asarray(self.high, dtype=np.float32), (self.dim,)).copy()
        return low, high


@dataclass
class DemoMeta:
    task: str
    control_hz: float
    obs_spec: dict[str, ObsFieldSpec]
    action_spec: ActionSpec
    robot: str | None = None
    controller: str | None = None
    source: str | None = None
    format_version: int = FORMAT_VERSION
    #: Optional train/valid split: lists of episode indices. Training uses ``train`` when present.
    split: dict[str, list[int]] | None = None
    #: Free-form, task-specific settings (e.g. the env spec used to record).
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["obs_spec"] = {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in self.obs_spec.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], path: str | os.PathLike = META_NAME) -> "DemoMeta":
        if not isinstance(d, Mapping):
            raise DemoFormatError(path, "<root>", "expected a JSON object")
        for key in _REQUIRED_META:
            if key not in d:
                raise DemoFormatError(path, key, "missing required key")
        version = d["format_version"]
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise DemoFormatError(
                path, "format_version", f"unknown format version {version!r}; this robolearn reads version {FORMAT_VERSION}"
            )
        obs_spec: dict[str, ObsFieldSpec] = {}
        if not isinstance(d["obs_spec"], Mapping) or not d["obs_spec"]:
            raise DemoFormatError(path, "obs_spec", "expected a non-empty mapping of observation key -> {shape, dtype}")
        for k, v in d["obs_spec"].items():
            obs_spec[str(k)] = _obs_field_spec(path, f"obs_spec.{k}", v)
        action_spec = _action_spec(path, d["action_spec"])
        control_hz = _finite_number(path, "control_hz", d["control_hz"], positive=True)
        extra = d.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise DemoFormatError(path, "extra", f"expected a mapping, got {type(extra).__name__}")
        # The recorded task settings: train, eval and replay merge them into the env they build.
        if not isinstance(extra.get("env") or {}, Mapping):
            raise DemoFormatError(path, "extra.env", f"expected a mapping of the task's settings, got {type(extra['env']).__name__}")
        return cls(
            task=str(d["task"]),
            control_hz=control_hz,
            obs_spec=obs_spec,
            action_spec=action_spec,
            robot=d.get("robot"),
            controller=d.get("controller"),
            source=d.get("source"),
            format_version=version,
            split=check_split(path, d.get("split")),
            extra=dict(extra),
        )

    def compatible_with(self, other: "DemoMeta") -> str | None:
        """Return why two metas cannot share a folder, or None when they can."""
        if self.task != other.task:
            return f"task {other.task!r} != folder's task {self.task!r}"
        if self.to_json()["obs_spec"] != other.to_json()["obs_spec"]:
            return f"obs_spec {other.to_json()['obs_spec']} != folder's {self.to_json()['obs_spec']}"
        if self.action_spec.dim != other.action_spec.dim:
            return f"action dim {other.action_spec.dim} != folder's {self.action_spec.dim}"
        if abs(self.control_hz - other.control_hz) > 1e-9:
            return f"control_hz {other.control_hz} != folder's {self.control_hz}"
        return None


@dataclass
class Episode:
    """One recorded episode: ``obs[k]`` has T+1 rows (the last is the final observation), the rest T rows."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    success: bool
    states: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])


def _remove_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_temp(path: Path, data: bytes) -> str:
    """Write ``data`` to a hidden, fsynced temporary file beside ``path`` and return its name;
    on any failure (a full disk included) the temporary file is removed before raising."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        _remove_quietly(tmp)
        if exc.filename is None:  # a write error (a full disk) names the file asked for, not the temp file
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename: readers never see half a file.
    Replaces ``path`` when it exists (``meta.json``, pointers); episodes use ``create_new_file``."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


# Filesystems that refuse hard links answer os.link with one of these.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def create_new_file(path: Path, data: bytes) -> None:
    """Write ``path`` whole, or raise ``FileExistsError`` when it already exists; never overwrites.

    Why a hard link rather than a rename: ``os.replace`` silently replaces a file another
    writer put there in the meantime, while ``os.link`` of the finished temporary file fails
    instead, atomically, so each name is claimed by exactly one writer and readers still
    never see half a file."""
    tmp = _write_temp(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here: reserve the name exclusively, then rename over the empty
            # placeholder (a reader may see it empty for a moment and report it unreadable).
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            os.replace(tmp, path)
    finally:
        _remove_quietly(tmp)


def write_meta(folder: Path, meta: DemoMeta) -> None:
    """Replace ``meta.json`` atomically (never half written); an OS failure is a ``DemoWriteError``."""
    path = Path(folder) / META_NAME
    try:
        atomic_write_bytes(path, (json.dumps(meta.to_json(), indent=2) + "\n").encode())
    except OSError as exc:
        if isinstance(exc, DemoWriteError):
            raise
        raise DemoWriteError(path, exc, "write meta.json", "the previous meta.json is unchanged") from None


def read_meta(folder: str | os.PathLike) -> DemoMeta:
    folder = Path(folder)
    path = folder / META_NAME
    if not folder.is_dir():
        raise DemoFormatError(folder, "<folder>", "not a directory (expected a demo folder with meta.json)")
    if not path.is_file():
        raise DemoFormatError(path, "<file>", "missing; every demo folder needs a meta.json")
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DemoFormatError(path, "<file>", f"unreadable JSON ({exc})") from None
    return DemoMeta.from_json(d, path)


#: Keys of ``meta.extra`` that writers maintain themselves, never compared as settings.
_BOOKKEEPING_EXTRA = ("appends", "merged_from")


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def settings_difference(folder_meta: DemoMeta, new_meta: DemoMeta) -> dict[str, Any]:
    """What an appending writer's meta says differently from the folder's (beyond what
    ``compatible_with`` requires to match): ``source``, ``robot``, ``controller`` and the
    ``extra`` values that differ, e.g. ``{"extra": {"operator": "proficient", "seed": 8}}``."""
    diff: dict[str, Any] = {}
    for name in ("source", "robot", "controller"):
        if getattr(new_meta, name) != getattr(folder_meta, name):
            diff[name] = getattr(new_meta, name)
    old, new = _as_json(folder_meta.extra), _as_json(new_meta.extra)
    keys = sorted((set(old) | set(new)) - set(_BOOKKEEPING_EXTRA))
    extra = {k: new.get(k) for k in keys if old.get(k) != new.get(k)}
    if extra:
        diff["extra"] = extra
    return diff


class DemoWriter:
    """Appends episodes to a demo folder, one atomic file per episode, as the folder's only writer.

    Opening a writer takes the folder's lock (``robolearn.data.lock``) until ``close()``, the
    end of a ``with`` block or the end of the process: a second writer is refused with a
    one-line error naming the holder instead of racing this one. Opening an existing folder
    resumes it: the meta must be compatible (same task, observation and action spec, rate)
    and new episodes take the next free index. Each index is claimed with a hard link that
    fails rather than replace a file someone else put there, so no episode is ever lost to
    another writer. Settings that differ from the folder's (``source``, ``robot``,
    ``controller``, ``extra`` values such as operator, seed or env overrides) are recorded
    per episode in ``meta.extra["appends"]``, written with each episode, so the folder-level
    settings never silently stand for episodes recorded otherwise.
    """

    def __init__(self, folder: str | os.PathLike, meta: DemoMeta):
        self.folder = Path(folder)
        self._append_pos: int | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = FolderLock(self.folder)
        except DemoFormatError:
            raise
        except OSError as exc:
            raise DemoWriteError(self.folder, exc, "open the folder for writing") from None
        try:
            self.meta, self._settings = self._open_meta(meta)
            (self.folder / EPISODE_DIR).mkdir(exist_ok=True)
            self._next = 1 + max(episode_indices(self.folder), default=-1)
        except DemoFormatError:
            self._lock.release()
            raise
        except OSError as exc:
            self._lock.release()
            raise DemoWriteError(self.folder / EPISODE_DIR, exc, "create the episodes folder") from None
        except BaseException:
            self._lock.release()
            raise

    def _open_meta(self, meta: DemoMeta) -> tuple[DemoMeta, dict[str, Any]]:
        """(the folder's meta, this writer's settings that differ from it); checked under the lock."""
        meta_path = self.folder / META_NAME
        if not meta_path.exists():
            write_meta(self.folder, meta)
            return meta, {}
        existing = read_meta(self.folder)
        why = existing.compatible_with(meta)
        if why:
            raise DemoFormatError(meta_path, "meta", f"cannot append to this folder: {why}")
        return existing, settings_difference(existing, meta)

    @property
    def next_index(self) -> int:
        return self._next

    def close(self) -> None:
        """Release the folder's lock; the writer cannot write afterwards."""
        self._lock.release()

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _episode_path(self, index: int) -> Path:
        return self.folder / EPISODE_DIR / f"episode_{index:06d}.npz"

    def write_episode(
        self,
        obs: Mapping[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray | None = None,
        dones: np.ndarray | None = None,
        success: bool = False,
        states: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> Path:
        actions = np.asarray(actions, dtype=np.float32)
        T = actions.shape[0]
        rewards = np.zeros(T, np.float32) if rewards is None else np.asarray(rewards, np.float32)
        if dones is None:
            dones = np.zeros(T, bool)
            if T:
                dones[-1] = True
        arrays: dict[str, np.ndarray] = {
            "actions": actions,
            "rewards": rewards,
            "dones": np.asarray(dones, bool),
            "success": np.asarray(bool(success)),
        }
        for k, spec in self.meta.obs_spec.items():
            if k not in obs:
                raise DemoFormatError(self.folder / EPISODE_DIR, f"obs/{k}", "missing from the episode being written")
            # Images are not cast: float frames in [0, 1] would wrap silently into uint8 noise.
            arrays[f"obs/{k}"] = np.asarray(obs[k]) if spec.is_image else np.asarray(obs[k], dtype=spec.dtype)
        if states is not None:
            arrays["states"] = np.asarray(states)
        if timestamps is not None:
            arrays["timestamps"] = np.asarray(timestamps, np.float64)
        for k, v in (extra or {}).items():
            arrays[f"extra/{k}"] = np.asarray(v)
        # Validate before writing: a bad episode never lands in the folder.
        _validate_arrays(self._episode_path(self._next), arrays, self.meta)
        return self.add_episode_bytes(episode_bytes(arrays, self.meta))

    def add_episode_bytes(self, data: bytes, record: Callable[[DemoMeta, int], None] | None = None) -> Path:
        """Write one already validated, serialised episode under the next free index.

        ``record(meta, index)`` may add to the folder's meta what goes with the episode (merge's
        ``merged_from`` and split). Any meta change is written before this returns, and when that
        write fails the episode is removed again: an episode never lands without its record.
        Thread-safe: concurrent calls each get their own index.
        """
        with self._lock.mutex:  # RuntimeError once the writer is closed
            path, index = self._claim_next(data)
            try:
                if self._settings or record is not None:
                    # Read-modify-write from disk: another writer of this folder in this process
                    # (they share the lock) may have updated meta.json since this one opened.
                    meta = read_meta(self.folder)
                    pos = self._record_settings(meta, index)
                    if record is not None:
                        record(meta, index)
                    write_meta(self.folder, meta)
                    self.meta, self._append_pos = meta, pos
            except BaseException:
                _remove_quietly(path)
                raise
            self._next = index + 1
            return path

    def _claim_next(self, data: bytes) -> tuple[Path, int]:
        index = self._next
        while True:
            path = self._episode_path(index)
            try:
                create_new_file(path, data)
                return path, index
            except FileExistsError:
                index += 1  # taken by a writer that did not hold the lock: never overwrite it
            except OSError as exc:
                raise DemoWriteError(path, exc, "write this episode",
                                     "its partial file was removed, earlier episodes are unchanged") from None

    def _record_settings(self, meta: DemoMeta, index: int) -> int | None:
        """Add ``index`` to this session's entry in ``meta.extra["appends"]``; returns the entry's position."""
        if not self._settings:
            return self._append_pos
        appends = meta.extra.setdefault("appends", [])
        pos = self._append_pos
        if pos is None or pos >= len(appends):
            appends.append({**copy.deepcopy(self._settings), "episodes": []})
            pos = len(appends) - 1
        appends[pos]["episodes"].append(index)
        return pos


def episode_bytes(arrays: Mapping[str, np.ndarray], meta: DemoMeta) -> bytes:
    """One validated episode as the bytes of its ``.npz`` file. Without image keys this is
    ``np.savez_compressed`` exactly; image keys are encoded (``image/<key>/...``) and their
    already compressed data stored without a second deflate."""
    images = [k for k, spec in meta.obs_spec.items() if spec.is_image and f"obs/{k}" in arrays]
    buf = io.BytesIO()
    if not images:
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()
    raw = {f"obs/{k}" for k in images}
    members = {name: a for name, a in arrays.items() if name not in raw}
    for k in images:
        for part, a in image_codec.encode(arrays[f"obs/{k}"]).items():
            members[image_codec.member(k, part)] = a
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(buf, "w", allowZip64=True) as zf:
        for name, a in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if name.endswith("/data") and name.startswith("image/") else zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
    return buf.getvalue()


def episode_indices(folder: str | os.PathLike) -> list[int]:
    d = Path(folder) / EPISODE_DIR
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = EPISODE_PATTERN.match(p.name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


#: How far beyond its action spec's bounds a recorded action may lie, as a share of the range:
#: room for float rounding and a teleoperation device's overshoot, while a wrong unit (millimetres
#: for metres) or an absurd magnitude (1e30) is an error rather than training data.
ACTION_BOUND_SLACK = 0.01


def _finite_number(path: str | os.PathLike, name: str, value: Any, positive: bool = False) -> float:
    """A JSON number that must be finite (and > 0 with ``positive``); a bool or a string is not a number."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        words = "a positive finite number" if positive else "a finite number"
        raise DemoFormatError(path, name, f"expected {words}, got {value!r}")
    return float(value)


def _whole_number(path: str | os.PathLike, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DemoFormatError(path, name, f"expected a whole number >= {minimum}, got {value!r}")
    return value


def _obs_field_spec(path: str | os.PathLike, name: str, v: Any) -> ObsFieldSpec:
    if not isinstance(v, Mapping) or not isinstance(v.get("shape"), list):
        raise DemoFormatError(path, name, f"expected {{shape: [ints], dtype: str}}, got {v!r}")
    shape = tuple(_whole_number(path, f"{name}.shape", s, 1) for s in v["shape"])
    dtype = v.get("dtype", "float32")
    try:
        np.dtype(dtype)
    except TypeError:
        dtype = None
    if not isinstance(dtype, str):
        raise DemoFormatError(path, f"{name}.dtype", f"expected a numpy dtype name, got {v.get('dtype')!r}")
    return ObsFieldSpec(shape=shape, dtype=dtype)


def _action_spec(path: str | os.PathLike, a: Any) -> ActionSpec:
    if not isinstance(a, Mapping) or "dim" not in a:
        raise DemoFormatError(path, "action_spec", f"expected {{dim: int, low, high}}, got {a!r}")
    dim = _whole_number(path, "action_spec.dim", a["dim"], 1)
    for key, default in (("low", -1.0), ("high", 1.0)):
        value = a.get(key, default)
        if isinstance(value, list) and len(value) != dim:
            raise DemoFormatError(path, f"action_spec.{key}", f"expected one number or {dim}, got {len(value)}")
        for x in value if isinstance(value, list) else [value]:
            _finite_number(path, f"action_spec.{key}", x)
    spec = ActionSpec(dim=dim, low=a.get("low", -1.0), high=a.get("high", 1.0), names=a.get("names"))
    low, high = spec.bounds()
    if np.any(low > high):
        raise DemoFormatError(path, "action_spec.low", f"must not exceed action_spec.high: {spec.low} vs {spec.high}")
    names = spec.names
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise DemoFormatError(path, "action_spec.names", f"expected a list of strings or null, got {names!r}")
    return spec


def check_split(path: str | os.PathLike, split: Any) -> dict[str, list[int]] | None:
    """A split is named lists of distinct episode indices, and no episode is in two splits: an
    episode in both train and valid would make the validation numbers meaningless."""
    if split is None:
        return None
    if not isinstance(split, Mapping):
        raise DemoFormatError(path, "split", f"expected a mapping of split name -> [episode indices], got {split!r}")
    owner: dict[int, str] = {}
    out: dict[str, list[int]] = {}
    for name, indices in split.items():
        if not isinstance(indices, list):
            raise DemoFormatError(path, f"split.{name}", f"expected a list of episode indices, got {indices!r}")
        for i in indices:
            _whole_number(path, f"split.{name}", i, 0)
            if i in owner:
                where = "twice" if owner[i] == name else f"also in split {owner[i]!r}"
                raise DemoFormatError(path, f"split.{name}", f"episode {i} is listed {where}; splits must not overlap")
            owner[i] = str(name)
        out[str(name)] = list(indices)
    return out


def _check_actions(path: Path, actions: np.ndarray, spec: ActionSpec) -> None:
    if not np.issubdtype(actions.dtype, np.floating):
        raise DemoFormatError(path, "actions", f"expected a float dtype, got {actions.dtype}")
    if not np.all(np.isfinite(actions)):
        bad = np.argwhere(~np.isfinite(actions))[0]
        raise DemoFormatError(path, "actions", f"NaN or inf at step {bad[0]}, dim {bad[1]}")
    low, high = spec.bounds()
    slack = ACTION_BOUND_SLACK * np.maximum(high - low, 1.0)
    outside = (actions < low - slack) | (actions > high + slack)
    if np.any(outside):
        t, j = np.argwhere(outside)[0]
        raise DemoFormatError(path, "actions", f"{float(actions[t, j])!r} at step {t}, dim {j} is outside the action spec "
                              f"[{float(low[j])}, {float(high[j])}] of meta.json")


def _check_rewards(path: Path, rewards: np.ndarray) -> None:
    if not np.issubdtype(rewards.dtype, np.floating):
        raise DemoFormatError(path, "rewards", f"expected a float dtype, got {rewards.dtype}")
    if not np.all(np.isfinite(rewards)):
        raise DemoFormatError(path, "rewards", f"NaN or inf at step {int(np.argwhere(~np.isfinite(rewards))[0][0])}")


def _is_flags(values: np.ndarray) -> bool:
    """bool, or integers that are all 0 or 1 (never floats or strings: 0.5 or 'False' is no flag)."""
    if values.dtype == np.bool_:
        return True
    return values.dtype.kind in "iu" and bool(np.all((values == 0) | (values == 1)))


def _check_flags(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    if not _is_flags(arrays["dones"]):
        raise DemoFormatError(path, "dones", f"expected bool or 0/1 integers, got {arrays['dones'].dtype} values "
                              f"{np.unique(arrays['dones'])[:5].tolist()}")
    if not _is_flags(arrays["success"]):
        raise DemoFormatError(path, "success", f"expected a bool (or 0/1 integer) flag, got {arrays['success'].dtype} "
                              f"{arrays['success'].tolist()!r}")


def _check_timestamps(path: Path, timestamps: np.ndarray) -> None:
    if timestamps.dtype.kind not in "iuf" or not np.all(np.isfinite(timestamps)):
        raise DemoFormatError(path, "timestamps", f"expected finite numbers, got {timestamps.dtype} with NaN/inf or text")
    if np.any(np.diff(timestamps) < 0):
        t = int(np.argwhere(np.diff(timestamps) < 0)[0][0])
        raise DemoFormatError(path, "timestamps", f"go backwards at step {t + 1} ({timestamps[t]} -> {timestamps[t + 1]})")


def _validate_arrays(path: Path, arrays: Mapping[str, np.ndarray], meta: DemoMeta, obs_keys: Iterable[str] | None = None) -> None:
    """Check an episode's arrays against the meta (only ``obs_keys`` of its observations when given)."""
    for key in ("actions", "rewards", "dones", "success"):
        if key not in arrays:
            raise DemoFormatError(path, key, "missing required key")
    actions = arrays["actions"]
    A = meta.action_spec.dim
    if actions.ndim != 2 or actions.shape[1] != A:
        raise DemoFormatError(path, "actions", f"expected shape (T, {A}), got {actions.shape}")
    _check_actions(path, actions, meta.action_spec)
    T = actions.shape[0]
    if T == 0:
        raise DemoFormatError(path, "actions", "episode has no steps")
    for key in ("rewards", "dones"):
        if arrays[key].shape != (T,):
            raise DemoFormatError(path, key, f"expected shape ({T},) to match actions, got {arrays[key].shape}")
    if arrays["success"].shape != ():
        raise DemoFormatError(path, "success", f"expected a scalar flag, got shape {arrays['success'].shape}")
    _check_rewards(path, arrays["rewards"])
    _check_flags(path, arrays)
    for k in meta.obs_spec if obs_keys is None else obs_keys:
        spec = meta.obs_spec[k]
        name = f"obs/{k}"
        if name not in arrays:
            raise DemoFormatError(path, name, "missing required key (listed in meta.json obs_spec)")
        o = arrays[name]
        if o.shape[1:] != tuple(spec.shape):
            raise DemoFormatError(path, name, f"expected per-step shape {tuple(spec.shape)}, got {o.shape[1:]}")
        if o.dtype != np.dtype(spec.dtype):
            raise DemoFormatError(path, name, f"expected dtype {spec.dtype}, got {o.dtype}")
        if o.shape[0] != T + 1:
            raise DemoFormatError(
                path, name, f"observation/action length mismatch: expected {T + 1} rows (T+1 for T={T} actions), got {o.shape[0]}"
            )
        if np.issubdtype(o.dtype, np.floating) and not np.all(np.isfinite(o)):
            raise DemoFormatError(path, name, "contains NaN or inf")
    if "states" in arrays and (arrays["states"].ndim == 0 or arrays["states"].shape[0] not in (T, T + 1)):
        raise DemoFormatError(path, "states", f"expected {T} or {T + 1} rows, got shape {arrays['states'].shape}")
    if "states" in arrays and np.issubdtype(arrays["states"].dtype, np.floating) and not np.all(np.isfinite(arrays["states"])):
        raise DemoFormatError(path, "states", "contains NaN or inf")
    if "timestamps" in arrays and arrays["timestamps"].shape != (T + 1,):
        raise DemoFormatError(path, "timestamps", f"expected shape ({T + 1},), got {arrays['timestamps'].shape}")
    if "timestamps" in arrays:
        _check_timestamps(path, arrays["timestamps"])


def _unreadable(path: Path, exc: Exception) -> DemoFormatError:
    # Corrupt files surface as zlib.error, NotImplementedError, BadZipFile, tokenize errors (npy
    # header) or TypeError (a bare .npy); all mean "unreadable file".
    return DemoFormatError(path, "<file>", f"truncated or unreadable episode file ({type(exc).__name__}: {exc})")


def _check_keys(path: Path, meta: DemoMeta, keys: Iterable[str] | None) -> list[str]:
    keys = list(meta.obs_spec) if keys is None else list(keys)
    unknown = [k for k in keys if k not in meta.obs_spec]
    if unknown:
        raise DemoFormatError(path.parent.parent / META_NAME, f"obs_spec.{unknown[0]}",
                              f"no such observation key; the folder records {list(meta.obs_spec)}")
    return keys


def _encoded_parts(z: Any, key: str) -> dict[str, np.ndarray] | None:
    """The encoded-frame arrays of image ``key`` in an open npz (None when it has none)."""
    names = set(z.files)
    if f"obs/{key}" in names or image_codec.member(key, "codec") not in names:
        return None
    return {p: z[image_codec.member(key, p)] for p in image_codec.PARTS if image_codec.member(key, p) in names}


def _decode_key(path: Path, key: str, spec: ObsFieldSpec, parts: Mapping[str, np.ndarray],
                steps: np.ndarray | None = None) -> np.ndarray:
    """Frames of ``key`` (all, or rows ``steps``), checked against the meta's per-step shape before decoding."""
    try:
        n, *shape = image_codec.frame_shape(parts)
        if tuple(shape) != tuple(spec.shape):
            raise DemoFormatError(path, f"obs/{key}", f"expected per-step shape {tuple(spec.shape)}, got {tuple(shape)}")
        if steps is not None and steps.size and (steps.min() < 0 or steps.max() >= n):
            raise DemoFormatError(path, f"obs/{key}", f"steps {steps.tolist()[:5]} outside 0..{n - 1}")
        return image_codec.decode(parts, None if steps is None else steps.tolist())
    except image_codec.ImageCodecError as exc:
        raise DemoFormatError(path, f"obs/{key}", f"encoded frames cannot be decoded: {exc}") from None


def _read_arrays(path: Path, meta: DemoMeta, keys: list[str]) -> dict[str, np.ndarray]:
    """The episode's arrays with the observations of ``keys`` only, image keys decoded to
    ``obs/<key>`` (T+1, H, W, C) uint8. Other keys' members are never read (random access by key)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            wanted = {f"obs/{k}" for k in keys}
            arrays = {n: z[n] for n in z.files if not n.startswith(("obs/", image_codec.PREFIX)) or n in wanted}
            for k in keys:
                parts = _encoded_parts(z, k)
                if parts is not None:
                    arrays[f"obs/{k}"] = _decode_key(path, k, meta.obs_spec[k], parts)
    except DemoFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - see _unreadable
        raise _unreadable(path, exc) from None
    return arrays


def load_episode_file(path: str | os.PathLike, meta: DemoMeta, keys: Iterable[str] | None = None) -> Episode:
    """Read and check one episode file; ``keys``: only these observation keys (all when None)."""
    path = Path(path)
    keys = _check_keys(path, meta, keys)
    arrays = _read_arrays(path, meta, keys)
    _validate_arrays(path, arrays, meta, keys)
    return Episode(
        obs={k: arrays[f"obs/{k}"] for k in keys},
        actions=arrays["actions"],
        rewards=arrays["rewards"],
        dones=arrays["dones"].astype(bool),
        success=bool(arrays["success"]),
        states=arrays.get("states"),
        timestamps=arrays.get("timestamps"),
        extra={k[len("extra/"):]: v for k, v in arrays.items() if k.startswith("extra/")},
    )


class DemoReader:
    """Reads and validates a demo folder. Construction checks meta.json and that episodes exist;
    ``validate()`` or iteration checks every episode file."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.indices = episode_indices(self.folder)
        if not self.indices:
            raise DemoFormatError(self.folder / EPISODE_DIR, "<folder>", "empty demo folder: no episode_NNNNNN.npz files")

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, index: int) -> Path:
        return self.folder / EPISODE_DIR / f"episode_{index:06d}.npz"

    def load(self, index: int, keys: Iterable[str] | None = None) -> Episode:
        """Episode ``index``; with ``keys``, only those observation keys are read and decoded."""
        return load_episode_file(self.path(index), self.meta, keys)

    def frames(self, index: int, key: str, steps: Iterable[int]) -> np.ndarray:
        """Rows ``steps`` of observation ``key`` of episode ``index`` (K, *shape), reading only that
        key, and for an image key inflating only the chunks that hold those steps."""
        path = self.path(index)
        _check_keys(path, self.meta, [key])
        steps = np.asarray(list(steps), np.int64)
        try:
            with np.load(path, allow_pickle=False) as z:
                parts = _encoded_parts(z, key)
                if parts is not None:
                    return _decode_key(path, key, self.meta.obs_spec[key], parts, steps)
        except DemoFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - see _unreadable
            raise _unreadable(path, exc) from None
        rows = self.load(index, keys=[key]).obs[key]
        if steps.size and (steps.min() < 0 or steps.max() >= rows.shape[0]):
            raise DemoFormatError(path, f"obs/{key}", f"steps {steps.tolist()[:5]} outside 0..{rows.shape[0] - 1}")
        return rows[steps]

    def __iter__(self) -> Iterator[Episode]:
        for i in self.indices:
            yield self.load(i)

    def split_indices(self, name: str) -> list[int]:
        """Episode indices of a split from meta.json (all episodes when the folder has no split)."""
        if not self.meta.split:
            return list(self.indices) if name == "train" else []
        if name not in self.meta.split:
            raise DemoFormatError(self.folder / META_NAME, f"split.{name}", f"no such split; have {sorted(self.meta.split)}")
        missing = sorted(set(self.meta.split[name]) - set(self.indices))
        if missing:
            raise DemoFormatError(self.folder / META_NAME, f"split.{name}", f"names episodes that do not exist: {missing[:10]}")
        return list(self.meta.split[name])

    def validate(self) -> int:
        for _ in self:
            pass
        return len(self.indices)


def load_folder(folder: str | os.PathLike, split: str | None = "train",
                keys: Iterable[str] | None = None) -> tuple[DemoMeta, list[Episode]]:
    """The folder's meta and episodes (of ``split``; only observation ``keys`` when given)."""
    reader = DemoReader(folder)
    idx = reader.split_indices(split) if split else reader.indices
    keys = None if keys is None else list(keys)
    return reader.meta, [reader.load(i, keys) for i in idx]
