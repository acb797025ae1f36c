"""A bad-input corpus for checkpoints: one real checkpoint of a tiny trained BC, then every
kind of damage a disk, a partial copy or a hostile file can do to it. Each load must fail
with a CheckpointError naming the damaged file and the tensor or field; never another
exception, never an allocation the file does not pay for, never executed code."""
from __future__ import annotations

import errno
import json
import shutil
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robolearn.algos.base import algo_class
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import Episode
from robolearn.errors import error_line
from robolearn.policy import (CheckpointError, load_algo, load_policy, read_safetensors_header, restore_training_state,
                              save_checkpoint)

STEP = "step_0000003"


def line_episodes(key: str = "pos", obs_dim: int = 2, action_dim: int = 2, n: int = 6) -> list[Episode]:
    """Points walking in a straight line; the actions are the scaled steps (padded or cut to
    ``action_dim``)."""
    rng = np.random.default_rng(0)
    eps = []
    for _ in range(n):
        pos = np.cumsum(rng.uniform(0.05, 0.1, (11, obs_dim)), axis=0).astype(np.float32)
        steps = np.diff(pos, axis=0) * 10
        actions = np.clip(np.resize(steps, (10, action_dim)), -1, 1).astype(np.float32)
        dones = np.zeros(10, bool)
        dones[-1] = True
        eps.append(Episode(obs={key: pos}, actions=actions, rewards=dones.astype(np.float32), dones=dones, success=True))
    return eps


def write_tiny_run(run: Path, meta: dict, key: str = "pos", obs_dim: int = 2, action_dim: int = 2) -> Path:
    """A run folder as training writes it (checkpoints/<step>/ and checkpoints/latest.json) of
    a BC trained for 3 steps on points walking in a line."""
    data = DemoDataset(line_episodes(key, obs_dim, action_dim), [key])
    torch.manual_seed(0)
    algo = algo_class("bc").build({"hidden": [8, 8]}, data.obs_spec, data.normalizers, data.action_dim)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        algo.train_step(data, gen)
    save_checkpoint(run / "checkpoints" / STEP, algo, step=3, meta=meta, gen=gen)
    return run


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("ckpt") / "run", {"task": "synthetic"})


@pytest.fixture
def run(good_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(good_run, copy)
    return copy


def ckpt_of(run: Path) -> Path:
    return run / "checkpoints" / STEP


# --- raw safetensors editing -----------------------------------------------------------------

def read_raw(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_raw(path: Path, header: dict | bytes, data: bytes, length: int | None = None) -> None:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def edit_header(name: str, edit: Callable[[dict, bytes], tuple[dict, bytes]]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        path = ckpt_of(run) / name
        header, data = read_raw(path)
        write_raw(path, *edit(header, data))
    return apply


def first_tensor(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def _retype_first(header: dict, data: bytes) -> tuple[dict, bytes]:
    """The first tensor (by data offset) rewritten as F64 with the same shape and values."""
    name = min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    begin, end = header[name]["data_offsets"]
    wide = np.frombuffer(data[begin:end], np.float32).astype(np.float64).tobytes()
    shift = len(wide) - (end - begin)
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = {**v, "data_offsets": [b, e + shift] if k == name else [b + shift, e + shift]}
    out[name]["dtype"] = "F64"
    return out, data[:begin] + wide + data[end:]


def _reshape_first(header: dict, data: bytes) -> tuple[dict, bytes]:
    name = first_tensor(header)
    shape = header[name]["shape"]
    header[name]["shape"] = [int(np.prod(shape))] + ([1] if len(shape) == 1 else [])
    return header, data


def _drop_tensor(header: dict, data: bytes) -> tuple[dict, bytes]:
    """Remove the last tensor (by offset) and its bytes, so the file is otherwise valid."""
    name = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    begin = header.pop(name)["data_offsets"][0]
    return header, data[:begin]


def _add_tensor(header: dict, data: bytes) -> tuple[dict, bytes]:
    header["extra.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
    return header, data + np.float32(1).tobytes()


def _nan_weight(header: dict, data: bytes) -> tuple[dict, bytes]:
    name = first_tensor(header)
    begin = header[name]["data_offsets"][0]
    return header, data[:begin] + np.float32(np.nan).tobytes() + data[begin + 4:]


def _set(key: str, value) -> Callable[[dict, bytes], tuple[dict, bytes]]:
    def apply(header: dict, data: bytes) -> tuple[dict, bytes]:
        name = first_tensor(header)
        header[name][key] = value
        return header, data
    return apply


def truncate(name: str, keep: int | float) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        path = ckpt_of(run) / name
        blob = path.read_bytes()
        path.write_bytes(blob[: int(keep if isinstance(keep, int) else len(blob) * keep)])
    return apply


def write_file(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        path = run / rel
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return apply


def remove(rel: str) -> Callable[[Path], None]:
    return lambda run: (run / rel).unlink()


def edit_info(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        path = ckpt_of(run) / "checkpoint.json"
        info = json.loads(path.read_text())
        edit(info)
        path.write_text(json.dumps(info))
    return apply


def huge_header_length(run: Path) -> None:
    path = ckpt_of(run) / "model.safetensors"
    header, data = read_raw(path)
    write_raw(path, header, data, length=2**63)


def garbage_header(run: Path) -> None:
    path = ckpt_of(run) / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[8:20] = b"\xff{not json!!"
    path.write_bytes(bytes(blob))


def duplicate_key_header(run: Path) -> None:
    path = ckpt_of(run) / "model.safetensors"
    header, data = read_raw(path)
    name = first_tensor(header)
    text = json.dumps(header)
    dup = json.dumps({name: header[name]})[1:-1]
    write_raw(path, (text[:-1] + ", " + dup + "}").encode(), data)


def overlapping_offsets(header: dict, data: bytes) -> tuple[dict, bytes]:
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    a, b = names[0], names[1]
    size_b = header[b]["data_offsets"][1] - header[b]["data_offsets"][0]
    header[b]["data_offsets"] = [0, size_b]
    return header, data


def _set_info(key: str, value) -> Callable[[dict], None]:
    def apply(info: dict) -> None:
        *parents, last = key.split(".")
        target = info
        for part in parents:
            target = target[part]
        target[last] = value
    return apply


MODEL = f"checkpoints/{STEP}/model.safetensors"
INFO = f"checkpoints/{STEP}/checkpoint.json"
LATEST = "checkpoints/latest.json"

#: (id, damage, file named in the error, words of the error) -- loaded with load_policy.
def _training_only(key: str, std: float = 1.0) -> dict:
    """A ``training_only`` section for one 2-number key."""
    return {"obs_keys": [key], "obs_spec": {key: {"shape": [2], "dtype": "float32"}},
            "normalizers": {key: {"mean": [0.0, 0.0], "std": [std, 1.0]}}}


LOAD_CORPUS = [
    ("model-missing", remove(MODEL), MODEL, "missing"),
    ("model-empty", truncate("model.safetensors", 0), MODEL, "truncated before the 8-byte header length"),
    ("model-4-bytes", truncate("model.safetensors", 4), MODEL, "truncated"),
    ("model-in-header", truncate("model.safetensors", 40), MODEL, "exceeds the file"),
    ("model-half", truncate("model.safetensors", 0.6), MODEL, "truncated"),
    ("model-one-byte-short", truncate("model.safetensors", -1), MODEL, "data bytes"),
    ("header-length-huge", huge_header_length, MODEL, "exceeds the file"),
    ("header-garbage", garbage_header, MODEL, "unreadable JSON"),
    ("header-not-object", lambda run: write_raw(ckpt_of(run) / "model.safetensors", b"[1, 2]", b""), MODEL, "expected a JSON object"),
    ("header-duplicate-key", duplicate_key_header, MODEL, "appears twice"),
    ("header-offsets-past-end", edit_header("model.safetensors", _set("data_offsets", [0, 10**12])), MODEL, "outside"),
    ("header-offsets-negative", edit_header("model.safetensors", _set("data_offsets", [-4, 0])), MODEL, "data_offsets"),
    ("header-offsets-overlap", edit_header("model.safetensors", overlapping_offsets), MODEL, "overlap"),
    ("header-shape-not-list", edit_header("model.safetensors", _set("shape", "8x2")), MODEL, "shape"),
    ("header-shape-bool", edit_header("model.safetensors", _set("shape", [True, 2])), MODEL, "shape"),
    ("header-shape-bytes-mismatch", edit_header("model.safetensors", _set("shape", [10**9, 10**9])), MODEL, "needs"),
    ("header-dtype-unknown", edit_header("model.safetensors", _set("dtype", "X9")), MODEL, "unsupported dtype"),
    ("header-extra-field", edit_header("model.safetensors", _set("code", "__import__('os')")), MODEL, "exactly dtype"),
    ("tensor-dtype-mismatch", edit_header("model.safetensors", _retype_first), MODEL, "dtype F64"),
    ("tensor-shape-mismatch", edit_header("model.safetensors", _reshape_first), MODEL, "the algorithm's network has"),
    ("tensor-missing", edit_header("model.safetensors", _drop_tensor), MODEL, "tensor missing"),
    ("tensor-unexpected", edit_header("model.safetensors", _add_tensor), MODEL, "extra.weight"),
    ("tensor-nan", edit_header("model.safetensors", _nan_weight), MODEL, "NaN"),
    ("info-missing", remove(INFO), INFO, "missing"),
    ("info-empty", write_file(INFO, ""), INFO, "empty file"),
    ("info-truncated", truncate("checkpoint.json", 0.5), INFO, "unreadable JSON"),
    ("info-binary", write_file(INFO, b"\x80\x81\x82"), INFO, "unreadable JSON"),
    ("info-not-object", write_file(INFO, "[1, 2, 3]"), INFO, "expected a JSON object"),
    ("info-format", edit_info(_set_info("format", "pickle-1")), INFO, "format"),
    ("info-algo-unknown", edit_info(_set_info("algo", "gpt")), INFO, "unknown algorithm"),
    ("info-algo-config-bad-key", edit_info(_set_info("algo_config.no_such_key", 1)), INFO, "no_such_key"),
    ("info-algo-config-huge", edit_info(_set_info("algo_config.hidden", [10**9, 10**9])), MODEL, "the algorithm's network has"),
    ("info-obs-dim-bool", edit_info(_set_info("obs_dim", True)), INFO, "obs_dim"),
    ("info-obs-dim-huge", edit_info(_set_info("obs_dim", 10**12)), INFO, "obs_dim"),
    ("info-action-dim-zero", edit_info(_set_info("action_dim", 0)), INFO, "action_dim"),
    ("info-obs-keys-missing", edit_info(lambda info: info.pop("obs_keys")), INFO, "obs_keys"),
    ("info-obs-keys-dup", edit_info(_set_info("obs_keys", ["pos", "pos"])), INFO, "obs_keys"),
    ("info-normalizers-missing", edit_info(lambda info: info.pop("normalizers")), INFO, "normalizers"),
    ("info-normalizers-other-key", edit_info(_set_info("normalizers", {"vel": {"mean": [0.0], "std": [1.0]}})), INFO, "normalizers"),
    ("info-normalizer-short", edit_info(_set_info("normalizers.pos.mean", [0.0])), INFO, "normalizers.pos.mean"),
    ("info-normalizer-nan", edit_info(_set_info("normalizers.pos.std", [float("nan"), 1.0])), INFO, "normalizers.pos.std"),
    ("info-normalizer-zero-std", edit_info(_set_info("normalizers.pos.std", [0.0, 1.0])), INFO, "normalizers.pos.std"),
    ("info-normalizer-string", edit_info(_set_info("normalizers.pos.mean", ["0", "1"])), INFO, "normalizers.pos.mean"),
    ("info-obs-spec-missing", edit_info(lambda info: info.pop("obs_spec")), INFO, "obs_spec"),
    ("info-obs-spec-other-key", edit_info(_set_info("obs_spec", {"vel": {"shape": [2], "dtype": "float32"}})), INFO, "obs_spec"),
    ("info-obs-spec-width", edit_info(_set_info("obs_spec.pos.shape", [3])), INFO, "normalizers.pos.mean"),
    ("info-obs-spec-bad-shape", edit_info(_set_info("obs_spec.pos.shape", "2")), INFO, "obs_spec.pos.shape"),
    ("info-obs-spec-bad-dtype", edit_info(_set_info("obs_spec.pos.dtype", "object")), INFO, "obs_spec.pos.dtype"),
    ("info-obs-spec-extra-field", edit_info(_set_info("obs_spec.pos.code", "x")), INFO, "obs_spec.pos"),
    ("info-obs-spec-image", edit_info(lambda info: info.update(obs_spec={"pos": {"shape": [8, 8, 3], "dtype": "uint8"}},
                                                               normalizers={})), INFO, "the observation spec encodes to"),
    ("info-training-only-list", edit_info(_set_info("training_only", [1])), INFO, "training_only"),
    ("info-training-only-input", edit_info(lambda info: info.update(training_only=_training_only("pos"))), INFO,
     "training_only.obs_keys"),
    ("info-training-only-nan", edit_info(lambda info: info.update(training_only=_training_only("vel", std=float("nan")))), INFO,
     "training_only.normalizers.vel.std"),
    ("info-training-only-image", edit_info(lambda info: info.update(training_only={
        "obs_keys": ["cam"], "obs_spec": {"cam": {"shape": [8, 8, 3], "dtype": "uint8"}}, "normalizers": {}})), INFO,
     "training_only.obs_spec.cam"),
    ("info-training-only-unread", edit_info(lambda info: info.update(training_only=_training_only("vel"))), INFO,
     "the checkpoint describes ['vel']"),
    ("info-step-negative", edit_info(_set_info("step", -1)), INFO, "step"),
    ("info-meta-list", edit_info(_set_info("meta", [])), INFO, "meta"),
    ("latest-invalid-json", write_file(LATEST, "{\"name\": "), LATEST, "unreadable JSON"),
    ("latest-empty", write_file(LATEST, ""), LATEST, "empty file"),
    ("latest-list", write_file(LATEST, "[\"step_0000003\"]"), LATEST, "expected a JSON object"),
    ("latest-name-int", write_file(LATEST, "{\"name\": 3}"), LATEST, "name"),
    ("latest-name-missing", write_file(LATEST, "{\"step\": 3}"), LATEST, "name"),
    ("latest-parent", write_file(LATEST, "{\"name\": \"..\"}"), LATEST, "name"),
    ("latest-escape", write_file(LATEST, "{\"name\": \"../../../etc\"}"), LATEST, "name"),
    ("latest-absolute", write_file(LATEST, "{\"name\": \"/etc\"}"), LATEST, "name"),
    ("latest-missing-step", write_file(LATEST, "{\"name\": \"step_0000099\"}"), LATEST, "does not exist"),
    ("latest-huge", write_file(LATEST, b" " * (64 * 1024 * 1024 + 1)), LATEST, "more than"),
]


@pytest.mark.parametrize("damage,named,words", [c[1:] for c in LOAD_CORPUS], ids=[c[0] for c in LOAD_CORPUS])
def test_damaged_checkpoint_is_refused_naming_the_file(run, damage, named, words):
    damage(run)
    with pytest.raises(CheckpointError) as info:
        load_policy(run)
    err = info.value
    assert err.source == str(run / named), err
    assert words in str(err)
    line, code = error_line("eval", err)
    assert code == 2 and "\n" not in line and str(run / named) in line


def test_latest_symlink_outside_the_run_is_refused(run, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(ckpt_of(run), outside)
    (run / "checkpoints" / "link").symlink_to(outside, target_is_directory=True)
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"name": "link"}))
    with pytest.raises(CheckpointError, match="points outside"):
        load_policy(run)


def test_weights_without_checkpoint_json_name_the_missing_file(run):
    (ckpt_of(run) / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError) as info:
        load_policy(ckpt_of(run))  # the checkpoint folder itself, not the run
    assert info.value.source == str(ckpt_of(run) / "checkpoint.json")


def test_undamaged_checkpoint_loads_and_resumes(run):
    policy = load_policy(run)
    assert policy.act({"pos": np.zeros(2, np.float32)}).shape == (2,)
    algo, info, ckpt = load_algo(run)
    assert restore_training_state(algo, ckpt, info, torch.Generator()) == 3


OPTIM = f"checkpoints/{STEP}/optim.safetensors"


def _reshape_optim_state(header: dict, data: bytes) -> tuple[dict, bytes]:
    name = next(k for k in sorted(header) if k.endswith("exp_avg") and len(header[k]["shape"]) == 2)
    assert header[name]["shape"][0] != header[name]["shape"][1]
    header[name]["shape"] = header[name]["shape"][::-1]
    return header, data


def _shrink_rng(header: dict, data: bytes) -> tuple[dict, bytes]:
    entry = header["rng/train"]
    begin, end = entry["data_offsets"]
    entry["shape"], entry["data_offsets"] = [16], [begin, begin + 16]
    tail = {k: v for k, v in header.items() if k != "__metadata__" and v["data_offsets"][0] >= end}
    for v in tail.values():
        v["data_offsets"] = [v["data_offsets"][0] - (end - begin - 16), v["data_offsets"][1] - (end - begin - 16)]
    return header, data[: begin + 16] + data[end:]


#: Damage to what only ``--resume`` reads (restore_training_state).
RESUME_CORPUS = [
    ("optim-missing", remove(OPTIM), OPTIM, "missing"),
    ("optim-truncated", truncate("optim.safetensors", 0.5), OPTIM, "truncated"),
    ("optim-state-shape", edit_header("optim.safetensors", _reshape_optim_state), OPTIM, "its parameter has"),
    ("optim-rng-shape", edit_header("optim.safetensors", _shrink_rng), OPTIM, "rng/train"),
    ("info-optimizers-missing", edit_info(lambda info: info.pop("optimizers")), INFO, "optimizers"),
    ("info-param-groups-bad", edit_info(lambda info: info["optimizers"][next(iter(info["optimizers"]))].update(param_groups=[])),
     INFO, "param_groups"),
]


@pytest.mark.parametrize("damage,named,words", [c[1:] for c in RESUME_CORPUS], ids=[c[0] for c in RESUME_CORPUS])
def test_damaged_training_state_is_refused_naming_the_file(run, damage, named, words):
    damage(run)
    algo, info, ckpt = load_algo(run)
    with pytest.raises(CheckpointError) as err:
        restore_training_state(algo, ckpt, info, torch.Generator())
    assert err.value.source == str(run / named), err.value
    assert words in str(err.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.none() | st.floats(0, 1))
def test_any_byte_damage_to_the_weights_loads_or_is_a_checkpoint_error(good_run, tmp_path_factory, edits, cut):
    """Random byte flips and truncations of model.safetensors: the load either succeeds (the
    damage hit weights, and they are finite) or fails as a CheckpointError; nothing else."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(good_run, run)
    path = ckpt_of(run) / "model.safetensors"
    blob = bytearray(path.read_bytes())
    for where, value in edits:
        blob[int(where * len(blob))] = value
    if cut is not None:
        blob = blob[: int(cut * len(blob))]
    path.write_bytes(bytes(blob))
    try:
        policy = load_policy(run)
    except CheckpointError as exc:
        assert exc.source == str(path) or exc.source.endswith("checkpoint.json")
        return
    assert np.all(np.isfinite(policy.act({"pos": np.zeros(2, np.float32)})))


def test_header_parser_reads_what_save_checkpoint_wrote(good_run):
    entries = read_safetensors_header(ckpt_of(good_run) / "model.safetensors")
    assert entries and all(e.dtype == "F32" for e in entries.values())


def test_full_disk_while_saving_names_the_checkpoint_not_the_staging_folder(good_run, tmp_path):
    """A real ENOSPC: the staging file is a symlink to /dev/full, which refuses every write."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    algo, info, ckpt = load_algo(good_run)
    target = tmp_path / "checkpoints" / "step_0000004"
    staging = target.with_name(f".{target.name}.tmp")
    staging.mkdir(parents=True)
    (staging / "model.safetensors").symlink_to("/dev/full")
    with pytest.raises(OSError) as err:
        save_checkpoint(target, algo, step=4, meta={})
    assert err.value.errno == errno.ENOSPC
    assert err.value.filename == str(target / "model.safetensors")
    assert not staging.exists() and not target.exists() and not (target.parent / "latest.json").exists()
    line, code = error_line("train", err.value)
    assert line == f"robolearn train: error: {target / 'model.safetensors'}: No space left on device" and code == 1


# --- checkpoints of the first format (one flat normaliser, obs_shapes) ---------------------------

def as_first_format(run: Path, shapes: bool = True) -> Path:
    """``run``'s checkpoint.json rewritten as the first format wrote it: a normaliser over the
    flattened observation (keys in order) and ``obs_shapes``; the weights are the same."""
    path = ckpt_of(run) / "checkpoint.json"
    info = json.loads(path.read_text())
    norms = info.pop("normalizers")
    spec = info.pop("obs_spec")
    keys = info["obs_keys"]
    info["format"] = "robolearn-checkpoint-1"
    info["normalizer"] = {part: [v for k in keys for v in norms[k][part]] for part in ("mean", "std")}
    if shapes:
        info["obs_shapes"] = {k: spec[k]["shape"] for k in keys}
    path.write_text(json.dumps(info))
    return run


@pytest.fixture
def v1_run(run) -> Path:
    return as_first_format(run)


def test_first_format_checkpoint_acts_as_the_current_one(run, tmp_path):
    current = load_policy(run)
    old = load_policy(as_first_format(shutil.copytree(run, tmp_path / "v1")))
    assert old.obs_spec == current.obs_spec
    for x in np.linspace(-1, 2, 7):
        obs = {"pos": np.array([x, 0.3 * x], np.float32)}
        np.testing.assert_array_equal(old.act(obs), current.act(obs))


def test_first_format_checkpoint_of_several_keys_without_shapes_is_refused(tmp_path):
    """Without ``obs_shapes`` the flat normaliser cannot be split per key: refused, saying to retrain."""
    run = write_tiny_run(tmp_path / "run", {"task": "synthetic"})
    info_path = ckpt_of(run) / "checkpoint.json"
    info = json.loads(info_path.read_text())
    info["obs_keys"], info["obs_spec"] = ["pos", "vel"], {"pos": {"shape": [1], "dtype": "float32"},
                                                             "vel": {"shape": [1], "dtype": "float32"}}
    mean, std = info["normalizers"]["pos"]["mean"], info["normalizers"]["pos"]["std"]
    info["normalizers"] = {"pos": {"mean": mean[:1], "std": std[:1]}, "vel": {"mean": mean[1:], "std": std[1:]}}
    info_path.write_text(json.dumps(info))
    as_first_format(run, shapes=False)
    with pytest.raises(CheckpointError) as err:
        load_policy(run)
    assert err.value.source == str(info_path) and err.value.field == "obs_shapes" and "retrain" in str(err.value)


#: Damage to a first-format checkpoint.json: what the first format's reader refused stays refused.
V1_CORPUS = [
    ("info-obs-dim-huge", edit_info(_set_info("obs_dim", 10**12)), INFO, "normalizer.mean"),
    ("info-normalizer-missing", edit_info(lambda info: info.pop("normalizer")), INFO, "normalizer"),
    ("info-normalizer-short", edit_info(_set_info("normalizer.mean", [0.0])), INFO, "normalizer.mean"),
    ("info-normalizer-nan", edit_info(_set_info("normalizer.std", [float("nan"), 1.0])), INFO, "normalizer.std"),
    ("info-normalizer-zero-std", edit_info(_set_info("normalizer.std", [0.0, 1.0])), INFO, "normalizer.std"),
    ("info-normalizer-string", edit_info(_set_info("normalizer.mean", ["0", "1"])), INFO, "normalizer.mean"),
    ("info-obs-shapes-width", edit_info(_set_info("obs_shapes.pos", [3])), INFO, "obs_shapes"),
    ("info-obs-shapes-bad", edit_info(_set_info("obs_shapes.pos", "2")), INFO, "obs_shapes.pos"),
    ("info-obs-keys-dup", edit_info(_set_info("obs_keys", ["pos", "pos"])), INFO, "obs_keys"),
]


@pytest.mark.parametrize("damage,named,words", [c[1:] for c in V1_CORPUS], ids=[c[0] for c in V1_CORPUS])
def test_damaged_first_format_checkpoint_is_refused_naming_the_file(v1_run, damage, named, words):
    load_policy(v1_run)  # undamaged, it loads
    damage(v1_run)
    with pytest.raises(CheckpointError) as info:
        load_policy(v1_run)
    err = info.value
    assert err.source == str(v1_run / named), err
    assert words in str(err)
