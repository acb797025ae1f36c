"""Where training runs: ``train.device`` (auto | cpu | cuda[:N] | mps), ``train.amp`` (CUDA only),
``train.threads`` (default: the available cores), and checkpoints that load on any device.

Tests that need CUDA are marked ``needs_cuda`` and skipped without a GPU; on a machine with
one they train on it and check the CPU sees the same policy. On the CPU, the ``meta`` device
(tensors with shapes and no data) stands in for a GPU where placement is the question: a
sampler that mixed CPU tensors into a batch on another device would fail there as on CUDA.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import collect_graph_reach
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robolearn.algos.base import algo_class, algo_names
from robolearn.cli import main
from robolearn.config import ConfigError
from robolearn.data.dataset import DemoDataset
from robolearn.data.format import load_folder
from robolearn.distributed import Ranks, resolve_device, training_threads
from robolearn.launch import TrainConfig, load_launch
from robolearn.models.encoders import ObsKey, unit_normalizers
from robolearn.paths import LAUNCH_DIR
from robolearn.policy import load_policy
from test_image_policies import PARAMS, SIZE, TINY_IMAGE  # small algorithms over an image key
from test_pipeline import TINY  # the same tiny networks as the pipeline tests

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return collect_graph_reach(tmp_path_factory, episodes=4)


def train_argv(algo: str, demos: Path, run: Path, *sets: str, steps: int = 6) -> list[str]:
    sets = (f"data.path={demos}", f"train.steps={steps}", "train.checkpoint_every=3", "train.log_every=3") + tuple(TINY[algo]) + sets
    return ["train", str(LAUNCH_DIR / f"graph_reach_{algo}.yaml"), "--out", str(run), "--seed", "0", "--quiet"] + [
        x for s in sets for x in ("--set", s)]


def summary(run: Path) -> dict:
    return json.loads((run / "train_summary.json").read_text())


def weights(run: Path, step: int = 6) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- devices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_and_auto_train_here(device, demos, tmp_path):
    """``auto`` with the default thread count: the summary records the threads it used."""
    run = tmp_path / device
    sets = ("train.device=cpu", "train.threads=1") if device == "cpu" else ()
    assert main(train_argv("bc_rnn", demos, run, *sets, steps=3)) == 0
    expected = "cuda:0" if device == "auto" and torch.cuda.is_available() else "cpu"
    assert summary(run)["device"] == expected
    assert summary(run)["threads"] == (1 if device == "cpu" else training_threads(TrainConfig(), Ranks()))
    assert all(t.device.type == "cpu" for t in weights(run, step=3).values())
    assert load_policy(run).device.type == "cpu"


@pytest.mark.parametrize("value, words", [
    ("cuda:x", "expected auto, cpu, cuda, cuda:N or mps; got 'cuda:x'"),
    ("tpu", "expected auto, cpu, cuda, cuda:N or mps; got 'tpu'"),
    ("cpu:0", "got 'cpu:0'"),
    ("true", "expected str, got True"),
    ("3", "expected str, got 3"),
])
def test_bad_devices_are_refused_on_one_line(value, words, demos, tmp_path, capsys):
    assert main(train_argv("bc_rnn", demos, tmp_path / "run", f"train.device={value}")) == 2
    line = one_error_line(capsys)
    assert "field 'train.device'" in line and words in line, line
    assert not (tmp_path / "run").exists()


def test_load_launch_checks_the_device_spelling():
    with pytest.raises(ConfigError) as err:
        load_launch(LAUNCH_DIR / "graph_reach_bc_rnn.yaml", ["train.device=cuda:-1"])
    assert err.value.field == "train.device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused(value, demos, tmp_path, capsys):
    assert main(train_argv("bc_rnn", demos, tmp_path / "run", f"train.device={value}")) == 2
    line = one_error_line(capsys)
    assert "field 'train.device'" in line and "torch sees no CUDA device" in line, line


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="an Apple GPU is present")
def test_mps_without_one_is_refused():
    with pytest.raises(ConfigError) as err:
        resolve_device(TrainConfig(device="mps"), "launch.yaml")
    assert err.value.field == "train.device" and "MPS" in err.value.problem


@pytest.mark.parametrize("device", ["cpu"] + (["mps"] if torch.backends.mps.is_available() else []))
def test_mixed_precision_off_cuda_is_refused(device, demos, tmp_path, capsys):
    """Refused rather than ignored: a launch file asking for mixed precision would otherwise train
    in float32 and report nothing."""
    assert main(train_argv("bc_rnn", demos, tmp_path / "run", f"train.device={device}", "train.amp=true")) == 2
    line = one_error_line(capsys)
    assert "field 'train.amp'" in line and "CUDA only" in line, line


def test_amp_dtype_is_one_of_the_two():
    with pytest.raises(ConfigError) as err:
        load_launch(LAUNCH_DIR / "graph_reach_bc_rnn.yaml", ["train.amp_dtype=float8"])
    assert err.value.field == "train.amp_dtype" and "bfloat16" in err.value.problem


def test_the_dataset_moves_with_every_tensor_its_samplers_touch(demos):
    """On ``meta``, any CPU tensor left behind (an index range, a lookup table) fails the gather,
    as it would on a GPU; batches come out on the dataset's device."""
    data = DemoDataset(load_folder(demos)[1], ["pos"])
    bounds = data.return_bounds(0.99)
    data.discounted_returns(0.99)  # cached before the move (meta tensors hold no data to compute them from)
    data.to("meta")
    assert data.device.type == "meta" and data.discounted_returns(0.99).device.type == "meta"
    gen = torch.Generator().manual_seed(0)
    batches = [data.transitions(4, gen, gamma=0.99), data.sequences(4, 3, gen), data.goal_windows(4, 3, gen),
               data.goal_pairs(4, 3, gen)]
    for batch in batches:
        for value in batch.values():
            for t in (value.values() if isinstance(value, dict) else [value]):
                assert t.device.type == "meta"
    assert data.return_bounds(0.99) == bounds


@pytest.mark.parametrize("name", algo_names())
def test_every_tensor_an_algorithm_holds_moves_with_it(name):
    """Parameters and buffers (the encoders' normalisers and keypoint grids included) follow
    ``.to(device)``; a tensor kept as a plain attribute would stay behind on the CPU."""
    spec = {"pos": ObsKey((2,)), "cam": ObsKey((SIZE, SIZE, 3), "uint8")}
    algo = algo_class(name).build({**PARAMS[name], "image_encoder": TINY_IMAGE}, spec, unit_normalizers(spec), 2)
    algo.to("meta")
    for where, module in algo.named_modules():
        for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            assert t.is_meta, where
        assert not [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)], where


# --- threads -----------------------------------------------------------------------------------

def test_threads_default_to_the_available_cores_shared_between_local_ranks():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert TrainConfig().threads is None
    assert training_threads(TrainConfig(), Ranks()) == cores
    assert training_threads(TrainConfig(), Ranks(1, 2, 1, 2)) == max(1, cores // 2)
    assert training_threads(TrainConfig(), Ranks(0, 4 * cores, 0, 4 * cores)) == 1
    assert training_threads(TrainConfig(threads=3), Ranks(0, 2, 0, 2)) == 3


def test_the_same_seed_and_thread_count_give_the_same_weights(demos, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert main(train_argv("iris", demos, run, "train.threads=1", steps=3)) == 0
        assert summary(run)["threads"] == 1
    a, b = weights(runs[0], step=3), weights(runs[1], step=3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- CUDA (skipped without a GPU) --------------------------------------------------------------

def observation(demos: Path) -> dict[str, np.ndarray]:
    episode = load_folder(demos)[1][0]
    return {k: v[3] for k, v in episode.obs.items()}


@needs_cuda
@pytest.mark.parametrize("algo", sorted(TINY))
def test_a_run_trained_on_cuda_loads_on_the_cpu_and_acts_alike(algo, demos, tmp_path):
    run = tmp_path / "run"
    assert main(train_argv(algo, demos, run, "train.device=cuda")) == 0
    assert summary(run)["device"] == "cuda:0"
    assert all(t.device.type == "cpu" for t in weights(run).values())  # saved in CPU layout
    on_gpu, on_cpu = load_policy(run, device="cuda"), load_policy(run, device="cpu")
    assert on_gpu.device.type == "cuda" and on_cpu.device.type == "cpu"
    obs = observation(demos)
    on_gpu.reset(seed=1)
    on_cpu.reset(seed=1)
    # Full float32 on the GPU (cuDNN's LSTM may use TF32, which rounds to ~1e-3): the two devices
    # then differ by float32 rounding alone, far below the tolerance.
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        for _ in range(3):
            np.testing.assert_allclose(on_gpu.act(obs), on_cpu.act(obs), atol=1e-4)


@needs_cuda
def test_the_dataset_and_its_batches_live_on_cuda(demos):
    data = DemoDataset(load_folder(demos)[1], ["pos"]).to("cuda")
    batch = data.goal_windows(8, 3, torch.Generator().manual_seed(0))
    assert batch["obs"]["pos"].is_cuda and batch["mask"].is_cuda and batch["goal"]["pos"].is_cuda
    cpu = DemoDataset(load_folder(demos)[1], ["pos"]).goal_windows(8, 3, torch.Generator().manual_seed(0))
    assert torch.equal(batch["obs"]["pos"].cpu(), cpu["obs"]["pos"])  # the same draw on either device


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_trains_on_cuda_and_resumes(dtype, demos, tmp_path):
    run = tmp_path / "run"
    amp = ("train.device=cuda", "train.amp=true", f"train.amp_dtype={dtype}")
    assert main(train_argv("iris", demos, run, *amp, steps=3)) == 0
    assert main(train_argv("iris", demos, run, *amp) + ["--resume"]) == 0
    assert summary(run)["resumed_from"] == 3
    assert all(torch.isfinite(t).all() for t in weights(run).values())
    state = load_file(str(run / "checkpoints" / "step_0000006" / "optim.safetensors"))
    assert any(k.startswith("amp/") for k in state) == (dtype == "float16")  # float16's loss scales resume


@needs_cuda
def test_a_cuda_checkpoint_resumes_on_the_cpu(demos, tmp_path):
    run = tmp_path / "run"
    assert main(train_argv("bc_rnn", demos, run, "train.device=cuda", steps=3)) == 0
    assert main(train_argv("bc_rnn", demos, run, "train.device=cpu") + ["--resume"]) == 0
    assert summary(run)["device"] == "cpu" and summary(run)["resumed_from"] == 3
