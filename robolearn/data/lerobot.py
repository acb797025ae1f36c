"""Import LeRobot datasets (format v2.1 and v3.0) into a demo folder.

LeRobot layouts (huggingface/lerobot, ``LeRobotDataset``)::

    v2.1  meta/info.json (codebase_version "v2.1", fps, features, data_path, video_path, chunks_size)
          meta/episodes.jsonl            one JSON line per episode: episode_index, tasks, length
          meta/tasks.jsonl               task_index, task (language)
          data/chunk-XXX/episode_XXXXXX.parquet   one episode per file
          videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4   one video per camera and episode
    v3.0  meta/info.json (codebase_version "v3.0", data_path "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                          video_path "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
          meta/episodes/chunk-XXX/file-XXX.parquet   episode_index, length, data/chunk_index, data/file_index,
                                         videos/<video_key>/chunk_index, file_index, from_timestamp, to_timestamp
          meta/tasks.parquet
          data/chunk-XXX/file-XXX.parquet        many episodes per file, an episode_index column
          videos/<video_key>/chunk-XXX/file-XXX.mp4   many episodes per video, one after the other

Each parquet row is one frame: ``observation.*`` features, ``action``, ``timestamp``,
``frame_index``, ``episode_index``, and optionally ``next.reward`` / ``next.done`` /
``next.success``. Numeric ``observation.*`` features become observation keys with the
prefix dropped and dots turned to underscores (``observation.state`` -> ``state``). Camera
features (``"dtype": "video"``, frames in the mp4 files; ``"dtype": "image"``, PNG bytes in the
parquet) become image keys named after robomimic's ``<camera>_image``
(``observation.images.top`` -> ``top_image``), uint8 (H, W, 3), decoded by
``robolearn.data.lerobot_video`` one episode at a time, optionally resized to training size.

A LeRobot frame pairs an observation with the action taken from it, so T frames hold
T-1 complete transitions (o_t, a_t, o_t+1). The folder keeps all T observations and the
first T-1 actions; the last frame's action (which has no recorded outcome) is kept as the
episode extra ``final_action`` rather than dropped silently. Actions in LeRobot are
usually joint targets, not [-1, 1] deltas, so the action spec's bounds are the data's range.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data import lerobot_video
from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoWriter, ObsFieldSpec
from robolearn.data.staging import staged_dir

SUPPORTED = ("v2.0", "v2.1", "v3.0")
BOOKKEEPING = {"timestamp", "frame_index", "episode_index", "index", "task_index"}
NUMERIC = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "bool"}
CAMERA_DTYPES = ("video", "image")
#: LeRobot's default video file names when meta/info.json states no video_path.
VIDEO_PATHS = {"v2": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
               "v3": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}


@dataclass
class LeRobotImportConfig:
    #: robolearn task name for the folder; default: the first task text of the dataset, slugified.
    task: str | None = None
    #: episode success: "auto" (next.success when recorded, else every episode, since LeRobot
    #: datasets hold demonstrations the operator kept), "all", "none", or "reward" (final next.reward >= 1).
    success: str = "auto"
    #: import the camera features (videos and images) as image keys; False: numeric features only.
    cameras: bool = True
    #: (height, width) to resize camera frames to (area averaging); None keeps the recorded size.
    image_size: tuple[int, int] | None = None
    #: how far (seconds) a video frame may lie from a row's timestamp (LeRobot's own default).
    tolerance_s: float = lerobot_video.TOLERANCE_S


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # the 'lerobot' extra
        raise DemoFormatError("pyarrow", "<import>", f"importing LeRobot datasets needs pyarrow (pip install 'robolearn[lerobot]'): {exc}") from None
    return pq


def read_info(src: Path) -> dict[str, Any]:
    path = src / "meta" / "info.json"
    if not src.is_dir():
        raise DemoFormatError(src, "<folder>", "not a directory (expected a LeRobot dataset folder)")
    if not path.is_file():
        raise DemoFormatError(path, "<file>", "missing; a LeRobot dataset has meta/info.json")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DemoFormatError(path, "<file>", f"invalid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise DemoFormatError(path, "<root>", "expected a JSON object")
    for key in ("codebase_version", "fps", "features"):
        if key not in info:
            raise DemoFormatError(path, key, "missing required key")
    if info["codebase_version"] not in SUPPORTED:
        raise DemoFormatError(path, "codebase_version", f"{info['codebase_version']!r} is not supported; expected one of {SUPPORTED}")
    if not isinstance(info["features"], dict):
        raise DemoFormatError(path, "features", "expected a mapping of feature name -> {dtype, shape}")
    _number(path, "fps", info["fps"], positive=True)
    _number(path, "chunks_size", info.get("chunks_size", 1000), positive=True, whole=True)
    for key in ("data_path", "video_path", "robot_type"):
        if info.get(key) is not None and not isinstance(info[key], str):
            raise DemoFormatError(path, key, f"expected a string, got {info[key]!r}")
    return info


def _number(path: Path, name: str, value: Any, *, positive: bool = False, whole: bool = False) -> float:
    """A JSON number; a bool or a string (``"20"``) is an error naming the file and field, never converted."""
    ok = not isinstance(value, bool) and isinstance(value, int if whole else (int, float)) and np.isfinite(value)
    if not ok or (positive and value <= 0):
        words = ("a positive " if positive else "a ") + ("whole number" if whole else "finite number")
        raise DemoFormatError(path, name, f"expected {words}, got {value!r}")
    return value


def _feature_shape(path: Path, name: str, feat: Any) -> tuple[int, ...]:
    shape = feat.get("shape") if isinstance(feat, dict) else None
    if not isinstance(shape, list) or not all(not isinstance(s, bool) and isinstance(s, int) and s >= 1 for s in shape):
        raise DemoFormatError(path, f"features.{name}.shape", f"expected a list of positive ints, got {feat!r}")
    return tuple(shape)


def camera_key(name: str) -> str:
    """``observation.images.top`` -> ``top_image`` (robomimic's camera naming); ``observation.image`` -> ``image``."""
    rest = name[len("observation."):]
    if rest.startswith("images."):
        return rest[len("images."):].replace(".", "_") + "_image"
    return rest.replace(".", "_")


def camera_features(info: dict[str, Any], path: Path) -> dict[str, tuple[str, str, tuple[int, int, int]]]:
    """image key -> (LeRobot feature name, "video" or "image", recorded (H, W, C)) for observation.* cameras."""
    out = {}
    for name, feat in info["features"].items():
        if name.startswith("observation.") and isinstance(feat, dict) and feat.get("dtype") in CAMERA_DTYPES:
            out[camera_key(name)] = (name, feat["dtype"], lerobot_video.frame_layout(path, name, feat))
    return out


def obs_features(info: dict[str, Any], path: Path, cameras: bool = False) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """observation key -> (LeRobot feature name, per-frame shape, dtype) for numeric observation.* features.
    ``cameras``: the dataset's camera features are imported too, so numeric ones may be absent."""
    out = {}
    for name, feat in info["features"].items():
        if not name.startswith("observation.") or not isinstance(feat, dict) or feat.get("dtype") not in NUMERIC:
            continue
        key = name[len("observation."):].replace(".", "_")
        out[key] = (name, _feature_shape(path, name, feat), "float32" if feat["dtype"] == "float16" else feat["dtype"])
    if not out and not (cameras and camera_features(info, path)):
        raise DemoFormatError(path, "features", "no numeric observation.* feature" + (
            "" if cameras else " (camera-only datasets need the cameras imported: drop --no-cameras)"))
    action = info["features"].get("action")
    if not isinstance(action, dict) or action.get("dtype") not in NUMERIC:
        raise DemoFormatError(path, "features.action", "missing or not numeric; LeRobot datasets store actions under 'action'")
    return out


def _tasks(src: Path, version: str) -> dict[int, str]:
    if version.startswith("v2"):
        p = src / "meta" / "tasks.jsonl"
        if not p.exists():
            return {}
        out = {}
        for i, line in enumerate(p.read_text().splitlines()):
            if line.strip():
                try:
                    d = json.loads(line)
                    out[int(d["task_index"])] = str(d["task"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise DemoFormatError(p, f"line {i + 1}", "expected {task_index, task}") from None
        return out
    p = src / "meta" / "tasks.parquet"
    if not p.exists():
        return {}
    t = _read_table(p).to_pydict()
    texts = t.get("task") or t.get("__index_level_0__") or []
    return {int(i): str(s) for i, s in zip(t.get("task_index", []), texts)}


def _read_table(path: Path, columns: list[str] | None = None):
    pq = _pq()
    import pyarrow as pa

    if not path.is_file():
        raise DemoFormatError(path, "<file>", "missing")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise DemoFormatError(path, "<file>", f"unreadable parquet ({exc})") from None


def _episode_list(src: Path, info: dict[str, Any], videos: list[str] = ()) -> list[dict[str, Any]]:
    """[{episode_index, length, data_file, videos}] from meta/episodes.jsonl (v2) or meta/episodes/*.parquet
    (v3); ``videos``: for each video feature named, {feature: (mp4 path, the episode's start in it, s)}."""
    version = info["codebase_version"]
    chunks = info.get("chunks_size", 1000)
    eps = []
    if version.startswith("v2"):
        p = src / "meta" / "episodes.jsonl"
        if not p.is_file():
            raise DemoFormatError(p, "<file>", "missing; LeRobot v2.x lists episodes in meta/episodes.jsonl")
        template = info.get("data_path", "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")
        for i, line in enumerate(p.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                idx, length = d["episode_index"], d["length"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DemoFormatError(p, f"line {i + 1}", "expected a JSON object with episode_index and length") from None
            _number(p, f"line {i + 1}: episode_index", idx, whole=True)
            _number(p, f"line {i + 1}: length", length, positive=True, whole=True)
            vt = info.get("video_path") or VIDEO_PATHS["v2"]
            eps.append({"episode_index": idx, "length": length,
                        "data_file": _data_file(src, template, episode_chunk=idx // chunks, episode_index=idx),
                        "videos": {v: (_data_file(src, vt, "video_path", episode_chunk=idx // chunks, episode_index=idx, video_key=v), 0.0)
                                   for v in videos}})
    else:
        files = sorted((src / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DemoFormatError(src / "meta" / "episodes", "<folder>", "no chunk-XXX/file-XXX.parquet; LeRobot v3.0 lists episodes there")
        template = info.get("data_path", "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")
        for f in files:
            t = _read_table(f).to_pydict()
            vcols = [f"videos/{v}/{c}" for v in videos for c in ("chunk_index", "file_index", "from_timestamp")]
            for col in ("episode_index", "length", "data/chunk_index", "data/file_index", *vcols):
                if col not in t:
                    raise DemoFormatError(f, col, "missing column" + (" (where the episode's frames are in its video)" if col in vcols else ""))
            vt = info.get("video_path") or VIDEO_PATHS["v3"]
            for j in range(len(t["episode_index"])):
                start = {v: t[f"videos/{v}/from_timestamp"][j] for v in videos}
                for v, x in start.items():
                    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x) or x < 0:
                        raise DemoFormatError(f, f"videos/{v}/from_timestamp", f"expected a time >= 0 s, got {x!r} for episode {t['episode_index'][j]}")
                eps.append({
                    "episode_index": int(t["episode_index"][j]),
                    "length": int(t["length"][j]),
                    "data_file": _data_file(src, template, chunk_index=int(t["data/chunk_index"][j]), file_index=int(t["data/file_index"][j])),
                    "videos": {v: (_data_file(src, vt, "video_path", video_key=v, chunk_index=int(t[f"videos/{v}/chunk_index"][j]),
                                              file_index=int(t[f"videos/{v}/file_index"][j])), float(start[v])) for v in videos},
                })
    if not eps:
        raise DemoFormatError(src / "meta", "episodes", "the dataset lists no episodes")
    return sorted(eps, key=lambda e: e["episode_index"])


def _data_file(src: Path, template: str, key: str = "data_path", **fields: Any) -> Path:
    try:
        return src / template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise DemoFormatError(src / "meta" / "info.json", key, f"template {template!r} does not fit {sorted(fields)} ({exc})") from None


def _check_frames(path: Path, episode: int, rec: dict[str, Any], raw_done: np.ndarray | None) -> None:
    """Rewards finite, dones real 0/1 flags, timestamps finite and non-decreasing: what the folder's
    reader requires, checked here so that the error names the parquet file and its column."""
    if "rewards" in rec and not np.all(np.isfinite(rec["rewards"])):
        raise DemoFormatError(path, "next.reward", f"NaN or inf in episode {episode}")
    if raw_done is not None and not np.all((raw_done == 0) | (raw_done == 1)):
        raise DemoFormatError(path, "next.done", f"expected 0/1 flags in episode {episode}, got {np.unique(raw_done)[:5].tolist()}")
    ts = rec.get("timestamps")
    if ts is not None and (not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0)):
        raise DemoFormatError(path, "timestamp", f"expected finite, non-decreasing times in episode {episode}")


def _column(path: Path, table, name: str, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """A feature column as (n, *shape); accepts scalar columns for shape (1,) and (nested) lists."""
    import pyarrow as pa

    if name not in table.column_names:
        raise DemoFormatError(path, name, f"missing column (listed in meta/info.json features); columns: {table.column_names}")
    col = table.column(name).combine_chunks()
    values = col
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) or pa.types.is_large_list(values.type):
        values = values.flatten()
    arr = np.asarray(values.to_numpy(zero_copy_only=False))
    if arr.dtype.kind not in "biuf":
        raise DemoFormatError(path, name, f"expected numbers, got a column of {values.type}")
    size = int(np.prod(shape)) if shape else 1
    if arr.size != n * size:
        raise DemoFormatError(path, name, f"expected {size} values per frame (shape {list(shape)}), got {arr.size} for {n} frames")
    return arr.reshape((n,) + tuple(shape)) if shape else arr.reshape(n)


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:48] or "lerobot"


class _EpisodeRows:
    """The parquet rows of one episode at a time, in frame order. Keeps only the current data
    file, grouped once by episode: v3 files hold many consecutive episodes."""

    def __init__(self, version: str):
        self.version = version
        self._file: Path | None = None
        self._table = None
        self._groups: dict[int, np.ndarray] | None = None

    def __call__(self, ep: dict[str, Any]):
        f = ep["data_file"]
        if f != self._file:
            t = _read_table(f)
            groups = None
            if "episode_index" in t.column_names:
                epi = np.asarray(t.column("episode_index").to_numpy())
                order = np.argsort(epi, kind="stable")
                keys, starts = np.unique(epi[order], return_index=True)
                groups = {int(k): order[a:b] for k, a, b in zip(keys, starts, list(starts[1:]) + [len(order)])}
            elif self.version.startswith("v3"):
                raise DemoFormatError(f, "episode_index", "missing column; v3.0 data files hold many episodes")
            self._file, self._table, self._groups = f, t, groups
        table = self._table
        if self._groups is not None:
            rows = self._groups.get(int(ep["episode_index"]), np.zeros(0, np.int64))
            if len(rows) != table.num_rows:
                table = table.take(rows)
        n = table.num_rows
        if n != ep["length"]:
            raise DemoFormatError(f, f"episode {ep['episode_index']}", f"has {n} frames but the episode metadata says length {ep['length']}")
        if n < 2:
            raise DemoFormatError(f, f"episode {ep['episode_index']}", f"has {n} frame(s); at least 2 are needed for one transition")
        if "frame_index" in table.column_names:
            order = np.argsort(np.asarray(table.column("frame_index").to_numpy()), kind="stable")
            table = table.take(order)
        return table


def _check_config(cfg: LeRobotImportConfig) -> None:
    if cfg.success not in ("auto", "all", "none", "reward"):
        raise DemoFormatError("--success", "success", f"expected auto, all, none or reward, got {cfg.success!r}")
    size = cfg.image_size
    if size is not None and (len(size) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in size)):
        raise DemoFormatError("--image-size", "image_size", f"expected (height, width) as positive whole numbers, got {size!r}")
    t = cfg.tolerance_s
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) or t <= 0:
        raise DemoFormatError("--video-tolerance-s", "tolerance_s", f"expected a positive number of seconds, got {t!r}")


def _frame_times(table, fps: float) -> np.ndarray:
    """Each row's time in the episode (s): its timestamp, else frame_index / fps, as LeRobot queries its videos."""
    n = table.num_rows
    if "timestamp" in table.column_names:
        return np.asarray(table.column("timestamp").to_numpy(), np.float64).reshape(n)
    if "frame_index" in table.column_names:
        return np.asarray(table.column("frame_index").to_numpy(), np.float64).reshape(n) / fps
    return np.arange(n) / fps


def _camera_frames(src: Path, info: dict[str, Any], cams: dict[str, tuple[str, str, tuple[int, int, int]]], ep: dict[str, Any],
                   times: np.ndarray, rows: _EpisodeRows, cfg: LeRobotImportConfig) -> dict[str, np.ndarray]:
    """The episode's frames for every camera key, one (n, H, W, 3) uint8 array each. Image features
    read their parquet column again here, so PNG bytes are held for one episode only."""
    fps = float(info["fps"])
    out = {}
    for key, (name, kind, (h, w, _)) in cams.items():
        if kind == "video":
            video, start = ep["videos"][name]
            out[key] = lerobot_video.decode_video(video, name, start + times, fps, (h, w), cfg.image_size, cfg.tolerance_s,
                                                  episode=ep["episode_index"])
        else:
            f, table = ep["data_file"], rows(ep)
            if name not in table.column_names:
                raise DemoFormatError(f, name, f"missing column (listed in meta/info.json features as an image); columns: {table.column_names}")
            out[key] = lerobot_video.decode_images(f, name, table.column(name).to_pylist(), src, (h, w), cfg.image_size)
    return out


def import_lerobot(src: str | os.PathLike, dst: str | os.PathLike, cfg: LeRobotImportConfig | None = None, progress: bool = True) -> Path:
    """Convert a LeRobot v2.1 / v3.0 dataset folder into a new demo folder (staged, renamed at the end)."""
    from tqdm import tqdm

    cfg = cfg or LeRobotImportConfig()
    _check_config(cfg)
    src = Path(src)
    info = read_info(src)
    info_path = src / "meta" / "info.json"
    version = info["codebase_version"]
    feats = obs_features(info, info_path, cameras=cfg.cameras)
    cams = camera_features(info, info_path) if cfg.cameras else {}
    clash = sorted(set(feats) & set(cams))
    if clash:
        raise DemoFormatError(info_path, "features", f"a numeric and a camera feature both become observation key {clash[0]!r}")
    if any(kind == "video" for _, kind, _ in cams.values()):
        lerobot_video._av()  # a missing PyAV is one line before any work
    a_shape = _feature_shape(info_path, "action", info["features"]["action"])
    has = {k: k in info["features"] for k in ("next.reward", "next.done", "next.success")}
    tasks = _tasks(src, version)
    episodes = _episode_list(src, info, [name for name, kind, _ in cams.values() if kind == "video"])

    # Read every episode's numbers first (validating as we go), then write, decoding each episode's
    # camera frames just before it is written: the action bounds are the data's range, and only one
    # episode's frames are ever in memory.
    rows = _EpisodeRows(version)
    loaded: list[dict[str, Any]] = []
    times: list[np.ndarray | None] = []
    for ep in tqdm(episodes, desc=f"read {src.name}", disable=not progress, unit="ep"):
        table = rows(ep)
        f, n = ep["data_file"], table.num_rows
        obs = {k: _column(f, table, name, n, shape).astype(dtype) for k, (name, shape, dtype) in feats.items()}
        actions = _column(f, table, "action", n, a_shape).reshape(n, -1).astype(np.float32)
        if not np.all(np.isfinite(actions)):
            raise DemoFormatError(f, "action", f"NaN or inf in episode {ep['episode_index']}")
        rec: dict[str, Any] = {"obs": obs, "actions": actions[:-1], "extra": {"final_action": actions[-1], "lerobot_episode_index": np.asarray(ep["episode_index"])}}
        if has["next.reward"]:
            r = _column(f, table, "next.reward", n, ()).astype(np.float32)
            rec["rewards"] = r[:-1]
            rec["extra"]["final_reward"] = np.asarray(r[-1])
        raw_done = _column(f, table, "next.done", n, ()) if has["next.done"] else None
        if raw_done is not None:
            d = raw_done.astype(bool)[:-1]
            d[-1] = True  # the folder's episode ends with its last complete transition
            rec["dones"] = d
        if "timestamp" in table.column_names:
            rec["timestamps"] = _column(f, table, "timestamp", n, ()).astype(np.float64)
        _check_frames(f, ep["episode_index"], rec, raw_done)
        if "task_index" in table.column_names:
            rec["extra"]["task_index"] = np.asarray(int(np.asarray(table.column("task_index").to_numpy())[0]))
        if cfg.success == "all" or (cfg.success == "auto" and not has["next.success"]):
            rec["success"] = True
        elif cfg.success == "none":
            rec["success"] = False
        elif cfg.success == "reward":
            if not has["next.reward"]:
                raise DemoFormatError(info_path, "features.next.reward", "missing, so --success reward cannot be used")
            rec["success"] = bool(rec["extra"]["final_reward"] >= 1.0)
        else:
            rec["success"] = bool(_column(f, table, "next.success", n, ()).astype(bool).any())
        loaded.append(rec)
        times.append(_frame_times(table, float(info["fps"])) if cams else None)

    all_actions = np.concatenate([r["actions"] for r in loaded] + [r["extra"]["final_action"][None] for r in loaded])
    names = info["features"]["action"].get("names")
    if isinstance(names, dict):  # e.g. {"motors": [...]}
        names = next(iter(names.values()), None)
    task = cfg.task or (_slug(tasks[min(tasks)]) if tasks else _slug(src.name))
    frame_hw = {k: cfg.image_size or (h, w) for k, (_, _, (h, w, _)) in cams.items()}
    meta = DemoMeta(
        task=task,
        control_hz=float(info["fps"]),  # checked positive and finite by read_info
        obs_spec={**{k: ObsFieldSpec(shape=shape, dtype=dtype) for k, (_, shape, dtype) in feats.items()},
                  **{k: ObsFieldSpec(shape=(*frame_hw[k], 3), dtype="uint8") for k in cams}},
        action_spec=ActionSpec(
            dim=all_actions.shape[1], low=all_actions.min(0).tolist(), high=all_actions.max(0).tolist(),
            names=[str(x) for x in names] if isinstance(names, list) and len(names) == all_actions.shape[1] else None,
        ),
        robot=info.get("robot_type"),
        source=f"lerobot:{src.name}",
        extra={"lerobot": {"codebase_version": version, "fps": info["fps"], "tasks": {str(k): v for k, v in tasks.items()},
                           "obs_features": {**{k: v[0] for k, v in feats.items()}, **{k: v[0] for k, v in cams.items()}},
                           **({"cameras": {k: {"feature": name, "dtype": kind, "recorded_shape": list(shape)}
                                           for k, (name, kind, shape) in cams.items()}} if cams else {})}},
    )
    with staged_dir(dst) as tmp:
        writer = DemoWriter(tmp, meta)
        for ep, rec, t in tqdm(list(zip(episodes, loaded, times)), desc="write", disable=not progress, unit="ep"):
            if cams:
                rec["obs"].update(_camera_frames(src, info, cams, ep, t, rows, cfg))
            writer.write_episode(**rec)
            rec["obs"] = {}  # the frames were written: let them go
    return Path(dst)
