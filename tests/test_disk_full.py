"""A full disk while writing a demo folder: one-line error, the partial episode gone, every
earlier episode and meta.json intact.

The disk is a real small filesystem: a 512 KiB tmpfs mounted for the test (needs root or
CAP_SYS_ADMIN). Where mounting is not permitted the same checks run in a subprocess whose
file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the oversized write fail with EFBIG.
"""
from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robolearn.data.format import ActionSpec, DemoMeta, DemoReader, DemoWriteError, DemoWriter, ObsFieldSpec

REPO = Path(__file__).resolve().parents[1]
FSIZE_LIMIT = 64 * 1024


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """(folder on a 512 KiB filesystem, None), or (a plain folder, RLIMIT_FSIZE limit) where mounting is refused."""
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "512k"):
        yield where, FSIZE_LIMIT
        return
    try:
        yield where, None
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=20)


def _meta() -> DemoMeta:
    return DemoMeta(task="noise", control_hz=10.0, obs_spec={"x": ObsFieldSpec((64,))}, action_spec=ActionSpec(dim=2))


def _episode(rng: np.random.Generator, T: int) -> dict:
    # random floats do not compress: each episode really takes about 260 * T bytes
    return {"obs": {"x": rng.standard_normal((T + 1, 64)).astype(np.float32)}, "actions": rng.uniform(-1, 1, (T, 2)),
            "success": True}


def fill_until_full(folder: str, growing: bool) -> dict:
    """Write episodes until the disk (or the file-size limit: episodes then grow) refuses one."""
    rng = np.random.default_rng(0)
    writer = DemoWriter(folder, _meta())
    for n in range(1000):
        try:
            writer.write_episode(**_episode(rng, 40 + (40 * n if growing else 0)))
        except DemoWriteError as exc:
            return {"written": n, "message": str(exc), "errno": exc.errno, "path": exc.path, "oserror": isinstance(exc, OSError)}
    return {"written": 1000, "message": "", "errno": None, "path": "", "oserror": False}


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _fill(folder: Path, limit: int | None) -> dict:
    if limit is None:
        return fill_until_full(str(folder), growing=False)
    code = f"import sys, json; sys.path.insert(0, {str(REPO / 'tests')!r}); import test_disk_full as t; " \
           f"print(json.dumps(t.fill_until_full({str(folder)!r}, growing=True)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=_limited(limit))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_folder_intact(folder: Path, written: int) -> None:
    names = sorted(os.listdir(folder / "episodes"))
    assert names == [f"episode_{i:06d}.npz" for i in range(written)], names  # no temporary file left
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert DemoReader(folder).validate() == written  # every earlier episode loads
    json.loads((folder / "meta.json").read_text())


def test_full_disk_ends_with_one_line_and_leaves_earlier_episodes_readable(small_disk):
    where, limit = small_disk
    folder = where / "demos"
    result = _fill(folder, limit)
    assert 0 < result["written"] < 1000
    expected = (errno.ENOSPC, "no space left on device") if limit is None else (errno.EFBIG, "file too large")
    assert result["oserror"] and result["errno"] == expected[0]
    message = result["message"]
    assert "\n" not in message and expected[1] in message and ".tmp" not in message
    assert result["path"].endswith(f"episode_{result['written']:06d}.npz") and str(folder) in message
    assert_folder_intact(folder, result["written"])


def test_collect_into_a_full_disk_exits_with_one_line_and_no_traceback(small_disk):
    where, limit = small_disk
    out = where / "demos"
    preexec = None
    if limit is None:
        # leave about 40 KiB free: a handful of Graph Reach episodes fit, the rest do not
        free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
        (where / "filler").write_bytes(b"\0" * (free - 40 * 1024))
    else:
        preexec = _limited(1024)  # meta.json fits, an episode does not
    done = subprocess.run(
        [sys.executable, "-m", "robolearn", "collect", "graph_reach", "--operator", "suboptimal", "--episodes", "40",
         "--workers", "2", "--out", str(out), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=180, preexec_fn=preexec, env={**os.environ, "MUJOCO_GL": "osmesa"},
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert ("no space left on device" if limit is None else "file too large") in lines[0].lower() and str(out) in lines[0]
    written = len(DemoReader(out)) if limit is None else 0
    if limit is None:
        assert 0 < written < 40
    assert_folder_intact(out, written) if written else json.loads((out / "meta.json").read_text())


def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(small_disk, tmp_path):
    """HDF5's own writes on a full disk raise from destructors and can crash the interpreter;
    the export builds the file in memory and writes it with Python, which fails cleanly."""
    where, limit = small_disk
    src = tmp_path / "src"
    writer = DemoWriter(src, _meta())
    rng = np.random.default_rng(1)
    for _ in range(12):  # about 1 MiB of incompressible floats: more than the disk holds
        writer.write_episode(**_episode(rng, 300))
    writer.close()
    dst = where / "out.hdf5"
    done = subprocess.run([sys.executable, "-m", "robolearn", "convert", str(src), str(dst)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, preexec_fn=None if limit is None else _limited(limit))
    lines = done.stderr.strip().splitlines()
    assert done.returncode not in (0, -signal.SIGSEGV) and "Traceback" not in done.stderr, done.stderr
    assert ("no space left on device" if limit is None else "file too large") in lines[-1].lower() and str(dst) in lines[-1]
    assert not [p for p in os.listdir(where) if p != "lost+found"], os.listdir(where)  # no partial file left
