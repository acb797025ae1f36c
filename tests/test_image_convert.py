"""Camera frames through the converters: robomimic image HDF5 in and out (bit-exact, robomimic's
layout), and LeRobot datasets whose cameras are mp4 videos (v2.1 and v3.0 layouts, real files
encoded here with PyAV) or PNG images in the parquet."""
from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from robolearn.cli import main
from robolearn.commands.convert import convert
from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoReader, DemoWriter, ObsFieldSpec

H, W = 24, 32
CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")


def scene(n: int, seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Smooth moving gradients plus a bright square: frames a video codec keeps nearly exact,
    different in every frame so a frame taken from the wrong time shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 2 * np.pi, 3)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        for c in range(3):
            out[t, :, :, c] = (127 + 90 * np.sin(xx / 5.0 + yy / 7.0 + base[c] + 0.35 * t)).astype(np.uint8)
        x = (3 * t) % (w - 6)
        out[t, 4:10, x:x + 6] = 240
    return out


def image_folder(path: Path, lengths=(6, 9, 4)) -> Path:
    meta = DemoMeta(task="lift", control_hz=20.0, action_spec=ActionSpec(dim=3),
                    obs_spec={"robot0_eef_pos": ObsFieldSpec((3,)),
                              **{k: ObsFieldSpec((H, W, 3), "uint8") for k in CAMERAS}})
    rng = np.random.default_rng(0)
    with DemoWriter(path, meta) as w:
        for i, T in enumerate(lengths):
            noise = rng.integers(0, 256, (T + 1, H, W, 3), dtype=np.uint8)  # every byte value, incompressible
            w.write_episode(obs={"robot0_eef_pos": rng.normal(size=(T + 1, 3)).astype(np.float32),
                                 CAMERAS[0]: scene(T + 1, i), CAMERAS[1]: noise},
                            actions=rng.uniform(-1, 1, (T, 3)), success=i != 1, timestamps=np.arange(T + 1) / 20)
    return path


# -- robomimic ----------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_image_folder_to_robomimic_and_back_is_bit_exact(tmp_path, compression):
    src = image_folder(tmp_path / "src")
    h5 = tmp_path / "image.hdf5"
    assert main(["convert", str(src), str(h5), "--compression", compression, "--quiet"]) == 0
    with h5py.File(h5, "r") as f:
        data = f["data"]
        assert data.attrs["total"] == 6 + 9 + 4
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["env_name"] == "Lift" and env_args["type"] == 1
        kw = env_args["env_kwargs"]
        assert kw["camera_names"] == ["agentview", "robot0_eye_in_hand"] and (kw["camera_heights"], kw["camera_widths"]) == (H, W)
        assert kw["use_camera_obs"] is True and kw["control_freq"] == 20
        for i, T in enumerate((6, 9, 4)):
            g = data[f"demo_{i}"]
            assert g.attrs["num_samples"] == T
            for group in ("obs", "next_obs"):
                for k in CAMERAS:
                    ds = g[f"{group}/{k}"]
                    assert ds.dtype == np.uint8 and ds.shape == (T, H, W, 3)
                    assert ds.compression == compression and ds.chunks is not None and ds.chunks[1:] == (H, W, 3)
                low = g[f"{group}/robot0_eef_pos"]
                assert low.compression is None and low.shape == (T, 3)
            np.testing.assert_array_equal(g["next_obs/agentview_image"][:-1], g["obs/agentview_image"][1:])
    back = tmp_path / "back"
    assert main(["convert", str(h5), str(back), "--quiet"]) == 0
    a, b = DemoReader(src), DemoReader(back)
    assert b.meta.to_json()["obs_spec"] == a.meta.to_json()["obs_spec"]
    assert b.meta.obs_spec[CAMERAS[0]].is_image
    for i in a.indices:
        ea, eb = a.load(i), b.load(i)
        for k in ea.obs:
            assert eb.obs[k].dtype == ea.obs[k].dtype
            np.testing.assert_array_equal(eb.obs[k], ea.obs[k], err_msg=k)
        np.testing.assert_array_equal(eb.actions, ea.actions)
        np.testing.assert_array_equal(eb.timestamps, ea.timestamps)
        assert eb.success == ea.success
    # the folder stores the frames compressed, not as raw obs/<key> arrays
    with np.load(back / "episodes" / "episode_000000.npz") as z:
        assert f"image/{CAMERAS[0]}/codec" in z.files and f"obs/{CAMERAS[0]}" not in z.files


def test_image_export_streams_episode_by_episode(tmp_path):
    """The export holds one episode at a time, never the whole file: Python's peak allocation while
    writing a file of incompressible frames stays far below the file's size."""
    import tracemalloc

    from robolearn.data.robomimic import export_robomimic

    export_robomimic(image_folder(tmp_path / "warm", lengths=(3,)), tmp_path / "warm.hdf5", progress=False)  # imports, caches
    src = image_folder(tmp_path / "src", lengths=(40,) * 24)
    tracemalloc.start()
    try:
        export_robomimic(src, tmp_path / "big.hdf5", progress=False, compression="lzf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = (tmp_path / "big.hdf5").stat().st_size
    assert size > 24 * 2 * 40 * H * W * 3  # obs and next_obs of the noise camera alone
    assert peak < size / 4, (peak, size)


def test_image_export_to_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """A file-size limit (RLIMIT_FSIZE, as a full disk) met while HDF5 writes compressed frame chunks."""
    import resource
    import signal
    import subprocess
    import sys

    src = image_folder(tmp_path / "src")

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "out" / "image.hdf5"
    out.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "robolearn", "convert", str(src), str(out), "--quiet"], capture_output=True,
                          text=True, timeout=120, preexec_fn=limited, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode not in (0, -signal.SIGSEGV) and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "file too large" in lines[0].lower() and str(out) in lines[0], done.stderr
    assert list(out.parent.iterdir()) == []


def write_robomimic_images(path: Path, lengths=(5, 7), next_obs: bool = True) -> None:
    """An image file laid out as robomimic's dataset_states_to_obs.py --compress writes it."""
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i, N in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = N
            full = {"agentview_image": scene(N + 1, 10 + i), "robot0_eye_in_hand_image": scene(N + 1, 20 + i),
                    "robot0_eef_pos": rng.normal(size=(N + 1, 3))}
            for k, v in full.items():
                g.create_dataset(f"obs/{k}", data=v[:-1], compression="gzip")
                if next_obs:
                    g.create_dataset(f"next_obs/{k}", data=v[1:], compression="gzip")
            g.create_dataset("actions", data=rng.uniform(-1, 1, (N, 7)))
            g.create_dataset("rewards", data=np.r_[np.zeros(N - 1), 1.0])
            g.create_dataset("dones", data=np.r_[np.zeros(N - 1, np.int64), 1])
            g.create_dataset("states", data=rng.normal(size=(N, 9)))
        data.attrs["total"] = sum(lengths)
        data.attrs["env_args"] = json.dumps({"env_name": "PickPlaceCan", "type": 1, "env_kwargs": {
            "control_freq": 20, "camera_names": ["agentview", "robot0_eye_in_hand"], "camera_heights": H, "camera_widths": W}})
        f.create_dataset("mask/train", data=np.array(["demo_0"], dtype="S"))
        f.create_dataset("mask/valid", data=np.array(["demo_1"], dtype="S"))


def test_robomimic_image_file_imports_as_image_keys(tmp_path):
    src = tmp_path / "image.hdf5"
    write_robomimic_images(src)
    # which keys come in stays selectable; --obs-dtype sets the low-dimensional keys only
    kind, out = convert(src, tmp_path / "f", obs_keys=["agentview_image", "robot0_eef_pos"], progress=False, obs_dtype="float32")
    assert kind == "robomimic->folder"
    r = DemoReader(out)
    assert r.meta.task == "can" and set(r.meta.obs_spec) == {"agentview_image", "robot0_eef_pos"}
    assert r.meta.obs_spec["agentview_image"] == ObsFieldSpec((H, W, 3), "uint8")
    assert r.meta.obs_spec["robot0_eef_pos"].dtype == "float32"
    assert r.meta.split == {"train": [0], "valid": [1]}
    with h5py.File(src, "r") as f:
        for i, N in enumerate((5, 7)):
            ep = r.load(i)
            g = f[f"data/demo_{i}"]
            want = np.concatenate([g["obs/agentview_image"][()], g["next_obs/agentview_image"][-1:]])
            assert ep.length == N and ep.obs["agentview_image"].dtype == np.uint8
            np.testing.assert_array_equal(ep.obs["agentview_image"], want)
            assert not [k for k in ep.extra if k.startswith("next_obs/")]  # next_obs was obs shifted: not kept twice
    np.testing.assert_array_equal(r.frames(1, "agentview_image", [7]), scene(8, 11)[7:8])


def test_robomimic_image_file_without_next_obs(tmp_path):
    """--exclude-next-obs files: N observations give N-1 transitions, the last action kept as an extra."""
    src = tmp_path / "image.hdf5"
    write_robomimic_images(src, next_obs=False)
    _, out = convert(src, tmp_path / "f", progress=False)
    ep = DemoReader(out).load(0)
    assert ep.length == 4 and ep.obs["robot0_eye_in_hand_image"].shape == (5, H, W, 3)
    np.testing.assert_array_equal(ep.obs["robot0_eye_in_hand_image"], scene(6, 20)[:5])
    assert ep.extra["final_action"].shape == (7,)


def test_bad_image_dataset_in_robomimic_file_is_one_line(tmp_path):
    src = tmp_path / "image.hdf5"
    write_robomimic_images(src)
    with h5py.File(src, "a") as f:
        del f["data/demo_1/next_obs/agentview_image"]
        f.create_dataset("data/demo_1/next_obs/agentview_image", data=np.zeros((7, H, W - 1, 3), np.uint8))
    with pytest.raises(DemoFormatError) as exc:
        convert(src, tmp_path / "f", progress=False)
    assert exc.value.field == "data/demo_1/next_obs/agentview_image" and "expected shape" in str(exc.value)
    assert not (tmp_path / "f").exists()


# -- LeRobot videos -----------------------------------------------------------------------------
VH, VW = 48, 64  # SVT-AV1 (LeRobot's default encoder) wants frames of at least 64 pixels across
FPS = 15
LENGTHS = (6, 9, 5)
VIDEO_KEYS = ("observation.images.top", "observation.images.wrist")


def _lerobot_features(kind: str = "video") -> dict:
    cam = {"dtype": kind, "shape": [VH, VW, 3], "names": ["height", "width", "channels"]}
    if kind == "video":
        cam["info"] = {"video.fps": FPS, "video.height": VH, "video.width": VW, "video.codec": "h264", "video.pix_fmt": "yuv444p"}
    return {
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        **{k: dict(cam) for k in VIDEO_KEYS},
        "action": {"dtype": "float32", "shape": [4], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def camera_frames(ep: int, cam: int, n: int) -> np.ndarray:
    return scene(n, 100 * cam + ep, VH, VW)


def encode_video(path: Path, frames: np.ndarray, fps: int = FPS, codec: str = "libx264") -> None:
    """An mp4 as LeRobot writes one (frame i at i / fps); libx264 in YUV 4:4:4 at crf 0 keeps frames
    within 2 grey levels, SVT-AV1 in YUV 4:2:0 (LeRobot's default) is lossy."""
    av = pytest.importorskip("av")
    from fractions import Fraction

    path.parent.mkdir(parents=True, exist_ok=True)
    options, pix = ({"crf": "0"}, "yuv444p") if codec == "libx264" else ({"crf": "10"}, "yuv420p")
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps, options=options)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix
        s.codec_context.gop_size = 4  # keyframes every 4 frames: an episode inside a v3.0 file is reached by seeking
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def _rows(ep: int, n: int, start: int, shift_s: float = 0.0) -> dict:
    rng = np.random.default_rng(ep)
    return {"observation.state": rng.normal(size=(n, 4)).astype(np.float32).tolist(),
            "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32).tolist(),
            "timestamp": [t / FPS + shift_s for t in range(n)], "frame_index": list(range(n)), "episode_index": [ep] * n,
            "index": list(range(start, start + n)), "task_index": [0] * n}


def _table(d: dict):
    pa = pytest.importorskip("pyarrow")
    cols = {}
    for k, v in d.items():
        if k in ("observation.state", "action"):
            cols[k] = pa.array(v, type=pa.list_(pa.float32(), 4))
        elif k == "timestamp":
            cols[k] = pa.array(v, type=pa.float32())
        else:
            cols[k] = pa.array(v)
    return pa.table(cols)


def write_lerobot(root: Path, version: str, codec: str = "libx264", shift_s: float = 0.0, kind: str = "video") -> Path:
    """A LeRobot dataset with two cameras. v2.1: one mp4 per camera and episode; v3.0: episodes 0 and
    1 back to back in file-000.mp4 (episode 1 starting at from_timestamp 6 / fps), episode 2 in file-001."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (root / "meta").mkdir(parents=True)
    info = {"codebase_version": version, "robot_type": "koch", "fps": FPS, "chunks_size": 1000, "total_episodes": len(LENGTHS),
            "features": _lerobot_features(kind)}
    starts = np.concatenate([[0], np.cumsum(LENGTHS)])
    tables = []
    for ep, n in enumerate(LENGTHS):
        t = _table(_rows(ep, n, int(starts[ep]), shift_s))
        if kind == "image":
            for c, key in enumerate(VIDEO_KEYS):
                cells = []
                for f in camera_frames(ep, c, n):
                    from PIL import Image

                    buf = io.BytesIO()
                    Image.fromarray(f).save(buf, format="PNG")
                    cells.append({"bytes": buf.getvalue(), "path": f"frame_{ep}_{c}.png"})
                t = t.append_column(key, pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
        tables.append(t)
    if version == "v2.1":
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4" if kind == "video" else None
        (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "Stack the cups."}) + "\n")
        lines = []
        for ep, n in enumerate(LENGTHS):
            p = root / "data" / "chunk-000" / f"episode_{ep:06d}.parquet"
            p.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(tables[ep], p)
            lines.append(json.dumps({"episode_index": ep, "tasks": ["Stack the cups."], "length": n}))
            if kind == "video":
                for c, key in enumerate(VIDEO_KEYS):
                    encode_video(root / "videos" / "chunk-000" / key / f"episode_{ep:06d}.mp4", camera_frames(ep, c, n), codec=codec)
        (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    else:
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        pq.write_table(pa.table({"task_index": [0], "task": ["Stack the cups."]}), root / "meta" / "tasks.parquet")
        (root / "data" / "chunk-000").mkdir(parents=True)
        pq.write_table(pa.concat_tables(tables[:2]), root / "data" / "chunk-000" / "file-000.parquet")
        pq.write_table(tables[2], root / "data" / "chunk-000" / "file-001.parquet")
        files, offsets = [0, 0, 1], [0.0, LENGTHS[0] / FPS, 0.0]
        ep_meta = {"episode_index": [0, 1, 2], "tasks": [["Stack the cups."]] * 3, "length": list(LENGTHS),
                   "data/chunk_index": [0, 0, 0], "data/file_index": files,
                   "dataset_from_index": starts[:-1].tolist(), "dataset_to_index": starts[1:].tolist()}
        for c, key in enumerate(VIDEO_KEYS):
            ep_meta[f"videos/{key}/chunk_index"] = [0, 0, 0]
            ep_meta[f"videos/{key}/file_index"] = files
            ep_meta[f"videos/{key}/from_timestamp"] = offsets
            ep_meta[f"videos/{key}/to_timestamp"] = [o + n / FPS for o, n in zip(offsets, LENGTHS)]
            encode_video(root / "videos" / key / "chunk-000" / "file-000.mp4",
                         np.concatenate([camera_frames(0, c, LENGTHS[0]), camera_frames(1, c, LENGTHS[1])]), codec=codec)
            encode_video(root / "videos" / key / "chunk-000" / "file-001.mp4", camera_frames(2, c, LENGTHS[2]), codec=codec)
        (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
        pq.write_table(pa.table(ep_meta), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


def assert_frames_match(got: np.ndarray, want: np.ndarray, max_err: int, mean_err: float) -> None:
    """Within the codec's error, and each frame nearer its own source frame than any other (a frame
    taken from the wrong time differs by about 20 grey levels on average here)."""
    assert got.shape == want.shape and got.dtype == np.uint8
    err = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert err.max() <= max_err and err.mean() <= mean_err, (err.max(), err.mean())
    dist = np.abs(got[:, None].astype(np.int16) - want[None].astype(np.int16)).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(dist.argmin(1), np.arange(len(want)))


@pytest.mark.parametrize("version,codec", [("v2.1", "libx264"), ("v3.0", "libx264"), ("v3.0", "libsvtav1")])
def test_lerobot_videos_import_with_their_frames(tmp_path, capsys, version, codec):
    pytest.importorskip("av")
    src = write_lerobot(tmp_path / "ds", version, codec)
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 0
    assert "top_image[48, 64, 3]" in capsys.readouterr().out
    r = DemoReader(tmp_path / "out")
    assert r.meta.obs_spec["top_image"] == ObsFieldSpec((VH, VW, 3), "uint8") and r.meta.obs_spec["wrist_image"].is_image
    assert r.meta.extra["lerobot"]["cameras"]["top_image"]["feature"] == "observation.images.top"
    max_err, mean_err = (2, 0.6) if codec == "libx264" else (255, 8.0)
    for ep, n in enumerate(LENGTHS):
        e = r.load(ep)
        assert e.length == n - 1
        for c, key in enumerate(("top_image", "wrist_image")):
            assert_frames_match(e.obs[key], camera_frames(ep, c, n), max_err, mean_err)
        np.testing.assert_array_equal(e.obs["state"], np.array(_rows(ep, n, 0)["observation.state"], np.float32))


def test_lerobot_video_frames_resized_to_training_size(tmp_path):
    pytest.importorskip("av")
    src = write_lerobot(tmp_path / "ds", "v3.0")
    assert main(["convert", str(src), str(tmp_path / "out"), "--image-size", "24x32", "--quiet"]) == 0
    r = DemoReader(tmp_path / "out")
    assert r.meta.obs_spec["top_image"].shape == (24, 32, 3)
    want = camera_frames(1, 0, LENGTHS[1]).reshape(LENGTHS[1], 24, 2, 32, 2, 3).mean(axis=(2, 4))  # a 2x2 box average
    got = r.load(1).obs["top_image"]
    assert got.shape == (LENGTHS[1], 24, 32, 3) and np.abs(got - want).mean() < 2.0
    assert main(["convert", str(src), str(tmp_path / "sq"), "--image-size", "16", "--quiet"]) == 0
    assert DemoReader(tmp_path / "sq").meta.obs_spec["wrist_image"].shape == (16, 16, 3)


def test_lerobot_png_image_features_import_bit_exact(tmp_path):
    pytest.importorskip("PIL")
    src = write_lerobot(tmp_path / "ds", "v3.0", kind="image")
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 0
    r = DemoReader(tmp_path / "out")
    for ep, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(r.load(ep).obs["wrist_image"], camera_frames(ep, 1, n))


def _one_line_failure(capsys, tmp_path, src, *flags) -> str:
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    return err


def test_short_or_missing_video_is_one_line_naming_file_and_feature(tmp_path, capsys):
    pytest.importorskip("av")
    src = write_lerobot(tmp_path / "ds", "v2.1")
    video = src / "videos" / "chunk-000" / "observation.images.wrist" / "episode_000001.mp4"
    encode_video(video.with_name("short.mp4"), camera_frames(1, 1, LENGTHS[1] - 2))
    video.with_name("short.mp4").replace(video)
    err = _one_line_failure(capsys, tmp_path, src)
    assert str(video) in err and "field 'observation.images.wrist'" in err and "video too short" in err
    video.unlink()
    err = _one_line_failure(capsys, tmp_path, src)
    assert str(video) in err and "missing video file" in err


def test_video_at_another_rate_than_the_dataset_is_refused(tmp_path, capsys):
    pytest.importorskip("av")
    src = write_lerobot(tmp_path / "ds", "v3.0")
    video = src / "videos" / "observation.images.top" / "chunk-000" / "file-001.mp4"
    video.unlink()
    encode_video(video, camera_frames(2, 0, LENGTHS[2]), fps=30)
    err = _one_line_failure(capsys, tmp_path, src)
    assert str(video) in err and "runs at 30 fps but meta/info.json says fps 15" in err


def test_timestamps_that_miss_the_frames_are_refused_unless_within_the_tolerance(tmp_path, capsys):
    pytest.importorskip("av")
    src = write_lerobot(tmp_path / "ds", "v3.0", shift_s=0.3 / FPS)  # rows 0.3 frame after their frames
    err = _one_line_failure(capsys, tmp_path, src)
    assert "file-000.mp4" in err and "no frame within 0.0001 s of timestamp" in err
    assert main(["convert", str(src), str(tmp_path / "ok"), "--quiet", "--video-tolerance-s", str(0.5 / FPS)]) == 0
    assert_frames_match(DemoReader(tmp_path / "ok").load(1).obs["top_image"], camera_frames(1, 0, LENGTHS[1]), 2, 0.6)
