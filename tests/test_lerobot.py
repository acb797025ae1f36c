"""LeRobot v2.1 and v3.0 folders written here with pyarrow, imported into demo folders.

The datasets here declare a camera video (as real LeRobot datasets do) but ship no mp4 files:
these tests import the numeric features (``cameras=False`` / ``--no-cameras``); the camera import
with real videos is tested in ``tests/test_image_convert.py``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from robolearn.cli import main  # noqa: E402
from robolearn.data.format import DemoFormatError, DemoReader  # noqa: E402
from robolearn.data.lerobot import LeRobotImportConfig, import_lerobot  # noqa: E402

LENGTHS = (5, 8, 3)
FPS = 15
NUMBERS_ONLY = LeRobotImportConfig(cameras=False)


def features():
    return {
        "observation.state": {"dtype": "float32", "shape": [6], "names": [f"j{i}" for i in range(6)]},
        "observation.environment_state": {"dtype": "float32", "shape": [2], "names": None},
        "observation.images.top": {"dtype": "video", "shape": [96, 96, 3], "names": ["height", "width", "channel"]},
        "action": {"dtype": "float32", "shape": [6], "names": {"motors": [f"m{i}" for i in range(6)]}},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def episode_frames(ep: int, n: int, start: int) -> dict:
    rng = np.random.default_rng(ep)
    ok = ep != 1
    return {
        "observation.state": [list(map(float, r)) for r in rng.normal(size=(n, 6)).astype(np.float32)],
        "observation.environment_state": [[float(ep), float(t)] for t in range(n)],
        "action": [list(map(float, r)) for r in (rng.normal(size=(n, 6)) * 30).astype(np.float32)],
        "next.reward": [float(ok and t == n - 1) for t in range(n)],
        "next.done": [t == n - 1 for t in range(n)],
        "next.success": [ok and t == n - 1 for t in range(n)],
        "timestamp": [t / FPS for t in range(n)],
        "frame_index": list(range(n)),
        "episode_index": [ep] * n,
        "index": list(range(start, start + n)),
        "task_index": [0] * n,
    }


def table(d: dict, shuffle: bool = False):
    cols = {}
    for k, v in d.items():
        if k.startswith("observation.") or k == "action":
            cols[k] = pa.array(v, type=pa.list_(pa.float32(), len(v[0])))
        else:
            cols[k] = pa.array(v)
    t = pa.table(cols)
    return t.take(np.random.default_rng(0).permutation(t.num_rows)) if shuffle else t


def write_v21(root: Path) -> Path:
    (root / "meta").mkdir(parents=True)
    info = {"codebase_version": "v2.1", "robot_type": "so100", "fps": FPS, "chunks_size": 1000, "total_episodes": len(LENGTHS),
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet", "features": features()}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "Pick up the cube."}) + "\n")
    lines, start = [], 0
    for ep, n in enumerate(LENGTHS):
        p = root / "data" / "chunk-000" / f"episode_{ep:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table(episode_frames(ep, n, start), shuffle=ep == 1), p)
        lines.append(json.dumps({"episode_index": ep, "tasks": ["Pick up the cube."], "length": n}))
        start += n
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return root


def write_v30(root: Path) -> Path:
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    info = {"codebase_version": "v3.0", "robot_type": "so100", "fps": FPS, "chunks_size": 1000, "total_episodes": len(LENGTHS),
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "features": features()}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({"task_index": [0], "task": ["Pick up the cube."]}), root / "meta" / "tasks.parquet")
    # episodes 0 and 1 share file-000, episode 2 is in file-001
    frames = [episode_frames(ep, n, sum(LENGTHS[:ep])) for ep, n in enumerate(LENGTHS)]
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.concat_tables([table(frames[0]), table(frames[1])]), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(table(frames[2]), root / "data" / "chunk-000" / "file-001.parquet")
    ep_meta = {
        "episode_index": [0, 1, 2], "tasks": [["Pick up the cube."]] * 3, "length": list(LENGTHS),
        "data/chunk_index": [0, 0, 0], "data/file_index": [0, 0, 1],
        "dataset_from_index": [0, 5, 13], "dataset_to_index": [5, 13, 16],
    }
    pq.write_table(pa.table(ep_meta), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return root


@pytest.mark.parametrize("writer", [write_v21, write_v30])
def test_import_lerobot(tmp_path, writer):
    src = writer(tmp_path / "ds")
    out = import_lerobot(src, tmp_path / "out", NUMBERS_ONLY, progress=False)
    r = DemoReader(out)
    m = r.meta
    assert m.task == "pick_up_the_cube" and m.control_hz == FPS and m.robot == "so100"
    assert set(m.obs_spec) == {"state", "environment_state"} and m.obs_spec["state"].shape == (6,)
    assert m.action_spec.dim == 6 and m.action_spec.names == [f"m{i}" for i in range(6)]
    assert len(r) == 3
    for i, n in enumerate(LENGTHS):
        ep = r.load(i)
        f = episode_frames(i, n, 0)
        assert ep.length == n - 1
        np.testing.assert_array_equal(ep.obs["state"], np.array(f["observation.state"], np.float32))
        np.testing.assert_array_equal(ep.obs["environment_state"][:, 1], np.arange(n))  # frames in order
        np.testing.assert_array_equal(ep.actions, np.array(f["action"], np.float32)[:-1])
        np.testing.assert_array_equal(ep.extra["final_action"], np.array(f["action"], np.float32)[-1])
        np.testing.assert_allclose(ep.timestamps, np.arange(n) / FPS)
        assert ep.success == (i != 1) and ep.dones[-1] and not ep.dones[:-1].any()
    acts = np.concatenate([np.array(episode_frames(i, n, 0)["action"], np.float32) for i, n in enumerate(LENGTHS)])
    low, high = m.action_spec.bounds()
    np.testing.assert_array_equal(low, acts.min(0))
    np.testing.assert_array_equal(high, acts.max(0))


def test_cli_task_override(tmp_path, capsys):
    src = write_v30(tmp_path / "ds")
    assert main(["import-lerobot", str(src), str(tmp_path / "o"), "--task", "so100_pick", "--success", "all", "--no-cameras", "--quiet"]) == 0
    r = DemoReader(tmp_path / "o")
    assert r.meta.task == "so100_pick" and all(e.success for e in r)


def test_convert_imports_lerobot_and_the_old_name_is_the_same_command(tmp_path, capsys):
    src = write_v30(tmp_path / "ds")
    assert main(["convert", str(src), str(tmp_path / "a"), "--task", "so100_pick", "--no-cameras", "--quiet"]) == 0
    assert "lerobot->folder" in capsys.readouterr().out
    assert main(["import-lerobot", str(src), str(tmp_path / "b"), "--task", "so100_pick", "--no-cameras", "--quiet"]) == 0
    a, b = DemoReader(tmp_path / "a"), DemoReader(tmp_path / "b")
    assert len(a) == len(b) == len(LENGTHS) and a.meta.to_json() == b.meta.to_json()
    for i in a.indices:
        np.testing.assert_array_equal(a.load(i).actions, b.load(i).actions)


def test_lerobot_flags_are_refused_for_other_sources_and_hdf5_flags_for_lerobot(tmp_path, capsys):
    src = write_v30(tmp_path / "ds")
    assert main(["convert", str(src), str(tmp_path / "a"), "--obs-keys", "x"]) == 2
    assert "--obs-keys" in capsys.readouterr().err
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["convert", str(folder), str(tmp_path / "x.hdf5"), "--task", "t"]) == 2
    assert "LeRobot imports only" in capsys.readouterr().err
    assert main(["import-lerobot", str(folder), str(tmp_path / "y")]) == 2
    assert "meta/info.json" in capsys.readouterr().err


def _no_output(tmp_path):
    return not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("how", ["truncated_parquet", "length", "version", "no_action", "missing_file", "bad_json"])
def test_corrupt_dataset_fails_clearly(tmp_path, how):
    src = write_v21(tmp_path / "ds") if how != "length" else write_v30(tmp_path / "ds")
    info_p = src / "meta" / "info.json"
    expect = {}
    if how == "truncated_parquet":
        p = src / "data" / "chunk-000" / "episode_000001.parquet"
        p.write_bytes(p.read_bytes()[:60])
        expect = dict(path="episode_000001.parquet", match="unreadable parquet")
    elif how == "length":
        p = src / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        t = pq.read_table(p).to_pydict()
        t["length"][1] = 9
        pq.write_table(pa.table(t), p)
        expect = dict(path="file-000.parquet", match="8 frames but the episode metadata says length 9")
    elif how == "version":
        info = json.loads(info_p.read_text())
        info["codebase_version"] = "v1.6"
        info_p.write_text(json.dumps(info))
        expect = dict(path="info.json", match="codebase_version")
    elif how == "no_action":
        info = json.loads(info_p.read_text())
        del info["features"]["action"]
        info_p.write_text(json.dumps(info))
        expect = dict(path="info.json", match="features.action")
    elif how == "missing_file":
        (src / "data" / "chunk-000" / "episode_000002.parquet").unlink()
        expect = dict(path="episode_000002.parquet", match="missing")
    elif how == "bad_json":
        info_p.write_text("{not json")
        expect = dict(path="info.json", match="invalid JSON")
    with pytest.raises(DemoFormatError, match=expect["match"]) as exc:
        import_lerobot(src, tmp_path / "out", NUMBERS_ONLY, progress=False)
    assert expect["path"] in str(exc.value)
    assert _no_output(tmp_path)


@pytest.mark.parametrize("writer,path,field", [
    (write_v21, "videos/chunk-000/observation.images.top/episode_000000.mp4", "observation.images.top"),
    (write_v30, "meta/episodes/chunk-000/file-000.parquet", "videos/observation.images.top/chunk_index"),
])
def test_cameras_are_imported_by_default_so_a_missing_video_is_one_line(tmp_path, capsys, writer, path, field):
    """A dataset whose info.json lists a video: the import brings the frames in, and a missing mp4
    (v2.1) or missing video columns in the episode metadata (v3.0) is a one-line error, no output."""
    src = writer(tmp_path / "ds")
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(src / path) in err and f"field '{field}'" in err
    assert _no_output(tmp_path)


def test_lerobot_camera_flags_are_refused_for_other_sources(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    for flags in (["--no-cameras"], ["--image-size", "84"], ["--video-tolerance-s", "0.01"]):
        assert main(["convert", str(folder), str(tmp_path / "x.hdf5"), *flags]) == 2
        assert "LeRobot imports only" in capsys.readouterr().err
    assert main(["convert", str(write_v30(tmp_path / "ds")), str(tmp_path / "a"), "--compression", "lzf"]) == 2
    assert "--compression" in capsys.readouterr().err
    for bad in (["--image-size", "0"], ["--image-size", "84x"], ["--video-tolerance-s", "-1"], ["--video-tolerance-s", "nan"]):
        with pytest.raises(SystemExit) as exc:
            main(["convert", str(folder), str(tmp_path / "y"), *bad])
        assert exc.value.code == 2
        assert bad[0] in capsys.readouterr().err
