"""Lossless storage of camera frames inside an episode file: temporal delta + deflate, in chunks.

Why this codec (figures in ``datasets/README.md``, from ``bench/image_codec.py`` on rendered
Lift frames): a fixed camera sees mostly the same pixels from one step to the next, so the
difference of consecutive frames is mostly zeros, which deflate packs far tighter than the
frames themselves (``np.savez_compressed`` of the raw array, whose 32 kB window cannot reach
the previous frame beyond about 100 x 100 pixels) or than PNG, which only predicts within a
frame. It is bit-exact, needs only numpy and zlib (no video library to install or to match
versions of), and at 84 x 84 decodes 2-9x faster than lossless H.264 (which makes files 1.1-2x
smaller), which matters because training decodes every episode once at load.

Layout: frames are grouped in chunks of ``chunk_frames``; each chunk holds its first frame as
is and then each frame minus the one before (uint8, modulo 256), deflated on its own. A reader
can therefore decode any frame by inflating one chunk (random access within an episode), and a
corrupt chunk is found by its own checksum. The arrays stored per image key are::

    image/<key>/codec    0-d str    "delta-deflate-1"
    image/<key>/shape    int64 (4,) frames, height, width, channels
    image/<key>/chunk    int64 ()   frames per chunk
    image/<key>/offsets  int64 (chunks + 1,) byte offsets of the chunks in data
    image/<key>/data     uint8 (bytes,) the deflated chunks end to end
"""
from __future__ import annotations

import zlib
from typing import Iterable, Mapping

import numpy as np

CODEC = "delta-deflate-1"
PREFIX = "image/"
PARTS = ("codec", "shape", "chunk", "offsets", "data")
#: 32 frames: random access inflates at most 1.6 s of 20 Hz video; longer chunks save little
#: more (128 frames: 1-14 % smaller files, bench/image_codec.py).
CHUNK_FRAMES = 32
#: zlib's default level.
LEVEL = 6


class ImageCodecError(ValueError):
    """Encoded frames that cannot be decoded; the format layer turns it into a DemoFormatError
    naming the episode file and the key."""


def is_image(shape: Iterable[int], dtype: str) -> bool:
    """Image keys are uint8 H x W x C arrays per step (the observation encoders' rule too)."""
    return str(dtype) == "uint8" and len(tuple(shape)) == 3


def member(key: str, part: str) -> str:
    return f"{PREFIX}{key}/{part}"


def encode(frames: np.ndarray, chunk_frames: int = CHUNK_FRAMES, level: int = LEVEL) -> dict[str, np.ndarray]:
    """(N, H, W, C) uint8 frames -> the arrays above (without the ``image/<key>/`` prefix)."""
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ImageCodecError(f"expected uint8 frames (N, H, W, C), got {frames.dtype} {frames.shape}")
    chunks = []
    for start in range(0, frames.shape[0], chunk_frames):
        part = frames[start:start + chunk_frames]
        delta = part.copy()
        np.subtract(part[1:], part[:-1], out=delta[1:])  # uint8 arithmetic wraps: exact inverse is cumsum
        chunks.append(zlib.compress(delta.tobytes(), level))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    return {
        "codec": np.array(CODEC),
        "shape": np.array(frames.shape, np.int64),
        "chunk": np.array(chunk_frames, np.int64),
        "offsets": offsets,
        "data": np.frombuffer(b"".join(chunks), np.uint8),
    }


def _header(parts: Mapping[str, np.ndarray]) -> tuple[tuple[int, int, int, int], int, np.ndarray, np.ndarray]:
    missing = [p for p in PARTS if p not in parts]
    if missing:
        raise ImageCodecError(f"encoded frames lack their {missing[0]!r} array")
    codec = parts["codec"]
    if codec.shape != () or codec.dtype.kind != "U" or str(codec) != CODEC:
        raise ImageCodecError(f"unknown image codec {codec.tolist()!r}; this robolearn reads {CODEC!r}")
    shape, chunk, offsets, data = parts["shape"], parts["chunk"], parts["offsets"], parts["data"]
    if shape.shape != (4,) or shape.dtype.kind not in "iu" or np.any(shape < 1):
        raise ImageCodecError(f"expected shape as 4 positive integers, got {shape.tolist()!r}")
    if chunk.shape != () or chunk.dtype.kind not in "iu" or int(chunk) < 1:
        raise ImageCodecError(f"expected chunk as a positive integer, got {chunk.tolist()!r}")
    n_chunks = -(-int(shape[0]) // int(chunk))
    if (offsets.shape != (n_chunks + 1,) or offsets.dtype.kind not in "iu" or offsets[0] != 0
            or np.any(np.diff(offsets) < 0) or offsets[-1] != data.size or data.dtype != np.uint8 or data.ndim != 1):
        raise ImageCodecError(f"chunk offsets {offsets.shape} do not match {n_chunks} chunks in {data.size} bytes")
    n, h, w, c = (int(x) for x in shape)
    return (n, h, w, c), int(chunk), offsets, data


def frame_shape(parts: Mapping[str, np.ndarray]) -> tuple[int, int, int, int]:
    """(frames, height, width, channels) of encoded frames, without decoding them."""
    return _header(parts)[0]


def _chunk(shape: tuple[int, int, int, int], chunk: int, offsets: np.ndarray, data: np.ndarray, i: int) -> np.ndarray:
    n, h, w, c = shape
    rows = min(chunk, n - i * chunk)
    try:
        raw = zlib.decompress(data[int(offsets[i]):int(offsets[i + 1])].tobytes())
    except zlib.error as exc:
        raise ImageCodecError(f"chunk {i} (frames {i * chunk}..{i * chunk + rows - 1}) is corrupt: {exc}") from None
    if len(raw) != rows * h * w * c:
        raise ImageCodecError(f"chunk {i} holds {len(raw)} bytes, expected {rows} frames of {h}x{w}x{c}")
    return np.cumsum(np.frombuffer(raw, np.uint8).reshape(rows, h, w, c), axis=0, dtype=np.uint8)


def decode(parts: Mapping[str, np.ndarray], frames: Iterable[int] | None = None) -> np.ndarray:
    """All frames (N, H, W, C) uint8, or only the ``frames`` listed (inflating just their chunks)."""
    shape, chunk, offsets, data = _header(parts)
    n_chunks = offsets.size - 1
    if frames is None:
        return np.concatenate([_chunk(shape, chunk, offsets, data, i) for i in range(n_chunks)], 0)
    wanted = np.asarray(list(frames), np.int64)
    if wanted.size and (wanted.min() < 0 or wanted.max() >= shape[0]):
        raise ImageCodecError(f"frame index out of range 0..{shape[0] - 1}: {wanted.tolist()[:5]}")
    out = np.empty((wanted.size,) + shape[1:], np.uint8)
    decoded: dict[int, np.ndarray] = {}
    for j, f in enumerate(wanted.tolist()):
        i = f // chunk
        if i not in decoded:
            decoded[i] = _chunk(shape, chunk, offsets, data, i)
        out[j] = decoded[i][f - i * chunk]
    return out
