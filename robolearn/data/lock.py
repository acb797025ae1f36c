"""One writer per demo folder at a time: an exclusive ``flock`` on ``<folder>/.lock``, held
for the writer's whole session.

Why exclusive for the whole session rather than shared appends with atomic claims alone:
``robolearn collect`` seeds episode ``i`` from its index, so two collects appending at once
would roll out the same seeds twice; and a session's ``meta.json`` updates (split,
``merged_from``, recorded settings) are read-modify-writes that a second writer would
undo. A second writer is therefore refused at once, before it does any work, with a
one-line error naming the process that holds the folder.

The lock file stays in the folder after the session: removing it would let a third writer
lock a fresh file while the second still holds the old one. The kernel drops the lock when
its holder exits, however it exits, so a crash never leaves a folder locked; the holder's
pid and command line are written into the file only to make the refusal readable.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from pathlib import Path

from robolearn.data.errors import DemoFormatError

LOCK_NAME = ".lock"


def _this_command() -> str:
    """``robolearn collect graph_reach ...`` for ``python -m robolearn collect ...`` (the package's
    name stands for its ``__main__.py``)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = program.parent.name if program.name == "__main__.py" else program.name
    text = " ".join([name, *sys.argv[1:]])
    return text if len(text) <= 200 else text[:197] + "..."


def _holder_description(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {int(info['pid'])} ({info.get('command', '?')}, since {info.get('since', '?')})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _read_holder(file, attempts: int = 20, wait_s: float = 0.01) -> str:
    """The holder's description. A holder writes it just after taking the lock, so a refusal
    in that instant reads an empty file: read again for a moment before giving up."""
    for attempt in range(attempts):
        file.seek(0)
        text = file.read()
        if text.strip() or attempt == attempts - 1:
            return _holder_description(text)
        time.sleep(wait_s)
    return _holder_description("")


class _Held:
    """One flock held by this process: the open lock file, how many writers share it, and the
    mutex that serialises their index claims and meta.json updates."""

    def __init__(self, file, key: tuple[int, int]):
        self.file, self.key, self.pid = file, key, os.getpid()
        self.users = 0
        self.mutex = threading.RLock()


_HELD: dict[tuple[int, int], _Held] = {}
_HELD_GUARD = threading.RLock()  # re-entrant: a collected FolderLock releases from __del__


class FolderLock:
    """An exclusive lock on a folder for as long as this object is open.

    ``FolderLock(folder)`` takes the lock or raises ``DemoFormatError`` (field ``<lock>``)
    naming the holder; ``release()`` (or leaving a ``with`` block) gives it back. Writers in
    one process share the process's lock on a folder (counted, keyed by the lock file's
    inode, so another spelling or a renamed folder is still the same lock) and serialise
    through ``mutex``: the refusal is for other processes, whose in-memory state (collect's
    seeds, a merge's plan) nothing here could reconcile.
    """

    def __init__(self, folder: str | os.PathLike):
        self._held: _Held | None = None  # set first: __del__ runs even when taking the lock fails
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        new = open(self.path, "a+")
        try:
            st = os.fstat(new.fileno())
            key = (st.st_dev, st.st_ino)
            with _HELD_GUARD:
                held = _HELD.get(key)
                if held is None or held.pid != os.getpid() or held.file.closed:
                    held = _HELD[key] = _Held(self._flock(new), key)
                    new = None
                held.users += 1
        finally:
            if new is not None:
                new.close()
        self._held = held

    def _flock(self, file):
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(file)
            raise DemoFormatError(
                self.folder, "<lock>", f"is being written by {holder}; wait for it to finish or write to another folder"
            ) from None
        _note_holder(file)
        return file

    @property
    def held(self) -> bool:
        return self._held is not None

    @property
    def mutex(self) -> threading.RLock:
        if self._held is None:
            raise RuntimeError(f"the lock on {self.folder} was released")
        return self._held.mutex

    def release(self, _guard: threading.RLock = _HELD_GUARD, _held_locks: dict = _HELD) -> None:
        # The module's guard and table are bound as defaults because a lock still open at
        # interpreter exit is released from __del__ after the module's globals are cleared.
        held, self._held = self._held, None
        if held is None:
            return
        with _guard:
            held.users -= 1
            if held.users == 0:
                held.file.close()  # closing the file drops the flock
                if _held_locks.get(held.key) is held:
                    del _held_locks[held.key]

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _note_holder(file) -> None:
    info = {"pid": os.getpid(), "command": _this_command(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        file.seek(0)
        file.truncate()
        file.write(json.dumps(info) + "\n")
        file.flush()
    except OSError:
        pass  # the note only makes a refusal readable; a full disk must not stop the lock
