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
from pathlib import Path
from typing import Iterator

from robolearn.data.format import DemoFormatError
from robolearn.tempfiles import new_temp_dir, new_temp_file


def check_new_output(dst: str | os.PathLike) -> Path:
    """Refuse to overwrite: converters create new outputs; ``merge`` is the tool for combining."""
    dst = Path(dst)
    if dst.exists():
        raise DemoFormatError(dst, "<output>", "already exists; choose a new path (use `robolearn merge` to combine folders)")
    if not dst.parent.exists():
        raise DemoFormatError(dst.parent, "<output>", "parent folder does not exist")
    return dst


def _as_user_path(text: str, tmp: Path, dst: Path) -> str:
    return text.replace(str(tmp), str(dst))


def _name_the_output(exc: BaseException, tmp: Path, dst: Path) -> None:
    """Make an error raised while writing into the staging ``tmp`` name the user's ``dst``
    instead: the hidden folder is deleted on the way out, so naming it helps nobody."""
    if isinstance(exc, DemoFormatError):
        exc.path = _as_user_path(exc.path, tmp, dst)
        exc.problem = _as_user_path(exc.problem, tmp, dst)
        exc.args = (f"{exc.path}: field '{exc.field}': {exc.problem}",)
    elif isinstance(exc, Exception) and any(isinstance(a, str) and str(tmp) in a for a in exc.args):
        exc.args = tuple(_as_user_path(a, tmp, dst) if isinstance(a, str) else a for a in exc.args)
    if isinstance(exc, OSError):
        for attr in ("filename", "filename2"):
            value = getattr(exc, attr, None)
            if isinstance(value, (str, os.PathLike)):
                setattr(exc, attr, _as_user_path(os.fspath(value), tmp, dst))


def _publish_dir(tmp: Path, dst: Path) -> None:
    try:
        os.rename(tmp, dst)  # a directory is renamed onto dst only when dst is absent (or empty)
    except OSError as exc:
        if dst.exists():
            raise DemoFormatError(dst, "<output>", "was created by another process during the conversion; "
                                  "nothing was written (choose a new path)") from None
        raise DemoFormatError(dst, "<output>", f"cannot be created: {exc.strerror or exc}") from None


def _publish_file(tmp: Path, dst: Path) -> None:
    """Give the finished file its name without replacing one that appeared meanwhile."""
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise DemoFormatError(dst, "<output>", "was created by another process during the conversion; "
                              "nothing was written (choose a new path)") from None
    except OSError:
        if dst.exists():
            raise
        os.replace(tmp, dst)  # a filesystem without hard links
        return
    tmp.unlink()


@contextlib.contextmanager
def staged_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``dst``; rename it to ``dst`` on success, delete it on failure.
    Errors raised inside name ``dst``, never the hidden temporary folder."""
    dst = check_new_output(dst)
    try:
        tmp = new_temp_dir(dst.parent, f".{dst.name}.", ".partial")
    except OSError as exc:
        raise DemoFormatError(dst, "<output>", f"cannot be created: {exc.strerror or exc}") from None
    try:
        yield tmp
        _publish_dir(tmp, dst)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_the_output(exc, tmp, dst)
        raise


@contextlib.contextmanager
def staged_file(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``dst``; move it to ``dst`` on success, delete it on failure.
    Errors raised inside name ``dst``, never the hidden temporary file."""
    dst = check_new_output(dst)
    try:
        fd, name = new_temp_file(dst.parent, f".{dst.name}.", ".partial")
    except OSError as exc:
        raise DemoFormatError(dst, "<output>", f"cannot be created: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _publish_file(tmp, dst)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _name_the_output(exc, tmp, dst)
        raise
