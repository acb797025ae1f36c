"""Image keys in demo folders: bit-exact round trip through the episode file, random access by
key and by frame, crash safety of the write, bad frames refused before writing, DemoDataset's
uint8 tensors, and recording cameras end to end (collect on Lift, inspect's contact sheet,
replay --video)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.data import image_codec
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import (ActionSpec, DemoFormatError, DemoMeta, DemoReader, DemoWriter, Episode, ObsFieldSpec,
                                   load_folder)

H, W = 12, 16
REPO = Path(__file__).resolve().parents[1]


def image_meta() -> DemoMeta:
    return DemoMeta(task="lift", control_hz=20.0, action_spec=ActionSpec(dim=2),
                    obs_spec={"pos": ObsFieldSpec((2,)), "agentview_image": ObsFieldSpec((H, W, 3), "uint8")})


def frames(n: int, seed: int = 0) -> np.ndarray:
    """A still background with a moving square, plus noise in a corner: like a fixed camera
    watching an arm, with every uint8 value (and so the delta's wrap-around) exercised."""
    rng = np.random.default_rng(seed)
    out = np.broadcast_to(rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8), (n, H, W, 3)).copy()
    for t in range(n):
        x = t % (W - 4)
        out[t, 3:7, x:x + 4] = (255 - 5 * t) % 256
        out[t, :2, :2] = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    return out


def image_episode(T: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return dict(obs={"pos": rng.normal(size=(T + 1, 2)).astype(np.float32), "agentview_image": frames(T + 1, seed)},
                actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32), success=True)


def write(folder: Path, *episodes: dict) -> list[Path]:
    with DemoWriter(folder, image_meta()) as w:
        return [w.write_episode(**ep) for ep in episodes]


# -- storage ------------------------------------------------------------------------------------
def test_image_episode_round_trip_is_bit_exact_and_compact(tmp_path):
    ep = image_episode(T=70)  # three chunks of 32 frames
    (path,) = write(tmp_path / "d", ep)
    members = zipfile.ZipFile(path).namelist()
    assert "obs/agentview_image.npy" not in members and "image/agentview_image/data.npy" in members
    assert path.stat().st_size < ep["obs"]["agentview_image"].nbytes / 4
    back = DemoReader(tmp_path / "d").load(0)
    assert back.obs["agentview_image"].dtype == np.uint8
    assert np.array_equal(back.obs["agentview_image"], ep["obs"]["agentview_image"])
    assert np.array_equal(back.obs["pos"], ep["obs"]["pos"])
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["format_version"] == 1
    assert meta["obs_spec"]["agentview_image"] == {"shape": [H, W, 3], "dtype": "uint8"}


def test_raw_uint8_image_arrays_still_load(tmp_path):
    """A file holding its frames as a plain obs/<key> array (a converter's, or an older writer's) reads the same."""
    ep = image_episode(T=5)
    write(tmp_path / "d", ep)
    path = tmp_path / "d" / "episodes" / "episode_000001.npz"
    np.savez_compressed(path, actions=ep["actions"], rewards=np.zeros(5, np.float32), dones=np.eye(5, dtype=bool)[-1],
                        success=np.asarray(True), **{f"obs/{k}": v for k, v in ep["obs"].items()})
    reader = DemoReader(tmp_path / "d")
    assert np.array_equal(reader.load(1).obs["agentview_image"], ep["obs"]["agentview_image"])
    assert np.array_equal(reader.frames(1, "agentview_image", [4, 0]), ep["obs"]["agentview_image"][[4, 0]])


def corrupt_chunk(path: Path, chunk: int) -> None:
    """Rewrite the episode with one byte of image chunk ``chunk`` flipped."""
    with np.load(path) as z:
        arrays = {k: z[k].copy() for k in z.files}
    data, offsets = arrays["image/agentview_image/data"], arrays["image/agentview_image/offsets"]
    data[(offsets[chunk] + offsets[chunk + 1]) // 2] ^= 0xFF
    np.savez(path, **arrays)


def test_random_access_reads_only_the_key_and_chunks_asked_for(tmp_path):
    ep = image_episode(T=70)
    (path,) = write(tmp_path / "d", ep)
    corrupt_chunk(path, 0)
    reader = DemoReader(tmp_path / "d")
    # The low-dimensional keys alone never touch the frames...
    assert list(reader.load(0, keys=["pos"]).obs) == ["pos"]
    _, eps = load_folder(tmp_path / "d", keys=["pos"])
    assert np.array_equal(eps[0].obs["pos"], ep["obs"]["pos"])
    # ...frames of chunks 1 and 2 decode without chunk 0...
    want = [70, 33, 64, 40]
    assert np.array_equal(reader.frames(0, "agentview_image", want), ep["obs"]["agentview_image"][want])
    # ...and the corrupt chunk is named when it is read.
    with pytest.raises(DemoFormatError) as info:
        reader.load(0)
    assert info.value.path == str(path) and info.value.field == "obs/agentview_image"
    assert "chunk 0 (frames 0..31) is corrupt" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DemoFormatError, match="outside 0..70"):
        reader.frames(0, "agentview_image", [71])
    with pytest.raises(DemoFormatError, match=r"meta.json: field 'obs_spec.wrist_image': no such observation key"):
        reader.load(0, keys=["wrist_image"])


@pytest.mark.parametrize("change, problem", [
    (lambda f: f.astype(np.float32) / 255.0, "expected dtype uint8, got float32"),
    (lambda f: f[:, :, :8], "expected per-step shape (12, 16, 3), got (12, 8, 3)"),
    (lambda f: f[:, :, :, :1], "expected per-step shape (12, 16, 3), got (12, 16, 1)"),
    (lambda f: f[:-1], "observation/action length mismatch: expected 7 rows (T+1 for T=6 actions), got 6"),
])
def test_bad_frames_are_refused_before_writing(tmp_path, change, problem):
    ep = image_episode(T=6)
    ep["obs"]["agentview_image"] = change(ep["obs"]["agentview_image"])
    with DemoWriter(tmp_path / "d", image_meta()) as w, pytest.raises(DemoFormatError) as info:
        w.write_episode(**ep)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "d" / "episodes" / "episode_000000.npz"))
    assert "field 'obs/agentview_image'" in msg and problem in msg and "\n" not in msg
    assert list((tmp_path / "d" / "episodes").iterdir()) == []


def test_bad_encoded_files_name_the_file_and_key(tmp_path):
    (path,) = write(tmp_path / "d", image_episode(T=6))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for member, value, problem in [
        ("image/agentview_image/codec", np.array("h264"), "unknown image codec 'h264'"),
        ("image/agentview_image/shape", np.array([7, H, 8, 3]), "expected per-step shape (12, 16, 3), got (12, 8, 3)"),
        ("image/agentview_image/shape", np.array([6, H, W, 3]), "holds"),
    ]:
        np.savez(path, **{**arrays, member: value})
        with pytest.raises(DemoFormatError) as info:
            DemoReader(tmp_path / "d").load(0)
        assert info.value.path == str(path) and info.value.field == "obs/agentview_image", member
        assert problem in info.value.problem, (member, info.value.problem)


CRASH = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from tests.test_image_demos import image_episode, image_meta
    from robolearn.data.format import DemoWriter
    w = DemoWriter(sys.argv[1], image_meta())
    real_fsync = os.fsync
    def die(fd):  # the episode's bytes are in the temporary file, not yet given its name
        os._exit(9)
    os.fsync = die
    w.write_episode(**image_episode(T=50, seed=1))
""")


def test_a_crash_mid_write_leaves_no_partial_episode(tmp_path):
    folder = tmp_path / "d"
    first = image_episode(T=8)
    write(folder, first)
    proc = subprocess.run([sys.executable, "-c", CRASH, str(folder), str(REPO)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    leftovers = [p.name for p in (folder / "episodes").iterdir()]
    assert "episode_000000.npz" in leftovers and "episode_000001.npz" not in leftovers
    assert any(n.startswith(".episode_000001.npz.") for n in leftovers)  # the killed writer's temporary file
    reader = DemoReader(folder)
    assert reader.indices == [0] and reader.validate() == 1
    write(folder, image_episode(T=5, seed=2))  # the next writer carries on at the next index
    assert DemoReader(folder).indices == [0, 1]
    assert np.array_equal(DemoReader(folder).load(0).obs["agentview_image"], first["obs"]["agentview_image"])


def test_codec_round_trip_on_edge_cases():
    for n in (1, 31, 32, 33):
        x = frames(n, seed=n)
        assert np.array_equal(image_codec.decode(image_codec.encode(x)), x)
    with pytest.raises(image_codec.ImageCodecError, match="expected uint8 frames"):
        image_codec.encode(np.zeros((2, H, W, 3), np.float32))


# -- DemoDataset --------------------------------------------------------------------------------
def test_dataset_keeps_image_keys_as_uint8_tensors_never_normalised(tmp_path):
    a, b = image_episode(T=10, seed=0), image_episode(T=7, seed=1)
    write(tmp_path / "d", a, b)
    _, episodes = load_folder(tmp_path / "d")
    data = DemoDataset(episodes, ["pos", "agentview_image"])
    img = data.obs["agentview_image"]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (11 + 8, H, W, 3)
    assert data.obs_spec["agentview_image"].kind == "image" and data.obs_spec["agentview_image"].dtype == "uint8"
    assert set(data.normalizers) == {"pos"}
    rows = torch.tensor([0, 10, 11, 18])
    got = data.observations(rows)["agentview_image"]
    want = np.concatenate([a["obs"]["agentview_image"], b["obs"]["agentview_image"]])[rows.numpy()]
    assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), want)
    batch = data.sequences(4, 3, torch.Generator().manual_seed(0))
    assert batch["obs"]["agentview_image"].dtype == torch.uint8 and tuple(batch["obs"]["agentview_image"].shape) == (4, 3, H, W, 3)


def test_dataset_refuses_an_image_key_of_another_dtype_in_memory():
    good = image_episode(T=4)
    bad = image_episode(T=4, seed=1)
    bad["obs"]["agentview_image"] = bad["obs"]["agentview_image"].astype(np.int16)
    eps = [Episode(obs=e["obs"], actions=e["actions"], rewards=np.zeros(4, np.float32), dones=np.eye(4, dtype=bool)[-1],
                   success=True) for e in (good, bad)]
    with pytest.raises(DemoFormatError, match=r"field 'obs/agentview_image': image key: expected uint8 frames, got int16 in episode #1"):
        DemoDataset(eps, ["pos", "agentview_image"], source="mem")
