"""Demo folder format 1: round trip, one test per kind of bad input (each checks that the
error names the file and the field), append/resume, and crash safety of episode writes."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from robolearn.data import format as fmt
from robolearn.data.format import (
    ActionSpec,
    DemoFormatError,
    DemoMeta,
    DemoReader,
    DemoWriter,
    ObsFieldSpec,
    load_folder,
    read_meta,
)


def make_meta(**kw) -> DemoMeta:
    base = dict(
        task="graph_reach",
        control_hz=10.0,
        obs_spec={"pos": ObsFieldSpec((2,), "float32"), "grip": ObsFieldSpec((1,), "float64")},
        action_spec=ActionSpec(dim=2),
        source="test",
    )
    base.update(kw)
    return DemoMeta(**base)


def make_episode(T: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rewards = np.zeros(T, np.float32)
    rewards[-1] = 1.0
    dones = np.zeros(T, bool)
    dones[-1] = True
    return dict(
        obs={"pos": rng.normal(size=(T + 1, 2)).astype(np.float32), "grip": rng.normal(size=(T + 1, 1))},
        actions=rng.uniform(-1, 1, size=(T, 2)).astype(np.float32),
        rewards=rewards,
        dones=dones,
        success=True,
        states=rng.normal(size=(T + 1, 5)),
        timestamps=np.arange(T + 1) / 10.0,
        extra={"route_index": np.asarray(2)},
    )


def raw_arrays(ep: dict) -> dict[str, np.ndarray]:
    """The npz key -> array mapping the writer produces, for hand-made bad files."""
    out = {
        "actions": ep["actions"],
        "rewards": ep["rewards"],
        "dones": ep["dones"],
        "success": np.asarray(ep["success"]),
    }
    for k, v in ep["obs"].items():
        out[f"obs/{k}"] = v
    return out


@pytest.fixture
def folder(tmp_path) -> Path:
    """A valid folder with one good episode (index 0)."""
    w = DemoWriter(tmp_path / "demos", make_meta())
    w.write_episode(**make_episode())
    return tmp_path / "demos"


def write_raw(folder: Path, index: int, arrays: dict[str, np.ndarray]) -> Path:
    path = folder / "episodes" / f"episode_{index:06d}.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def expect_error(folder: Path, index: int, field: str, match: str) -> DemoFormatError:
    reader = DemoReader(folder)
    with pytest.raises(DemoFormatError) as info:
        reader.load(index)
    err = info.value
    assert err.field == field
    assert Path(err.path).name == f"episode_{index:06d}.npz"
    assert f"episode_{index:06d}.npz" in str(err) and f"'{field}'" in str(err)
    assert match in err.problem, err.problem
    # validate() over the folder finds the same bad file.
    with pytest.raises(DemoFormatError, match=f"episode_{index:06d}"):
        reader.validate()
    return err


# ---------------------------------------------------------------- round trip
def test_round_trip(tmp_path):
    meta = make_meta(robot="Panda", controller="OSC_POSE", extra={"env": {"horizon": 50}, "seed": 3})
    w = DemoWriter(tmp_path / "d", meta)
    written = [make_episode(T=5 + i, seed=i) for i in range(3)]
    paths = [w.write_episode(**ep) for ep in written]
    assert [p.name for p in paths] == ["episode_000000.npz", "episode_000001.npz", "episode_000002.npz"]
    reader = DemoReader(tmp_path / "d")
    assert reader.meta.to_json() == meta.to_json()
    assert reader.validate() == 3
    for ep, got in zip(written, reader):
        for k in ep["obs"]:
            assert np.array_equal(got.obs[k], ep["obs"][k]) and got.obs[k].dtype == np.dtype(meta.obs_spec[k].dtype)
        for k in ("actions", "rewards", "dones", "states", "timestamps"):
            assert np.array_equal(getattr(got, k), ep[k]), k
        assert got.success is True and got.length == ep["actions"].shape[0]
        assert got.extra.keys() == {"route_index"} and int(got.extra["route_index"]) == 2
    m2, eps = load_folder(tmp_path / "d")
    assert len(eps) == 3 and m2.task == "graph_reach"


def test_writer_defaults_rewards_and_dones(tmp_path):
    w = DemoWriter(tmp_path / "d", make_meta())
    ep = make_episode(T=4)
    w.write_episode(obs=ep["obs"], actions=ep["actions"])
    got = DemoReader(tmp_path / "d").load(0)
    assert np.array_equal(got.rewards, np.zeros(4, np.float32))
    assert got.dones.tolist() == [False, False, False, True] and got.success is False
    assert got.states is None and got.timestamps is None


def test_split(tmp_path):
    w = DemoWriter(tmp_path / "d", make_meta())
    for i in range(4):
        w.write_episode(**make_episode(seed=i))
    r = DemoReader(tmp_path / "d")
    assert r.split_indices("train") == [0, 1, 2, 3] and r.split_indices("valid") == []
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta["split"] = {"train": [0, 1, 3], "valid": [2]}
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    r = DemoReader(tmp_path / "d")
    assert r.split_indices("train") == [0, 1, 3] and r.split_indices("valid") == [2]
    assert len(load_folder(tmp_path / "d", "valid")[1]) == 1
    with pytest.raises(DemoFormatError, match="split.test"):
        r.split_indices("test")
    meta["split"] = {"train": [0, 9]}
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DemoFormatError, match=r"split\.train.*\[9\]"):
        DemoReader(tmp_path / "d").split_indices("train")


# ---------------------------------------------------------------- bad episode files
def test_missing_key(folder):
    arrays = raw_arrays(make_episode())
    del arrays["rewards"]
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "rewards", "missing")


def test_missing_obs_key(folder):
    arrays = raw_arrays(make_episode())
    del arrays["obs/grip"]
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "obs/grip", "missing")


def test_wrong_action_shape(folder):
    arrays = raw_arrays(make_episode())
    arrays["actions"] = np.zeros((6, 3), np.float32)
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "actions", "expected shape (T, 2)")


def test_wrong_obs_shape(folder):
    arrays = raw_arrays(make_episode())
    arrays["obs/pos"] = np.zeros((7, 3), np.float32)
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "obs/pos", "per-step shape (2,)")


def test_wrong_obs_dtype(folder):
    arrays = raw_arrays(make_episode())
    arrays["obs/pos"] = arrays["obs/pos"].astype(np.float64)
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "obs/pos", "dtype float32")


def test_wrong_action_dtype(folder):
    arrays = raw_arrays(make_episode())
    arrays["actions"] = np.zeros((6, 2), np.int64)
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "actions", "float dtype")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_actions(folder, bad):
    arrays = raw_arrays(make_episode())
    arrays["actions"][3, 1] = bad
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "actions", "NaN or inf at step 3, dim 1")


def test_nan_in_observations(folder):
    arrays = raw_arrays(make_episode())
    arrays["obs/pos"][2, 0] = np.nan
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "obs/pos", "NaN or inf")


def test_obs_action_length_mismatch(folder):
    arrays = raw_arrays(make_episode(T=6))
    arrays["obs/pos"] = arrays["obs/pos"][:6]  # T rows instead of T+1
    arrays["obs/grip"] = arrays["obs/grip"][:6]
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "obs/pos", "length mismatch: expected 7 rows")


def test_rewards_length_mismatch(folder):
    arrays = raw_arrays(make_episode(T=6))
    arrays["rewards"] = arrays["rewards"][:4]
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "rewards", "expected shape (6,)")


def test_success_not_scalar(folder):
    arrays = raw_arrays(make_episode())
    arrays["success"] = np.array([True, False])
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "success", "scalar")


def test_truncated_file(folder):
    good = folder / "episodes" / "episode_000000.npz"
    data = good.read_bytes()
    (folder / "episodes" / "episode_000001.npz").write_bytes(data[: len(data) // 2])
    expect_error(folder, 1, "<file>", "truncated or unreadable")


def test_garbage_file(folder):
    (folder / "episodes" / "episode_000001.npz").write_bytes(os.urandom(300))
    expect_error(folder, 1, "<file>", "truncated or unreadable")


def test_pickled_object_array_refused(folder):
    arrays = raw_arrays(make_episode())
    arrays["success"] = np.array({"x": 1}, dtype=object)
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, "<file>", "unreadable")


def test_writer_refuses_bad_episode_and_writes_nothing(folder):
    w = DemoWriter(folder, make_meta())
    ep = make_episode()
    ep["actions"][0, 0] = np.nan
    with pytest.raises(DemoFormatError) as info:
        w.write_episode(**ep)
    assert info.value.field == "actions" and "episode_000001.npz" in info.value.path
    ep = make_episode()
    del ep["obs"]["grip"]
    with pytest.raises(DemoFormatError, match="obs/grip"):
        w.write_episode(**ep)
    assert DemoReader(folder).indices == [0] and w.next_index == 1
    assert sorted(p.name for p in (folder / "episodes").iterdir()) == ["episode_000000.npz"]


# ---------------------------------------------------------------- bad meta / folders
def test_unknown_format_version(folder):
    meta = json.loads((folder / "meta.json").read_text())
    meta["format_version"] = 2
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DemoFormatError) as info:
        DemoReader(folder)
    assert info.value.field == "format_version" and "meta.json" in info.value.path
    assert "unknown format version 2" in str(info.value)


def test_meta_missing_key(folder):
    meta = json.loads((folder / "meta.json").read_text())
    del meta["control_hz"]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DemoFormatError, match=r"meta\.json: field 'control_hz': missing"):
        read_meta(folder)


def test_meta_garbage(folder):
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(DemoFormatError, match=r"meta\.json: field '<file>': unreadable JSON"):
        read_meta(folder)


def test_meta_bad_obs_spec(folder):
    meta = json.loads((folder / "meta.json").read_text())
    meta["obs_spec"]["pos"] = {"shape": "two"}
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DemoFormatError, match=r"field 'obs_spec.pos'"):
        read_meta(folder)


def test_empty_folder(tmp_path):
    DemoWriter(tmp_path / "d", make_meta())  # meta.json and episodes/, no episode
    with pytest.raises(DemoFormatError) as info:
        DemoReader(tmp_path / "d")
    assert info.value.field == "<folder>" and "empty demo folder" in str(info.value)
    assert info.value.path.endswith("episodes")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DemoFormatError, match=r"bare/meta\.json: field '<file>': missing"):
        DemoReader(tmp_path / "bare")
    with pytest.raises(DemoFormatError, match="not a directory"):
        DemoReader(tmp_path / "nothing_here")


# ---------------------------------------------------------------- append / resume
def test_append_resumes_indices(folder):
    w = DemoWriter(folder, make_meta(source="another run"))
    assert w.next_index == 1
    assert w.write_episode(**make_episode(seed=1)).name == "episode_000001.npz"
    # The folder's meta is kept (not overwritten by the appender's).
    assert read_meta(folder).source == "test"
    # Resume continues after the highest index, even with gaps.
    (folder / "episodes" / "episode_000001.npz").rename(folder / "episodes" / "episode_000007.npz")
    assert DemoWriter(folder, make_meta()).write_episode(**make_episode()).name == "episode_000008.npz"
    assert DemoReader(folder).indices == [0, 7, 8]


@pytest.mark.parametrize(
    "change, why",
    [
        (dict(task="lift"), "task"),
        (dict(control_hz=20.0), "control_hz"),
        (dict(action_spec=ActionSpec(dim=7)), "action dim"),
        (dict(obs_spec={"pos": ObsFieldSpec((3,), "float32")}), "obs_spec"),
    ],
)
def test_append_refuses_mismatched_meta(folder, change, why):
    with pytest.raises(DemoFormatError) as info:
        DemoWriter(folder, make_meta(**change))
    assert info.value.path.endswith("meta.json") and info.value.field == "meta"
    assert "cannot append" in str(info.value) and why in str(info.value)
    assert DemoReader(folder).indices == [0]


# ---------------------------------------------------------------- crash safety
def test_crash_during_write_leaves_no_partial_episode(folder, monkeypatch):
    """An exception after half the bytes are on disk (here: in fsync, before the rename)
    must leave neither the episode nor its temporary file behind."""
    w = DemoWriter(folder, make_meta())

    def crash(fd):
        raise OSError("disk yanked")

    monkeypatch.setattr(fmt.os, "fsync", crash)
    with pytest.raises(OSError, match="disk yanked"):
        w.write_episode(**make_episode(seed=5))
    monkeypatch.undo()
    assert sorted(p.name for p in (folder / "episodes").iterdir()) == ["episode_000000.npz"]
    assert DemoReader(folder).validate() == 1
    # The writer did not advance: the next episode takes the index the crashed one would have had.
    assert w.write_episode(**make_episode(seed=6)).name == "episode_000001.npz"


def test_killed_writer_leftover_tmp_is_invisible(folder):
    """A process killed mid-write (no chance to clean up) leaves only a hidden .tmp file,
    which readers and resuming writers ignore."""
    data = (folder / "episodes" / "episode_000000.npz").read_bytes()
    (folder / "episodes" / ".episode_000001.npz.abc123.tmp").write_bytes(data[:100])
    r = DemoReader(folder)
    assert r.indices == [0] and r.validate() == 1
    assert DemoWriter(folder, make_meta()).next_index == 1


def test_episode_files_are_npz_with_documented_keys(folder):
    with zipfile.ZipFile(folder / "episodes" / "episode_000000.npz") as z:
        names = sorted(n[: -len(".npy")] for n in z.namelist())
    assert names == sorted(
        ["actions", "rewards", "dones", "success", "obs/pos", "obs/grip", "states", "timestamps", "extra/route_index"]
    )


def test_bare_npy_file_is_unreadable_not_a_crash(folder):
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    (folder / "episodes" / "episode_000001.npz").write_bytes(buf.getvalue())
    expect_error(folder, 1, "<file>", "unreadable")


@pytest.mark.parametrize("key", ["states", "timestamps"])
def test_scalar_states_or_timestamps(folder, key):
    arrays = raw_arrays(make_episode())
    arrays[key] = np.asarray(1.0)
    write_raw(folder, 1, arrays)
    expect_error(folder, 1, key, "expected")


def test_corrupted_bytes_always_give_a_demo_format_error(folder):
    """Fuzz: overwrite 4 bytes at many offsets of a valid compressed episode. Whatever breaks
    (zip directory, deflate stream, npy header), the reader answers DemoFormatError naming the
    file, never a zlib/tokenize/NotImplementedError traceback."""
    data = (folder / "episodes" / "episode_000000.npz").read_bytes()
    target = folder / "episodes" / "episode_000001.npz"
    reader = DemoReader(folder)
    reader.indices = [0, 1]
    rng = np.random.default_rng(0)
    errors = 0
    for off in range(0, len(data) - 4, 5):
        b = bytearray(data)
        b[off : off + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        target.write_bytes(bytes(b))
        try:
            reader.load(1)
        except DemoFormatError as exc:
            assert "episode_000001.npz" in str(exc)
            errors += 1
    assert errors > 0


def test_written_files_and_folders_follow_the_umask(tmp_path):
    """Episodes, meta.json, staged outputs and videos are shared data: created 0666/0777 minus
    the umask like any file, not private to their writer (temporary files keep their mode)."""
    import os

    from robolearn.data.format import atomic_write_bytes
    from robolearn.data.staging import staged_dir, staged_file
    from robolearn.video import write_mp4

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "meta.json", b"{}")
        with staged_dir(tmp_path / "converted") as d:
            (d / "x").write_text("x")
        with staged_file(tmp_path / "out.hdf5") as f:
            f.write_bytes(b"x")
        write_mp4(tmp_path / "v.mp4", [np.zeros((8, 8, 3), np.uint8)] * 2, fps=10)
    finally:
        os.umask(old)
    assert oct((tmp_path / "meta.json").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "converted").stat().st_mode & 0o777) == oct(0o755)
    assert oct((tmp_path / "out.hdf5").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "v.mp4").stat().st_mode & 0o777) == oct(0o644)
