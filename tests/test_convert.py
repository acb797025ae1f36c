"""robomimic / robosuite HDF5 <-> demo folder: round trips, bad files, no partial outputs."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from robolearn.cli import main
from robolearn.commands.convert import convert
from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoReader, DemoWriter, ObsFieldSpec


def write_robomimic(path: Path, n_demos: int = 3, first: int = 0, shifted: bool = True, masks: bool = True) -> dict:
    """A robomimic-shaped file: float64 obs like robomimic's, states, env_args, masks."""
    rng = np.random.default_rng(0)
    demos = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(first, first + n_demos):
            N = 5 + i
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = N
            g.attrs["model_file"] = f"<mujoco model='m{i}'/>"
            full = {"robot0_eef_pos": rng.normal(size=(N + 1, 3)), "object": rng.normal(size=(N + 1, 10))}
            for k, v in full.items():
                g.create_dataset(f"obs/{k}", data=v[:-1])
                nxt = v[1:].copy()
                if not shifted and i == first:
                    nxt[0] += 1e-3  # next_obs that is not obs shifted by one
                g.create_dataset(f"next_obs/{k}", data=nxt)
            g.create_dataset("actions", data=rng.uniform(-1, 1, size=(N, 7)).astype(np.float32).astype(np.float64))
            rew = np.zeros(N)
            rew[-1] = 1.0
            g.create_dataset("rewards", data=rew)
            dones = np.zeros(N, np.int64)
            dones[-1] = 1
            g.create_dataset("dones", data=dones)
            g.create_dataset("states", data=rng.normal(size=(N, 12)))
            total += N
            demos[f"demo_{i}"] = N
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "robots": ["Panda"]}})
        if masks:
            names = sorted(demos, key=lambda n: int(n.split("_")[1]))
            f.create_dataset("mask/train", data=np.array(names[:-1], dtype="S"))
            f.create_dataset("mask/valid", data=np.array(names[-1:], dtype="S"))
            f.create_dataset("mask/20_percent", data=np.array(names[:1], dtype="S"))
    return demos


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and "/robolearn" not in name:
            out[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def no_partials(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".partial" in p.name]


def test_hdf5_folder_hdf5_round_trip(tmp_path):
    src = tmp_path / "rm.hdf5"
    demos = write_robomimic(src, first=1, shifted=False)
    kind, folder = convert(src, tmp_path / "folder", progress=False)
    assert kind == "robomimic->folder"
    r = DemoReader(folder)
    assert r.meta.task == "lift" and r.meta.control_hz == 20 and r.meta.robot == "Panda"
    assert r.meta.extra["env_args"]["env_name"] == "Lift"
    assert r.meta.split == {"train": [0, 1], "valid": [2]}
    assert r.meta.extra["robomimic_masks"] == {"20_percent": [0]}
    assert [r.load(i).length for i in r.indices] == list(demos.values())
    ep = r.load(0)
    assert ep.obs["object"].dtype == np.float64 and ep.obs["object"].shape == (demos["demo_1"] + 1, 10)
    assert ep.success and ep.states.shape == (demos["demo_1"], 12)
    # float32 on request, to merge with folders recorded by `robolearn collect`
    _, f32 = convert(src, tmp_path / "f32", progress=False, obs_dtype="float32")
    e32 = DemoReader(f32).load(0)
    assert e32.obs["object"].dtype == np.float32
    np.testing.assert_array_equal(e32.obs["object"], ep.obs["object"].astype(np.float32))

    back = tmp_path / "back.hdf5"
    convert(folder, back, progress=False)
    a, b = h5_arrays(src), h5_arrays(back)
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith("actions"):
            np.testing.assert_array_equal(a[k].astype(np.float32), b[k], err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with h5py.File(back, "r") as f:
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "Lift"
        assert f["data"].attrs["total"] == sum(demos.values())
        assert f["data/demo_2"].attrs["model_file"] == "<mujoco model='m2'/>"


def test_folder_hdf5_folder_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    meta = DemoMeta(
        task="graph_reach", control_hz=10.0, obs_spec={"pos": ObsFieldSpec((2,)), "goal": ObsFieldSpec((2,))},
        action_spec=ActionSpec(dim=2), robot="point", source="test", extra={"env": {"n": 3}},
    )
    w = DemoWriter(tmp_path / "orig", meta)
    for T in (4, 7, 3):
        w.write_episode(
            obs={"pos": rng.normal(size=(T + 1, 2)), "goal": rng.normal(size=(T + 1, 2))},
            actions=rng.uniform(-1, 1, (T, 2)), rewards=rng.normal(size=T), success=T != 3,
            states=rng.normal(size=(T + 1, 5)), timestamps=np.arange(T + 1) * 0.1,
            extra={"phase": np.arange(T), "label": np.asarray("detour")},
        )
    h5 = tmp_path / "x.hdf5"
    convert(tmp_path / "orig", h5, progress=False)
    convert(h5, tmp_path / "again", progress=False)
    a, b = DemoReader(tmp_path / "orig"), DemoReader(tmp_path / "again")
    assert b.meta.to_json() == a.meta.to_json()
    assert a.indices == b.indices
    for i in a.indices:
        ea, eb = a.load(i), b.load(i)
        for k in ea.obs:
            np.testing.assert_array_equal(ea.obs[k], eb.obs[k])
        for f in ("actions", "rewards", "dones", "states", "timestamps"):
            np.testing.assert_array_equal(getattr(ea, f), getattr(eb, f), err_msg=f)
        assert ea.success == eb.success
        assert sorted(ea.extra) == sorted(eb.extra)
        for k in ea.extra:
            np.testing.assert_array_equal(ea.extra[k], eb.extra[k])


def _corrupt(path: Path, how: str) -> None:
    write_robomimic(path)
    with h5py.File(path, "a") as f:
        if how == "no_data":
            del f["data"]
            f.create_group("other")
        elif how == "no_actions":
            del f["data/demo_1/actions"]
        elif how == "wrong_shape":
            del f["data/demo_1/actions"]
            f.create_dataset("data/demo_1/actions", data=np.zeros((6, 4)))
        elif how == "length":
            del f["data/demo_2/obs/object"]
            f.create_dataset("data/demo_2/obs/object", data=np.zeros((3, 10)))


@pytest.mark.parametrize(
    "how,field",
    [("no_data", "data"), ("no_actions", "data/demo_1/actions"), ("wrong_shape", "data/demo_1/actions"), ("length", "data/demo_2/obs/object")],
)
def test_bad_files_fail_clearly_and_leave_nothing(tmp_path, how, field):
    src = tmp_path / "bad.hdf5"
    _corrupt(src, how)
    with pytest.raises(DemoFormatError) as exc:
        convert(src, tmp_path / "out", progress=False)
    assert str(src) in str(exc.value) and exc.value.field == field
    if how == "length":
        assert "length mismatch" in str(exc.value)
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)


def test_not_hdf5_and_cli_error(tmp_path, capsys):
    src = tmp_path / "notes.hdf5"
    src.write_text("this is not HDF5")
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "notes.hdf5" in err and "not a readable HDF5 file" in err
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)
    # an existing output is never overwritten
    good = tmp_path / "good.hdf5"
    write_robomimic(good)
    (tmp_path / "taken").mkdir()
    with pytest.raises(DemoFormatError, match="already exists"):
        convert(good, tmp_path / "taken", progress=False)


def test_export_failure_leaves_no_file(tmp_path):
    write_robomimic(tmp_path / "rm.hdf5")
    convert(tmp_path / "rm.hdf5", tmp_path / "f", progress=False)
    ep = tmp_path / "f" / "episodes" / "episode_000001.npz"
    ep.write_bytes(ep.read_bytes()[:100])  # truncated episode in the middle
    with pytest.raises(DemoFormatError, match="episode_000001"):
        convert(tmp_path / "f", tmp_path / "out.hdf5", progress=False)
    assert not (tmp_path / "out.hdf5").exists() and no_partials(tmp_path)


def test_robosuite_raw_demo_import(tmp_path):
    """A raw demo.hdf5 recorded here from a real robosuite Lift env, then rebuilt by replaying its states."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    pytest.importorskip("robosuite")
    from robolearn.sim_compat import import_robosuite

    suite = import_robosuite()
    env_info = {"env_name": "Lift", "robots": ["Panda"]}
    env = suite.make("Lift", robots=["Panda"], has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False, ignore_done=True, control_freq=20, seed=0)
    o = env.reset()
    xml = env.sim.model.get_xml()
    rng = np.random.default_rng(0)
    states, actions, eef = [], [], [o["robot0_eef_pos"]]
    for _ in range(6):
        states.append(env.sim.get_state().flatten())
        a = rng.uniform(-1, 1, 7)
        actions.append(a)
        o, *_ = env.step(a)
        eef.append(o["robot0_eef_pos"])
    # robosuite's step() reports kinematics from before its last integration substep; observations
    # rebuilt from a state use forward kinematics at that state (as robomimic does).
    exact = []
    for s in states + [env.sim.get_state().flatten()]:
        env.sim.set_state_from_flattened(s)
        env.sim.forward()
        exact.append(env.sim.data.site_xpos[env.robots[0].eef_site_id["right"]].copy())
    env.close()
    src = tmp_path / "demo.hdf5"
    with h5py.File(src, "w") as f:
        d = f.create_group("data")
        d.attrs["env"] = "Lift"
        d.attrs["env_info"] = json.dumps(env_info)
        d.attrs["repository_version"] = "1.5.2"
        g = d.create_group("demo_1")
        g.attrs["model_file"] = xml
        g.create_dataset("states", data=np.array(states))
        g.create_dataset("actions", data=np.array(actions))
    kind, out = convert(src, tmp_path / "raw", progress=False, obs_dtype="float64")
    assert kind == "robosuite_raw->folder"
    r = DemoReader(out)
    assert r.meta.task == "lift" and set(r.meta.obs_spec) == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"}
    ep = r.load(0)
    assert ep.length == 6 and ep.obs["object"].shape == (7, 10)
    np.testing.assert_allclose(ep.obs["robot0_eef_pos"][:-1], np.array(exact)[:-1], atol=1e-9)
    # the raw file drops the state after the last action: that row comes from replaying the action
    np.testing.assert_allclose(ep.obs["robot0_eef_pos"][-1], exact[-1], atol=1e-2)
    # Against what step() reported: within one substep's motion (up to ~6 mm at full speed), far
    # less than the ~5 cm a whole-step misalignment would show.
    np.testing.assert_allclose(ep.obs["robot0_eef_pos"], np.array(eef), atol=1e-2)
    np.testing.assert_array_equal(ep.states, np.array(states))
    assert str(ep.extra["robomimic_demo"]) == "demo_1"
