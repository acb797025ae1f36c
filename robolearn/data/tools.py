"""Folder tools: merge demo folders of one task, and write a train/valid split.

Merging copies episode files byte for byte (after validating each one) under new
indices, each through a temporary name and a rename, so a merge that dies half way
leaves an output whose every episode is complete and which a rerun can append to.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from robolearn.config import ConfigError
from robolearn.data.format import (
    EPISODE_DIR,
    META_NAME,
    DemoFormatError,
    DemoReader,
    DemoWriter,
    atomic_write_bytes,
    episode_indices,
    load_episode_file,
    read_meta,
    write_meta,
)


def merge(out: str | os.PathLike, sources: list[str | os.PathLike], progress: bool = True) -> dict[str, list[int]]:
    """Append every episode of ``sources`` to ``out`` (created, or resumed when it exists).

    All folders must share task, observation spec, action dim and control rate. Returns
    {source: new indices}. Splits present in sources are carried over, renumbered; episodes
    from sources without a split go to ``train``.
    """
    from tqdm import tqdm

    out = Path(out)
    if not sources:
        raise ConfigError("merge", "sources", "give at least one source folder")
    readers = [DemoReader(s) for s in sources]
    base = readers[0].meta
    if (out / META_NAME).exists():
        base = read_meta(out)
    for r in readers:
        if r.folder.resolve() == out.resolve():
            raise DemoFormatError(r.folder, "<folder>", "is also the output folder")
        why = base.compatible_with(r.meta)
        if why:
            raise DemoFormatError(r.folder / META_NAME, "meta", f"cannot merge into {out}: {why}")
    # Validate everything before the first file lands in the output.
    for r in readers:
        for i in tqdm(r.indices, desc=f"check {r.folder.name}", disable=not progress, unit="ep", leave=False):
            load_episode_file(r.path(i), r.meta)
    fresh = copy.deepcopy(readers[0].meta)
    fresh.split = None  # the source's split names source indices; rebuilt below
    writer = DemoWriter(out, fresh)  # creates meta.json, or checks and resumes
    meta = writer.meta
    any_split = bool(meta.split) or any(r.meta.split for r in readers)
    split: dict[str, list[int]] = {k: list(v) for k, v in (meta.split or {}).items()}
    if any_split and not meta.split:
        split["train"] = episode_indices(out)
    env_extra = meta.extra.get("env")
    merged_from = list(meta.extra.get("merged_from", []))
    mapping: dict[str, list[int]] = {}
    nxt = writer.next_index
    for r in readers:
        new: list[int] = []
        old_to_new: dict[int, int] = {}
        for i in tqdm(r.indices, desc=f"merge {r.folder.name}", disable=not progress, unit="ep"):
            atomic_write_bytes(out / EPISODE_DIR / f"episode_{nxt:06d}.npz", r.path(i).read_bytes())
            old_to_new[i] = nxt
            new.append(nxt)
            nxt += 1
        mapping[str(r.folder)] = new
        if any_split:
            src_split = r.meta.split or {"train": list(r.indices)}
            for name, idx in src_split.items():
                split.setdefault(name, []).extend(old_to_new[j] for j in idx if j in old_to_new)
        entry = {"folder": str(r.folder), "source": r.meta.source, "indices": [new[0], new[-1]] if new else []}
        if r.meta.extra.get("env") != env_extra:
            entry["env"] = r.meta.extra.get("env")  # recorded with other env settings: keep them on record
        merged_from.append(entry)
    meta.extra["merged_from"] = merged_from
    meta.split = split or None
    write_meta(out, meta)
    return mapping


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
    meta = reader.meta
    meta.split = result
    write_meta(reader.folder, meta)
    return result
