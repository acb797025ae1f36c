"""Staged outputs: a converter writes into a hidden temporary sibling and renames it into
place only when everything succeeded.

Why: a conversion that fails half way (a bad demo in the middle of a robomimic file, a
corrupt parquet chunk, Ctrl-C) must never leave a half-written folder or file that a
later ``robolearn train`` would happily read as a smaller dataset.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from robolearn.data.format import DemoFormatError


def check_new_output(dst: str | os.PathLike) -> Path:
    """Refuse to overwrite: converters create new outputs; ``merge`` is the tool for combining."""
    dst = Path(dst)
    if dst.exists():
        raise DemoFormatError(dst, "<output>", "already exists; choose a new path (use `robolearn merge` to combine folders)")
    if not dst.parent.exists():
        raise DemoFormatError(dst.parent, "<output>", "parent folder does not exist")
    return dst


@contextlib.contextmanager
def staged_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``dst``; rename it to ``dst`` on success, delete it on failure."""
    dst = check_new_output(dst)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        yield tmp
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``dst``; rename it to ``dst`` on success, delete it on failure."""
    dst = check_new_output(dst)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
