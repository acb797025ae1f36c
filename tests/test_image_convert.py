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
