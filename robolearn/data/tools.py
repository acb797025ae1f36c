"""Folder tools: merge demo folders of one task, and write a train/valid split.

Merging copies episode files byte for byte (after validating each one) under new indices,
each claimed atomically, and records every copied episode in the output's ``meta.json``
(``merged_from``, split) together with the file. A merge that dies half way therefore
leaves an output whose every episode is complete and on record, and rerunning the same
merge copies only what is missing. Both tools hold the output folder's lock while they
write, so a concurrent collect, merge or split of the same folder is refused, not raced.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.config import ConfigError
from robolearn.data.format import (
    META_NAME,
    DemoFormatError,
    DemoMeta,
    DemoReader,
    DemoWriter,
    episode_indices,
    load_episode_file,
    read_meta,
    write_meta,
)
from robolearn.data.lock import FolderLock


def _distinct_sources(out: Path, sources: list[str | os.PathLike]) -> list[DemoReader]:
    """One reader per distinct source folder: spellings of one folder (``A``, ``./A``, a
    symlink to it) are merged once, and the output folder itself is refused."""
    if not sources:
        raise ConfigError("merge", "sources", "give at least one source folder")
    readers: list[DemoReader] = []
    seen: set[Path] = set()
    for s in sources:
        resolved = Path(s).resolve()
        if resolved == out.resolve():
            raise DemoFormatError(s, "<folder>", "is also the output folder")
        if resolved not in seen:
            seen.add(resolved)
            readers.append(DemoReader(s))
    return readers


def already_merged(meta: DemoMeta, source: Path) -> set[int]:
    """Episode indices of ``source`` that ``merged_from`` says are already in the folder.
    An entry without ``source_indices`` stands for the whole source (nothing is copied twice)."""
    done: set[int] = set()
    for entry in meta.extra.get("merged_from", []):
        if not isinstance(entry, dict) or Path(str(entry.get("folder", ""))).resolve() != source:
            continue
        if "source_indices" not in entry:
            return {-1}  # all of it
        done.update(int(i) for i in entry["source_indices"])
    return done


def merge(out: str | os.PathLike, sources: list[str | os.PathLike], progress: bool = True) -> dict[str, list[int]]:
    """Append every episode of ``sources`` to ``out`` (created, or resumed when it exists).

    All folders must share task, observation spec, action dim and control rate. Returns
    {source: new indices}. Splits present in sources are carried over, renumbered; episodes
    from sources without a split go to ``train``.

    Never duplicates: a source given twice (under any spelling) is merged once, and source
    episodes that ``out``'s ``merged_from`` already lists are skipped, so rerunning a merge,
    interrupted or not, copies only what is missing (and a source that grew, only its new
    episodes). ``merged_from`` gets one entry per source and run: its resolved folder, its
    ``source``, the new indices ``[first, last]``, the ``source_indices`` copied, and the
    source's env settings when they differ from ``out``'s.
    """
    from tqdm import tqdm

    out = Path(out)
    readers = _distinct_sources(out, sources)
    base = read_meta(out) if (out / META_NAME).exists() else readers[0].meta
    for r in readers:
        why = base.compatible_with(r.meta)
        if why:
            raise DemoFormatError(r.folder / META_NAME, "meta", f"cannot merge into {out}: {why}")
    # Validate everything before the first file lands in the output.
    for r in readers:
        for i in tqdm(r.indices, desc=f"check {r.folder.name}", disable=not progress, unit="ep", leave=False):
            load_episode_file(r.path(i), r.meta)
    mapping: dict[str, list[int]] = {}
    with DemoWriter(out, _fresh_meta(out, base)) as writer:  # the lock is held from here on
        if bool(writer.meta.split) or any(r.meta.split for r in readers):
            _start_split(writer)
        for r in readers:
            mapping[str(r.folder)] = _merge_one(writer, r, progress, tqdm)
    return mapping


def _fresh_meta(out: Path, base: DemoMeta) -> DemoMeta:
    """The meta ``out`` is opened with: its own when it exists (nothing to record as a
    different setting), else the first source's without what names that source's indices."""
    fresh = copy.deepcopy(base)
    if not (out / META_NAME).exists():
        fresh.split = None  # the source's split names source indices; rebuilt per copied episode
        fresh.extra.pop("appends", None)
    return fresh


def _start_split(writer: DemoWriter) -> None:
    """A folder gaining a split: its existing episodes become ``train``."""
    if writer.meta.split:
        return
    meta = writer.meta
    meta.split = {"train": episode_indices(writer.folder)}
    write_meta(writer.folder, meta)


def _merge_one(writer: DemoWriter, r: DemoReader, progress: bool, tqdm) -> list[int]:
    source = r.folder.resolve()
    done = already_merged(writer.meta, source)
    todo = [] if -1 in done else [i for i in r.indices if i not in done]
    src_split = r.meta.split or {"train": list(r.indices)}
    entry: dict[str, Any] = {"folder": str(source), "source": r.meta.source, "indices": [], "source_indices": []}
    if r.meta.extra.get("env") != writer.meta.extra.get("env"):
        entry["env"] = r.meta.extra.get("env")  # recorded with other env settings: keep them on record
    if r.meta.extra.get("appends"):
        entry["source_appends"] = r.meta.extra["appends"]  # per-episode settings, in source indices
    position: list[int] = []  # where this run's entry sits in merged_from once it is written
    new: list[int] = []

    def record(meta: DemoMeta, index: int, i: int) -> None:
        merged_from = meta.extra.setdefault("merged_from", [])
        if not position:
            merged_from.append(copy.deepcopy(entry))
            position.append(len(merged_from) - 1)
        e = merged_from[position[0]]
        e["indices"] = [e["indices"][0] if e["indices"] else index, index]
        e["source_indices"].append(i)
        new.append(index)
        if meta.split is not None:
            for name, idx in src_split.items():
                if i in idx:
                    meta.split.setdefault(name, []).append(index)

    for i in tqdm(todo, desc=f"merge {r.folder.name}", disable=not progress, unit="ep"):
        writer.add_episode_bytes(r.path(i).read_bytes(), lambda meta, index, i=i: record(meta, index, i))
    return new


def split(folder: str | os.PathLike, valid: float = 0.1, seed: int = 0) -> dict[str, list[int]]:
    """Write a random train/valid split (episode indices) into meta.json and return it."""
    if not 0.0 <= valid < 1.0:
        raise ConfigError("--valid", "valid", f"expected a fraction in [0, 1), got {valid}")
    reader = DemoReader(folder)
    idx = np.array(reader.indices)
    n_valid = int(round(valid * len(idx)))
    if valid > 0 and n_valid == 0 and len(idx) >= 2:
        n_valid = 1
    if n_valid >= len(idx):
        raise ConfigError("--valid", "valid", f"{valid} of {len(idx)} episodes leaves none for training")
    perm = np.random.default_rng(seed).permutation(idx)
    result = {"train": sorted(int(i) for i in perm[n_valid:]), "valid": sorted(int(i) for i in perm[:n_valid])}
    with FolderLock(reader.folder):  # a read-modify-write of meta.json: not while someone appends
        if episode_indices(reader.folder) != reader.indices:
            raise DemoFormatError(reader.folder, "<folder>", "episodes changed while the split was drawn; run split again")
        meta = read_meta(reader.folder)
        meta.split = result
        write_meta(reader.folder, meta)
    return result
