"""The one error path of the ``robolearn`` command: every failure is one stderr line naming the
file (or host and port) with a non-zero exit, a bug says it is one and how to see the
traceback, and ``--debug`` shows it. A few runs go through real processes: the command
itself, a worker pool, an arm server that is busy, absent or cannot listen."""
from __future__ import annotations

import errno
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from robolearn import cli
from robolearn.config import ConfigError
from robolearn.errors import EXIT_ARM, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_SHIELD, WorkerError, error_line, portable
from robolearn.hal.arm import ArmError
from robolearn.hal.shield import ShieldError
from test_checkpoint_corpus import STEP, write_tiny_run

REPO = Path(__file__).resolve().parents[1]


def robolearn(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "ROBOLEARN_DEBUG"}
    full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "robolearn", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=full_env, stdin=subprocess.DEVNULL)


def assert_one_error_line(proc: subprocess.CompletedProcess, command: str, *words: str) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"robolearn {command}: error: "), proc.stderr
    for w in words:
        assert w in last, last
    return last


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def noop_run(tmp_path_factory) -> Path:
    """A checkpoint whose observation and action fit the noop arm (robot0_eef_pos, 7-D actions)."""
    return write_tiny_run(tmp_path_factory.mktemp("cli") / "run", {"task": "synthetic", "control_hz": 20.0},
                          key="robot0_eef_pos", obs_dim=3, action_dim=7)


def remote_launch(tmp_path: Path, host: str, port: int) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(f"deploy: {{arm: remote, host: {host}, port: {port}, max_steps: 5}}\n")
    return path


# --- the flag and the classification (in process) ------------------------------------------

@pytest.mark.parametrize("argv,rest", [
    (["--debug", "eval", "run"], ["eval", "run"]),
    (["eval", "run", "--debug"], ["eval", "run"]),
    (["eval", "--debug", "run", "--", "--debug"], ["eval", "run", "--", "--debug"]),
])
def test_debug_flag_is_global_before_or_after_the_command(monkeypatch, argv, rest):
    monkeypatch.delenv("ROBOLEARN_DEBUG", raising=False)
    assert cli.split_debug_flag(argv) == (True, rest)
    assert cli.split_debug_flag(["eval", "run"]) == (False, ["eval", "run"])
    monkeypatch.setenv("ROBOLEARN_DEBUG", "1")
    assert cli.split_debug_flag(["eval", "run"]) == (True, ["eval", "run"])
    monkeypatch.setenv("ROBOLEARN_DEBUG", "0")
    assert cli.split_debug_flag(["eval", "run"])[0] is False


@pytest.mark.parametrize("exc,code,line", [
    (ConfigError("a.yaml", "x", "bad\n  context"), EXIT_BAD_INPUT, "robolearn cmd: error: a.yaml: field 'x': bad context"),
    (ShieldError("shield: e-stop latched"), EXIT_SHIELD, "robolearn cmd: error: shield: e-stop latched"),
    (ArmError("arm server h:1: gone"), EXIT_ARM, "robolearn cmd: error: arm server h:1: gone"),
    (OSError(errno.ENOSPC, "No space left on device", "out/x.json"), EXIT_FAILED,
     "robolearn cmd: error: out/x.json: No space left on device"),
    (socket.gaierror(-2, "Name or service not known"), EXIT_FAILED, "robolearn cmd: error: [Errno -2] Name or service not known"),
])
def test_expected_failures_are_one_line_with_their_exit_code(exc, code, line):
    assert error_line("cmd", exc) == (line, code)


def test_a_bug_says_so_names_the_exception_and_how_to_see_the_traceback(monkeypatch, capsys):
    from robolearn.commands import split

    def broken(args):
        return {}["missing"]

    monkeypatch.delenv("ROBOLEARN_DEBUG", raising=False)
    monkeypatch.setattr(split, "run", broken)
    assert cli.main(["split", "folder"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("robolearn split: internal error (a bug in robolearn): KeyError: 'missing'")
    assert "--debug" in err[0]
    with pytest.raises(KeyError):
        cli.main(["split", "folder", "--debug"])


def test_errors_cross_a_process_boundary_intact():
    """ConfigError takes three arguments, so pickle alone cannot rebuild it: it travels as a
    WorkerError with the same line; picklable errors travel as themselves."""
    err = ConfigError("envs/x.yaml", "horizon", "expected a positive number")
    sent = pickle.loads(pickle.dumps(portable(err)))
    assert isinstance(sent, WorkerError)
    assert error_line("collect", sent) == error_line("collect", err)
    disk = OSError(errno.ENOSPC, "No space left on device", "a/b")
    assert portable(disk) is disk
    bug = pickle.loads(pickle.dumps(portable(ZeroDivisionError("division by zero"))))
    assert error_line("eval", bug)[0].startswith("robolearn eval: internal error")


def test_worker_pool_failure_reaches_the_parent_once_without_tracebacks(tmp_path, capfd):
    """eval with 2 worker processes on a checkpoint naming an unknown task: each worker fails
    to build the env; the parent gets that error once, and no worker prints a traceback."""
    from robolearn.evaluate import evaluate_run

    run = write_tiny_run(tmp_path / "run", {"task": "no_such_task"})
    with pytest.raises(Exception) as info:
        evaluate_run(run, episodes=4, workers=2, progress=False)
    line, code = error_line("eval", info.value)
    assert code == EXIT_BAD_INPUT and "no_such_task" in line and "unknown task" in line
    assert "Traceback" not in capfd.readouterr().err


def test_deploy_to_a_busy_arm_server_names_host_and_port(noop_run, tmp_path, capsys, monkeypatch):
    from robolearn.hal.noop_arm import NoopArm
    from robolearn.hal.remote import RemoteArm
    from robolearn.hal.server import ArmServer

    monkeypatch.delenv("ROBOLEARN_DEBUG", raising=False)
    server = ArmServer(NoopArm(), port=0, heartbeat_ms=5000).start()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    holder = RemoteArm(port=server.port)
    try:
        holder.connect()  # this client has control: the deploy is the second one
        code = cli.main(["deploy", str(remote_launch(tmp_path, "127.0.0.1", server.port)), "--checkpoint", str(noop_run),
                         "--yes", "--out", str(tmp_path / "rec")])
    finally:
        holder.close()
        server.shutdown()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == EXIT_ARM and last.startswith("robolearn deploy: error: ") and f"127.0.0.1:{server.port}" in last
    assert "busy" in last or "another client" in last
    assert not (tmp_path / "rec").exists()  # nothing recorded for a run that never started


# --- through the real command -------------------------------------------------------------

def test_eval_of_a_truncated_checkpoint_is_one_line_and_debug_shows_the_traceback(noop_run, tmp_path, monkeypatch):
    from robolearn.policy import CheckpointError

    run = tmp_path / "run"
    shutil.copytree(noop_run, run)
    weights = run / "checkpoints" / STEP / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    proc = robolearn("eval", str(run), "--episodes", "1")  # progress bar on: the error must still be last
    assert proc.returncode == EXIT_BAD_INPUT
    assert_one_error_line(proc, "eval", str(weights), "truncated")
    monkeypatch.delenv("ROBOLEARN_DEBUG", raising=False)
    for argv in (["--debug", "eval", str(run)], ["eval", str(run), "--debug"]):
        with pytest.raises(CheckpointError):
            cli.main(argv)  # re-raised: the interpreter prints the traceback


def test_deploy_to_an_absent_arm_server_names_host_and_port(noop_run, tmp_path):
    port = free_port()  # nothing listens there any more
    proc = robolearn("deploy", str(remote_launch(tmp_path, "127.0.0.1", port)), "--checkpoint", str(noop_run), "--yes",
                     "--out", str(tmp_path / "rec"))
    assert proc.returncode == EXIT_ARM
    assert_one_error_line(proc, "deploy", f"127.0.0.1:{port}")
    assert not (tmp_path / "rec").exists()


def test_deploy_to_an_unresolvable_host_names_it(noop_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROBOLEARN_DEBUG", raising=False)
    code = cli.main(["deploy", str(remote_launch(tmp_path, "no-such-host.invalid", 5555)), "--checkpoint", str(noop_run),
                     "--yes", "--out", str(tmp_path / "rec")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_ARM and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("robolearn deploy: error: ") and "no-such-host.invalid:5555" in err[-1]


def test_serve_arm_on_a_port_in_use_names_host_and_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = robolearn("serve-arm", "controllers/noop.yaml", "--port", str(port))
    assert_one_error_line(proc, "serve-arm", f"127.0.0.1:{port}")


def test_a_dying_background_thread_is_one_warning_line_and_the_error_stays_last(monkeypatch, capsys):
    """A library writer thread meets a full disk: one warning line, no traceback; when the main
    thread then re-raises that same exception it is reported once, as the last line."""
    from robolearn.commands import split

    def run_with_threads(args):
        def die(exc):
            raise exc

        other = threading.Thread(target=die, args=(OSError(errno.EIO, "Input/output error"),), name="reader")
        other.start()
        other.join()
        full = OSError(errno.ENOSPC, "No space left on device")
        writer = threading.Thread(target=die, args=(full,), name="writer")
        writer.start()
        writer.join()
        raise full

    monkeypatch.delenv("ROBOLEARN_DEBUG", raising=False)
    monkeypatch.setattr(split, "run", run_with_threads)
    hook = threading.excepthook
    assert cli.main(["split", "out/folder"]) == EXIT_FAILED
    assert threading.excepthook is hook  # in process, the previous hook is back
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[0] == "robolearn split: warning: background thread reader failed: OSError: [Errno 5] Input/output error"
    assert err[-1] == "robolearn split: error: [Errno 28] No space left on device"
    assert all(line.startswith("robolearn split: warning: background thread") for line in err[:-1])


def test_a_write_error_without_a_file_names_the_command_output():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert error_line("train", full, "runs/x") == (
        "robolearn train: error: [Errno 28] No space left on device (while writing runs/x)", EXIT_FAILED)
    named = OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl")
    assert error_line("train", named, "runs/x")[0] == "robolearn train: error: runs/x/metrics.jsonl: No space left on device"


def test_every_expected_class_name_names_a_real_class():
    """EXPECTED matches classes by qualified name: a class moved to another module must fail
    here, not turn every error of its kind into an 'internal error' line."""
    import importlib

    from robolearn.errors import EXPECTED

    for qualified in EXPECTED:
        module, _, name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), qualified
        assert f"{cls.__module__}.{cls.__qualname__}" == qualified
