"""`--ray`: episodes on a local Ray instance give exactly what local workers give (eval's
per-episode results, collect's demo folder, episode for episode), through the real CLI and a
second driver process that connects to the instance; failures are one line naming the episode."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.config import ConfigError
from robolearn.data.format import DemoReader
from robolearn.errors import error_line

ray = pytest.importorskip("ray", reason="Ray is the distributed extra: pip install 'robolearn[distributed]'")

from robolearn.runtime.ray_pool import RayBackend  # noqa: E402 - only with Ray installed
from robolearn.runtime.workers import run_jobs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def collect_args(out: Path, *extra: str) -> list[str]:
    return ["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "6", "--seed", "7", "--out", str(out),
            *extra]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Before the module's Ray instance starts: these need no cluster (a process with a Ray connection
# would use it whatever the address).
def test_a_bad_address_or_missing_ray_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    assert not ray.is_initialized()
    out = tmp_path / "demos"
    assert main(collect_args(out, "--no-progress", "--ray", f"127.0.0.1:{closed_port()}")) == 2
    err = capsys.readouterr().err
    assert "--ray: field 'ray': no Ray cluster answers at 127.0.0.1:" in err and err.count("\n") == 1
    assert not out.exists()
    with pytest.raises(ConfigError, match="expected 'auto' or a cluster address"):
        RayBackend("two words")
    with pytest.raises(ConfigError, match="expected a port number"):
        RayBackend("localhost:http")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(collect_args(out, "--no-progress", "--ray", "auto")) == 2
    assert "needs Ray, which is not installed here: pip install 'robolearn[distributed]'" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray instance (2 CPUs, no dashboard, a small object store); its address."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "demos"
    assert main(collect_args(out, "--no-progress", "--workers", "1")) == 0
    return out


def folder_contents(folder: Path) -> dict:
    """Every array of every episode file, by file and member name, and the meta."""
    contents: dict = {"meta": json.loads((folder / "meta.json").read_text())}
    for path in sorted((folder / "episodes").iterdir()):
        with np.load(path, allow_pickle=False) as z:
            contents[path.name] = {k: z[k] for k in z.files}
    return contents


def assert_same_folders(a: Path, b: Path) -> None:
    x, y = folder_contents(a), folder_contents(b)
    assert x["meta"] == y["meta"] and x.keys() == y.keys()
    for name in x.keys() - {"meta"}:
        assert x[name].keys() == y[name].keys(), name
        for k in x[name]:
            np.testing.assert_array_equal(x[name][k], y[name][k], err_msg=f"{name}: {k}")


def test_collect_on_ray_writes_the_folder_local_workers_write(cluster, local_demos, tmp_path):
    """A second driver process, the real CLI, ``--ray auto`` finding the cluster through RAY_ADDRESS."""
    out = tmp_path / "ray"
    env = {**os.environ, "RAY_ADDRESS": cluster, "MUJOCO_GL": "osmesa"}
    done = subprocess.run([sys.executable, "-m", "robolearn", *collect_args(out, "--ray", "auto", "--workers", "2")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"ray: connected to the Ray cluster at {cluster} (2 CPUs)" in done.stderr
    assert "6 episodes kept of 6" in done.stdout
    assert len(list((out / "episodes").iterdir())) == 6
    assert_same_folders(local_demos, out)


def trained_policy(demos: Path, out: Path) -> Path:
    """An HBC policy (goal sampling, so the actor's seed matters) trained a few dozen steps."""
    import torch

    from robolearn.algos.base import algo_class
    from robolearn.data.dataset import DemoDataset
    from robolearn.policy import save_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a busy 2-core machine are many times slower than one
    try:
        torch.manual_seed(0)
        data = DemoDataset(list(DemoReader(demos)), ["pos"])
        algo = algo_class("hbc").build({"subgoal_horizon": 5, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1,
                                        "batch_size": 16}, data.obs_spec, data.normalizers, data.action_dim)
        gen = torch.Generator().manual_seed(0)
        for _ in range(30):
            algo.train_step(data, gen)
        save_checkpoint(out, algo, step=30, meta={"task": "graph_reach"})
    finally:
        torch.set_num_threads(threads)
    return out


def test_eval_on_ray_gives_the_episodes_one_local_worker_gives(cluster, local_demos, tmp_path, capsys):
    ckpt = trained_policy(local_demos, tmp_path / "ckpt")
    runs = {}
    for name, extra in (("local", ["--workers", "1"]), ("ray", ["--workers", "2", "--ray", cluster])):
        json_out = tmp_path / f"{name}.json"
        assert main(["eval", str(ckpt), "--episodes", "4", "--seed", "3", "--horizon", "60", "--json", str(json_out),
                     *extra]) == 0
        runs[name] = json.loads(json_out.read_text())
    assert "ray: using this process's Ray connection (2 CPUs)" in capsys.readouterr().err
    local, remote = runs["local"], runs["ray"]
    assert local["per_episode"] == remote["per_episode"] and len(remote["per_episode"]) == 4
    assert [e["index"] for e in remote["per_episode"]] == [0, 1, 2, 3]
    assert len({e["seed"] for e in remote["per_episode"]}) == 4
    for key in ("success_rate", "mean_length", "mean_return"):
        assert local[key] == remote[key]
    assert remote["ray"] == cluster and remote["workers"] == 2 and "ray" not in local
    # The plots beside the JSONs draw every episode's observed path: the same paths, the same bytes.
    assert (tmp_path / "local.png").read_bytes() == (tmp_path / "ray.png").read_bytes()


def _init_offset(offset: int) -> dict:
    if offset < 0:
        raise ConfigError("offset", "offset", f"expected a non-negative offset, got {offset}")
    return {"offset": offset}


def _square(state: dict, job: int) -> int:
    if job == 13:
        raise ConfigError("job", "job", "13 is refused")
    return job * job + state["offset"]


def test_results_come_in_job_order_and_a_remote_failure_names_its_episode(cluster):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import tests/
    jobs = [9, 2, 7, 0, 5, 1, 8]  # more jobs than the actors hold ahead, out of numeric order
    assert list(run_jobs(jobs, 2, _init_offset, _square, init_args=(1,), backend=RayBackend(cluster))) == \
        [j * j + 1 for j in jobs]
    for jobs, offset, name, message in (([12, 13, 14], 0, "episode 13", "13 is refused"),
                                        ([4], -1, "episode 4", "non-negative offset")):
        with pytest.raises(Exception) as caught:
            list(run_jobs(jobs, 1, _init_offset, _square, init_args=(offset,), backend=RayBackend(cluster)))
        line, code = error_line("collect", caught.value)
        assert line.startswith(f"robolearn collect: error: {name}: ") and message in line
        assert "\n" not in line and code == 2
    with pytest.raises(ConfigError, match="3 Ray actors need a CPU each; the cluster has 2"):
        list(run_jobs([1], 3, _init_offset, _square, init_args=(0,), backend=RayBackend(cluster)))
