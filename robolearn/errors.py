"""One error path for every command.

Why: a user who points a command at a truncated checkpoint, an arm server that is not
running or a full disk should read one line naming the file (or host and port) and the
problem, not a traceback. This module decides which exceptions are such expected failures,
turns each into that one line with an exit code, and carries an exception raised in a
worker process to the parent intact (most of robolearn's error classes take several
constructor arguments, which ``pickle`` cannot rebuild on its own).

The classes are recognised by their qualified names along the exception's MRO, so this
module imports nothing heavy and classifying never fails because an optional dependency is
missing.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SHIELD = 3
EXIT_ARM = 4

#: Expected failure classes (and their subclasses) -> exit code. The MRO is walked from the
#: most specific class, so ShieldError wins over its base ArmError.
EXPECTED: dict[str, int] = {
    "robolearn.config.ConfigError": EXIT_BAD_INPUT,
    "robolearn.data.errors.DemoFormatError": EXIT_BAD_INPUT,
    "robolearn.video.VideoError": EXIT_BAD_INPUT,
    "robolearn.hal.shield.ShieldError": EXIT_SHIELD,
    "robolearn.hal.arm.ArmError": EXIT_ARM,
    "robolearn.hal.protocol.ProtocolError": EXIT_ARM,
    "builtins.OSError": EXIT_FAILED,
}

#: Readers of user files whose own exceptions mean "this file is bad" (their messages name it).
READER_MODULES = ("h5py", "pyarrow", "safetensors")

DEBUG_HINT = "run again with --debug (or ROBOLEARN_DEBUG=1) for the traceback"


@dataclass(frozen=True)
class Failure:
    """What the command line prints for an exception: one line and an exit code."""

    type_name: str
    message: str
    exit_code: int
    expected: bool


class WorkerError(Exception):
    """An exception from a worker process, reduced to what the parent prints.

    ``__reduce__`` rebuilds it from plain strings, so it always survives the trip through a
    process pool; the original exception stays attached as ``__cause__`` in the worker, where
    the pool formats it into the remote traceback that ``--debug`` shows."""

    def __init__(self, type_name: str, message: str, exit_code: int, expected: bool):
        self.failure = Failure(type_name, message, exit_code, expected)
        super().__init__(message)

    def __reduce__(self):
        f = self.failure
        return (WorkerError, (f.type_name, f.message, f.exit_code, f.expected))


def one_line(text: str) -> str:
    """Messages with embedded newlines (YAML parser context, numpy reprs) folded onto one line."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def _qualified_names(exc: BaseException) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]


def expected_exit_code(exc: BaseException) -> int | None:
    """The exit code of an expected failure, or None for an exception that means a bug."""
    if isinstance(exc, WorkerError):
        return exc.failure.exit_code if exc.failure.expected else None
    for name in _qualified_names(exc):
        if name in EXPECTED:
            return EXPECTED[name]
    if type(exc).__module__.split(".")[0] in READER_MODULES:
        return EXIT_BAD_INPUT
    return None


def describe_os_error(exc: OSError) -> str:
    """``path: reason`` when the error knows its file (``[Errno 28] ...: 'x'`` reads worse)."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return str(exc) if str(exc) else reason
    where = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {reason}"


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, WorkerError):
        return exc.failure
    code = expected_exit_code(exc)
    text = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    text = one_line(text) or type(exc).__name__
    return Failure(type(exc).__name__, text, EXIT_FAILED if code is None else code, code is not None)


def error_line(command: str, exc: BaseException, output: str | None = None) -> tuple[str, int]:
    """The one stderr line for ``robolearn <command>`` failing with ``exc``, and its exit code.
    ``output`` (the command's output path) is named when a write error knows no file of its
    own: a full disk met inside a library's writer says only "No space left on device"."""
    f = classify(exc)
    if f.expected:
        where = ""
        if output and isinstance(exc, OSError) and exc.filename is None:
            where = f" (while writing {output})"
        return f"robolearn {command}: error: {f.message}{where}", f.exit_code
    return (f"robolearn {command}: internal error (a bug in robolearn): {f.type_name}: {f.message}; {DEBUG_HINT}",
            f.exit_code)


def portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling unchanged, else a WorkerError with its line:
    a pool whose worker raises an exception the parent cannot unpickle hangs or loses it."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
        if type(copy) is type(exc) and str(copy) == str(exc):
            return exc
    except Exception:  # noqa: BLE001 - any pickling failure means "send the text instead"
        pass
    f = classify(exc)
    err = WorkerError(f.type_name, f.message, f.exit_code, f.expected)
    err.__cause__ = exc
    return err
