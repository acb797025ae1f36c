"""Hidden temporary files and folders beside an output, created with the user's umask.

Why not ``tempfile.mkstemp``/``mkdtemp``: they create mode 0600/0700 on purpose (private
scratch space), and a temporary that is renamed into place keeps its mode, so every episode,
``meta.json``, video and converted folder would be unreadable to the rest of a team that
shares a dataset. These create 0666/0777 minus the umask, as ``open`` and ``mkdir`` do.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

_ATTEMPTS = 100


def _name(parent: Path, prefix: str, suffix: str) -> Path:
    return Path(parent) / f"{prefix}{secrets.token_hex(6)}{suffix}"


def new_temp_file(parent: str | os.PathLike, prefix: str, suffix: str) -> tuple[int, str]:
    """Create a new, empty file ``parent/<prefix><random><suffix>``: -> (open fd for writing, path)."""
    for _ in range(_ATTEMPTS):
        path = _name(Path(parent), prefix, suffix)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free temporary name after {_ATTEMPTS} attempts")


def new_temp_dir(parent: str | os.PathLike, prefix: str, suffix: str) -> Path:
    """Create a new, empty folder ``parent/<prefix><random><suffix>`` and return its path."""
    for _ in range(_ATTEMPTS):
        path = _name(Path(parent), prefix, suffix)
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free temporary name after {_ATTEMPTS} attempts")
