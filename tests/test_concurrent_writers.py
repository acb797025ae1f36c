"""Several writers of one demo folder: real processes and threads, nothing lost or duplicated.

Every outcome is allowed to be "the second writer was refused" (the folder is locked for a
writer's whole session) but never "fewer episodes than the successful writers wrote".
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoReader, DemoWriter, ObsFieldSpec

REPO = Path(__file__).resolve().parents[1]


def meta(**kw) -> DemoMeta:
    return DemoMeta(task="graph_reach", control_hz=10.0, obs_spec={"pos": ObsFieldSpec((2,))}, action_spec=ActionSpec(dim=2), **kw)


def write_marked(writer: DemoWriter, mark: int, T: int = 3) -> Path:
    """An episode whose every action is ``mark / 1e4``: which write it came from stays readable."""
    return writer.write_episode(obs={"pos": np.zeros((T + 1, 2))}, actions=np.full((T, 2), mark / 1e4), success=True)


def marks(folder) -> list[int]:
    return sorted(int(round(float(ep.actions[0, 0]) * 1e4)) for ep in DemoReader(folder))


def marked_folder(path, marks_: range) -> Path:
    with DemoWriter(path, meta()) as w:
        for m in marks_:
            write_marked(w, m)
    return path


def robolearn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robolearn", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MUJOCO_GL": "osmesa"})


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process, once all have ended."""
    outputs = [p.communicate(timeout=120) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def assert_refused(rc: int, err: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "is being written by pid" in lines[0]


# ---------------------------------------------------------------- collect
def test_two_collects_at_once_keep_every_episode_or_refuse_one(tmp_path):
    out = tmp_path / "same"
    args = ("collect", "graph_reach", "--operator", "suboptimal", "--episodes", "25", "--out", str(out), "--no-progress")
    results = finish([robolearn(*args), robolearn(*args)])
    ok = [r for r in results if r[0] == 0]
    for rc, _, err in results:
        if rc != 0:
            assert_refused(rc, err)
    assert ok, results
    assert all("25 episodes kept" in o for _, o, _ in ok)
    reader = DemoReader(out)
    assert reader.indices == list(range(25 * len(ok)))
    # distinct episodes: the second collect continued the seed sequence instead of repeating it
    seeds = [int(ep.extra["reset_seed"]) for ep in reader]
    assert len(set(seeds)) == len(seeds)


def test_collect_into_a_folder_another_process_writes_is_refused_before_any_rollout(tmp_path):
    out = tmp_path / "busy"
    with DemoWriter(out, meta(extra={"env": {}})) as w:
        write_marked(w, 1)
        rc, stdout, err = finish([robolearn("collect", "graph_reach", "--operator", "suboptimal", "--episodes", "5",
                                            "--out", str(out), "--no-progress")])[0]
        assert_refused(rc, err)
        assert f"pid {os.getpid()}" in err and str(out) in err
    assert marks(out) == [1]


# ---------------------------------------------------------------- merge
def test_two_merges_at_once_copy_every_episode_exactly_once(tmp_path):
    a = marked_folder(tmp_path / "a", range(0, 30))
    b = marked_folder(tmp_path / "b", range(100, 130))
    out = tmp_path / "out"
    results = finish([robolearn("merge", str(out), str(a), str(b), "--quiet"),
                      robolearn("merge", str(out), str(b), str(a), "--quiet")])
    for rc, _, err in results:
        if rc != 0:
            assert_refused(rc, err)
    assert any(rc == 0 for rc, _, _ in results)
    assert marks(out) == list(range(0, 30)) + list(range(100, 130))
    assert DemoReader(out).indices == list(range(60))


def test_merge_of_one_source_under_several_spellings_copies_it_once(tmp_path, monkeypatch, capsys):
    a = marked_folder(tmp_path / "a", range(5))
    (tmp_path / "link").symlink_to(a)
    monkeypatch.chdir(tmp_path)
    assert main(["merge", "out", "a", "a", "./a/", str(tmp_path / "link"), "--quiet"]) == 0
    assert marks(tmp_path / "out") == list(range(5))
    # and again later: everything is already in out's merged_from
    assert main(["merge", "out", "link", "--quiet"]) == 0
    assert "none (all already in out)" in capsys.readouterr().out
    assert marks(tmp_path / "out") == list(range(5))
    # a source that grew contributes only its new episodes
    with DemoWriter(a, meta()) as w:
        write_marked(w, 5)
    assert main(["merge", "out", "a", "--quiet"]) == 0
    assert marks(tmp_path / "out") == list(range(6))
    entries = json.loads((tmp_path / "out" / "meta.json").read_text())["extra"]["merged_from"]
    assert [e["source_indices"] for e in entries] == [[0, 1, 2, 3, 4], [5]]


# ---------------------------------------------------------------- many writers
def test_threads_sharing_one_writer_each_land_exactly_once(tmp_path):
    w = DemoWriter(tmp_path / "d", meta())
    errors: list[BaseException] = []

    def run(base: int) -> None:
        try:
            for k in range(10):
                write_marked(w, base + k)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(100 * t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    assert not errors
    assert marks(tmp_path / "d") == sorted(100 * t + k for t in range(6) for k in range(10))
    assert DemoReader(tmp_path / "d").indices == list(range(60))


def _process_writer(folder: str, base: int) -> int:
    """Waits its turn (refusals are retried), then writes 10 marked episodes; returns how often it was refused."""
    import time

    refused = 0
    while True:
        try:
            writer = DemoWriter(folder, meta())
            break
        except DemoFormatError as exc:
            assert exc.field == "<lock>", exc
            refused += 1
            time.sleep(0.01)
    with writer:
        for k in range(10):
            write_marked(writer, base + k)
    return refused


def test_processes_writing_one_folder_each_land_exactly_once(tmp_path):
    folder = tmp_path / "d"
    marked_folder(folder, range(0))  # meta.json only
    with mp.get_context("fork").Pool(4) as pool:
        pool.starmap(_process_writer, [(str(folder), 100 * p) for p in range(4)])
    assert marks(folder) == sorted(100 * p + k for p in range(4) for k in range(10))
    assert DemoReader(folder).indices == list(range(40))


def test_an_index_taken_behind_the_writers_back_is_never_overwritten(tmp_path):
    w = DemoWriter(tmp_path / "d", meta())
    first = write_marked(w, 1)
    # A writer that ignores the lock (an older robolearn, a copy by hand) puts episode 1 there.
    foreign = first.with_name("episode_000001.npz")
    foreign.write_bytes(first.read_bytes())
    assert write_marked(w, 2).name == "episode_000002.npz"
    assert foreign.read_bytes() == first.read_bytes()
    assert marks(tmp_path / "d") == [1, 1, 2]


# ---------------------------------------------------------------- appending other settings
def test_appending_with_other_settings_records_them_per_episode(tmp_path):
    out = tmp_path / "demos"
    base = ["collect", "graph_reach", "--episodes", "3", "--out", str(out), "--no-progress"]
    assert main([*base, "--operator", "suboptimal", "--seed", "7"]) == 0
    assert main([*base, "--operator", "suboptimal", "--seed", "7"]) == 0  # same settings: nothing to record
    assert "appends" not in json.loads((out / "meta.json").read_text())["extra"]
    assert main([*base, "--operator", "proficient", "--seed", "8"]) == 0
    m = json.loads((out / "meta.json").read_text())
    assert m["source"] == "scripted:suboptimal" and m["extra"]["operator"] == "suboptimal"
    assert m["extra"]["appends"] == [{"source": "scripted:proficient", "extra": {"operator": "proficient", "seed": 8},
                                      "episodes": [6, 7, 8]}]
    assert len(DemoReader(out)) == 9


# ---------------------------------------------------------------- train --out
def test_train_refuses_an_out_folder_that_is_not_a_run_folder(tmp_path, capsys):
    demos = marked_folder(tmp_path / "demos", range(2))
    before = {p: p.read_bytes() for p in demos.rglob("*") if p.is_file()}
    launch = str(REPO / "launch" / "graph_reach_bc.yaml")
    assert main(["train", launch, "--out", str(demos), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a run folder" in err[0] and str(demos) in err[0]
    assert {p: p.read_bytes() for p in demos.rglob("*") if p.is_file()} == before
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", launch, "--out", str(tmp_path / "notes.txt"), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_run_folder_check_accepts_new_empty_and_run_folders(tmp_path):
    from robolearn.config import ConfigError
    from robolearn.train import check_run_folder

    check_run_folder(tmp_path / "new", resume=False)
    (tmp_path / "empty").mkdir()
    check_run_folder(tmp_path / "empty", resume=False)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "launch.json").write_text("{}")
    check_run_folder(run, resume=False)
    (run / "checkpoints" / "latest.json").write_text("{}")
    check_run_folder(run, resume=True)
    with pytest.raises(ConfigError, match="--resume"):
        check_run_folder(run, resume=False)


# ---------------------------------------------------------------- staging names the user's paths
def test_errors_inside_a_staged_folder_name_the_output_not_the_hidden_folder(tmp_path):
    from robolearn.data.staging import staged_dir, staged_file

    dst = tmp_path / "converted"
    with pytest.raises(DemoFormatError) as info:
        with staged_dir(dst) as tmp:
            DemoWriter(tmp, meta()).write_episode(obs={"pos": np.zeros((3, 2))}, actions=np.full((2, 2), np.nan))
    assert ".partial" not in str(info.value) and info.value.path.startswith(str(dst))
    assert "episode_000000.npz" in info.value.path
    with pytest.raises(OSError) as info:
        with staged_dir(dst) as tmp:
            open(tmp / "missing" / "x", "rb")
    assert ".partial" not in str(info.value) and str(dst / "missing" / "x") in str(info.value)
    with pytest.raises(DemoFormatError, match="created by another process"):
        with staged_file(tmp_path / "out.hdf5") as tmp:
            tmp.write_bytes(b"new")
            (tmp_path / "out.hdf5").write_bytes(b"someone else's")
    assert (tmp_path / "out.hdf5").read_bytes() == b"someone else's"
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_a_lock_released_after_module_teardown_still_drops_its_flock(tmp_path, monkeypatch):
    # At interpreter exit module globals are cleared before a leftover lock's __del__ runs;
    # the release must neither raise nor leave the folder locked.
    from robolearn.data import lock as lock_module

    held = lock_module.FolderLock(tmp_path)
    monkeypatch.setattr(lock_module, "_HELD_GUARD", None)
    monkeypatch.setattr(lock_module, "_HELD", None)
    held.release()
    monkeypatch.undo()
    lock_module.FolderLock(tmp_path).release()  # taken again: the flock was dropped
    probe = subprocess.run([sys.executable, "-c", "import sys; from robolearn.data.lock import FolderLock; "
                            "FolderLock(sys.argv[1]).release()", str(tmp_path)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


def test_a_refused_lock_is_refused_quietly(tmp_path):
    # The refusal is the one-line error; the half-made lock object must not add a traceback
    # ("Exception ignored in __del__") when it is collected.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from robolearn.data.lock import FolderLock; "
                               "l = FolderLock(sys.argv[1]); print('held', flush=True); time.sleep(30)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = subprocess.run([sys.executable, "-c", "import gc, sys\nfrom robolearn.data.lock import FolderLock\n"
                                "try:\n    FolderLock(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
                                "gc.collect()", str(tmp_path)], capture_output=True, text=True)
        assert probe.stdout.strip() == "DemoFormatError" and probe.stderr == "", probe.stderr
    finally:
        holder.kill()
        holder.wait()
