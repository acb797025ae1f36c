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

import robolearn.sim_compat  # sets MUJOCO_GL=osmesa before robosuite and MuJoCo are imported
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


def test_folders_without_image_keys_are_written_as_before(tmp_path):
    meta = DemoMeta(task="lift", control_hz=20.0, action_spec=ActionSpec(dim=2), obs_spec={"pos": ObsFieldSpec((2,))})
    ep = image_episode(T=5)
    with DemoWriter(tmp_path / "d", meta) as w:
        path = w.write_episode({"pos": ep["obs"]["pos"]}, ep["actions"], success=True)
    with zipfile.ZipFile(path) as z:
        assert [i.filename for i in z.infolist()] == ["actions.npy", "rewards.npy", "dones.npy", "success.npy", "obs/pos.npy"]
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}  # np.savez_compressed's file


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
    import numpy as np
    from robolearn.data.format import ActionSpec, DemoMeta, DemoWriter, ObsFieldSpec
    meta = DemoMeta(task="lift", control_hz=20.0, action_spec=ActionSpec(dim=2),
                    obs_spec={"pos": ObsFieldSpec((2,)), "agentview_image": ObsFieldSpec((%d, %d, 3), "uint8")})
    w = DemoWriter(sys.argv[1], meta)
    def die(fd):  # the episode's bytes are in its temporary file, not yet given their name
        os._exit(9)
    os.fsync = die
    frames = np.random.default_rng(1).integers(0, 256, (51, %d, %d, 3), dtype=np.uint8)
    w.write_episode({"pos": np.zeros((51, 2)), "agentview_image": frames}, np.zeros((50, 2)), success=True)
""" % (H, W, H, W))


def test_a_crash_mid_write_leaves_no_partial_episode(tmp_path):
    folder = tmp_path / "d"
    first = image_episode(T=8)
    write(folder, first)
    proc = subprocess.run([sys.executable, "-c", CRASH, str(folder)], capture_output=True, text=True, timeout=60, cwd=REPO)
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


# -- recording: teleop / deploy's recorder over a CameraArm ------------------------------------------
class PatternCamera:
    """A camera whose frame t shows t: real capture thread and CameraArm, no simulator needed."""

    def __init__(self, name: str = "wrist"):
        from robolearn.hal.cameras import CameraSpec

        self.spec = CameraSpec(name=name, width=W, height=H, fps=100.0)
        self.connected = False
        self._n = 0

    def connect(self) -> None:
        self.connected = True

    def read(self):
        import time

        from robolearn.hal.cameras import Frame

        time.sleep(0.002)
        self._n += 1
        return Frame(image=np.full((H, W, 3), self._n % 256, np.uint8), timestamp=time.monotonic(), index=self._n)

    def close(self) -> None:
        self.connected = False


class ScriptedDevice:
    """start, ``steps`` hold commands, save, quit: a person at the keyboard, played back."""

    def __init__(self, steps: int):
        self.steps, self.phase = steps, "idle"

    def poll(self):
        hold = np.zeros(7, np.float32)
        if self.phase == "idle":
            self.phase = "recording"
            return hold, ["start"]
        if self.phase == "recording" and self.steps:
            self.steps -= 1
            return hold, []
        if self.phase == "recording":
            self.phase = "saved"
            return hold, ["save"]
        return hold, ["quit"]

    def close(self) -> None:
        pass


def test_teleop_records_the_camera_frames_of_its_observations(tmp_path):
    import io

    from robolearn.hal.cameras import CameraArm, CameraRig
    from robolearn.hal.noop_arm import NoopArm
    from robolearn.teleop.session import SessionConfig, TeleopSession, meta_for

    arm = CameraArm(NoopArm(), CameraRig([PatternCamera()]), max_frame_age_s=0.5)
    meta = meta_for(arm, "noop", 50.0, source="teleop:scripted")
    assert meta.obs_spec["wrist_image"].is_image
    out = io.StringIO()
    arm.connect()
    try:
        with DemoWriter(tmp_path / "demos", meta) as writer:
            summary = TeleopSession(arm, ScriptedDevice(6), writer, SessionConfig(hz=50.0), out=out).run()
    finally:
        arm.close()
    assert len(summary["saved"]) == 1 and "frames of wrist_image" in out.getvalue()
    ep = DemoReader(tmp_path / "demos").load(0)
    img = ep.obs["wrist_image"]
    assert img.dtype == np.uint8 and img.shape == (ep.length + 1, H, W, 3)
    values = img[:, 0, 0, 0].astype(int)
    assert np.all(np.diff(values) >= 0) and values[-1] > values[0]  # newer frames as the episode goes on


def test_recorder_refuses_a_bad_frame_at_the_step_that_brings_it(tmp_path):
    from robolearn.data.recorder import EpisodeRecorder

    with DemoWriter(tmp_path / "d", image_meta()) as writer:
        rec = EpisodeRecorder(writer)
        rec.start()
        rec.record({"pos": np.zeros(2), "agentview_image": frames(1)[0]}, np.zeros(2))
        with pytest.raises(DemoFormatError, match=r"field 'obs/agentview_image': expected a uint8 frame of shape "
                                                  r"\(12, 16, 3\), got float64 \(12, 16, 3\) at step 1"):
            rec.record({"pos": np.zeros(2), "agentview_image": frames(1)[0] / 255.0}, np.zeros(2))


# -- robolearn collect / inspect / replay on Lift -------------------------------------------------------
def needs_robosuite() -> None:
    """Skip without robosuite; import it quietly as the tasks do (its import warnings are not the errors tested)."""
    try:
        robolearn.sim_compat.import_robosuite()
    except ImportError as exc:
        pytest.skip(f"robosuite not installed: {exc}")


LIFT_CAMERAS = ["--cameras", "agentview,robot0_eye_in_hand", "--image-size", "16"]


@pytest.fixture(scope="module")
def lift_folder(tmp_path_factory):
    needs_robosuite()
    from robolearn.cli import main

    out = tmp_path_factory.mktemp("lift") / "demos"
    assert main(["collect", "lift", "--operator", "proficient", "--episodes", "2", "--seed", "0", "--horizon", "3",
                 "--keep-failed", "--no-progress", "--out", str(out), *LIFT_CAMERAS]) == 0
    return out


def test_collect_lift_records_both_cameras(lift_folder):
    reader = DemoReader(lift_folder)
    meta = json.loads((lift_folder / "meta.json").read_text())
    for key in ("agentview_image", "robot0_eye_in_hand_image"):
        assert meta["obs_spec"][key] == {"shape": [16, 16, 3], "dtype": "uint8"}
    assert meta["extra"]["env"] == {"horizon": 3, "cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 16}
    assert len(reader) == 2
    for i in reader.indices:
        ep = reader.load(i)
        for key in ("agentview_image", "robot0_eye_in_hand_image"):
            img = ep.obs[key]
            assert img.dtype == np.uint8 and img.shape == (ep.length + 1, 16, 16, 3)
            assert img.std() > 5  # a rendered scene, not a blank frame
        assert not np.array_equal(ep.obs["agentview_image"], ep.obs["robot0_eye_in_hand_image"])


def test_inspect_writes_a_contact_sheet_per_camera(lift_folder, tmp_path, capsys):
    from PIL import Image

    from robolearn.cli import main

    assert main(["inspect", str(lift_folder), "--out", str(tmp_path / "report"), "--quiet", "--sheet-frames", "3"]) == 0
    assert "| agentview_image | 16 x 16 x 3 | contact_agentview_image.png |" in capsys.readouterr().out
    for key in ("agentview_image", "robot0_eye_in_hand_image"):
        sheet = Image.open(tmp_path / "report" / f"contact_{key}.png")
        # 2 episodes (rows) x 3 frames (columns) of 16 x 16 pixels, 2 white pixels between tiles
        assert sheet.size == (3 * 16 + 2 * 2, 2 * 16 + 2) and sheet.mode == "RGB"
        pixels = np.asarray(sheet)
        first = DemoReader(lift_folder).load(0).obs[key]
        assert np.array_equal(pixels[:16, :16], first[0]) and np.array_equal(pixels[:16, -16:], first[-1])
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert "agentview_image" not in summary["obs_ranges"] and summary["image_keys"]["agentview_image"] == [16, 16, 3]


def test_replay_video_puts_the_recorded_cameras_beside_the_resimulation(lift_folder, tmp_path, capsys):
    from robolearn.cli import main
    from robolearn.video import read_mp4_info

    video = tmp_path / "replay.mp4"
    assert main(["replay", str(lift_folder), "--episode", "0", "--video", str(video), "--size", "32", "32"]) == 0
    printed = capsys.readouterr().out
    # the cameras are re-rendered from the replayed states: the very same pixels
    assert [line.split()[1] for line in printed.splitlines() if line.startswith(("agentview_image", "robot0_eye"))] == ["0", "0"]
    frames_, width, height = read_mp4_info(video)
    assert (frames_, width, height) == (4, 32 + 4 + 32 + 4 + 32, 32)


def test_bad_camera_names_are_one_line_errors(tmp_path, capsys):
    needs_robosuite()
    from robolearn.cli import main

    code = main(["collect", "lift", "--operator", "proficient", "--episodes", "1", "--horizon", "2", "--no-progress",
                 "--out", str(tmp_path / "d"), "--cameras", "agentview,wrist"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err
    assert "no camera 'wrist'" in err and "'agentview'" in err and "'robot0_eye_in_hand'" in err
    assert not (tmp_path / "d").exists()  # refused before the folder was made
    assert main(["collect", "lift", "--operator", "proficient", "--episodes", "1", "--no-progress",
                 "--out", str(tmp_path / "d"), "--image-size", "16"]) == 2
    assert "--image-size: field 'image_size'" in capsys.readouterr().err
    assert main(["collect", "lift", "--operator", "proficient", "--episodes", "1", "--no-progress",
                 "--out", str(tmp_path / "d"), "--cameras", "agent view"]) == 2
    assert "field 'cameras'" in capsys.readouterr().err


def test_collect_pybullet_lift_records_its_named_views(tmp_path, capsys):
    pytest.importorskip("pybullet")
    from robolearn.cli import main

    out = tmp_path / "pb"
    assert main(["collect", "pybullet_lift", "--operator", "proficient", "--episodes", "1", "--horizon", "3", "--keep-failed",
                 "--no-progress", "--out", str(out), "--cameras", "agentview,sideview", "--image-size", "24"]) == 0
    ep = DemoReader(out).load(0)
    for key in ("agentview_image", "sideview_image"):
        assert ep.obs[key].dtype == np.uint8 and ep.obs[key].shape == (4, 24, 24, 3) and ep.obs[key].std() > 5
    capsys.readouterr()
    assert main(["collect", "pybullet_lift", "--operator", "proficient", "--episodes", "1", "--no-progress",
                 "--out", str(tmp_path / "bad"), "--cameras", "robot0_eye_in_hand"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("field 'cameras': no camera 'robot0_eye_in_hand'; this task has ['agentview', 'sideview']")
    assert "\n" not in err and not (tmp_path / "bad").exists()
