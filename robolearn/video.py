"""MP4 writing and inspection through imageio-ffmpeg (the ffmpeg binary ships in its wheel).

Why atomic: evaluation and deploy write videos next to results that other jobs read;
a video is encoded under a temporary name in the same folder and renamed into place,
so a crash or Ctrl-C never leaves a truncated file with the final name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from robolearn.tempfiles import new_temp_file


class VideoError(ValueError):
    """A video that cannot be written or read; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def _check_frames(path: Path, frames: Sequence[np.ndarray]) -> tuple[int, int]:
    if len(frames) == 0:
        raise VideoError(path, "no frames to write")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[2] != 3:
        raise VideoError(path, f"frame 0: expected an RGB image (H, W, 3), got shape {first.shape}")
    h, w = first.shape[:2]
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.shape != first.shape:
            raise VideoError(path, f"frame {i}: shape {f.shape} differs from frame 0's {first.shape}")
        if f.dtype != np.uint8:
            raise VideoError(path, f"frame {i}: expected dtype uint8, got {f.dtype}")
    return h, w


def write_mp4(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Encode ``frames`` (each (H, W, 3) uint8) as H.264 MP4 at ``fps``; returns the path.

    Odd widths/heights are padded by one black pixel row/column (H.264 with yuv420p needs
    even sizes) rather than resized, so pixels keep their meaning."""
    import imageio.v2 as imageio

    path = Path(path)
    if not fps > 0:
        raise VideoError(path, f"fps must be positive, got {fps!r}")
    h, w = _check_frames(path, frames)
    ph, pw = h + (h % 2), w + (w % 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path.parent, f".{path.stem}.", ".tmp.mp4")
    os.close(fd)
    try:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=float(fps),
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
        )
        try:
            for f in frames:
                f = np.asarray(f)
                if (ph, pw) != (h, w):
                    f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)))
                writer.append_data(f)
        finally:
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def resize_nearest(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` scaled to ``height`` rows by repeating (or dropping) pixels, keeping its aspect ratio.
    Why nearest neighbour: an 84 x 84 camera frame shown large should show the pixels a policy sees."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.int64)
    return image[rows][:, cols]


def side_by_side(images: Sequence[np.ndarray], height: int | None = None, gap: int = 4) -> np.ndarray:
    """RGB images (H_i, W_i, 3) uint8 in one row, each scaled to ``height`` (the first one's by
    default), separated by ``gap`` white columns: a re-simulated render beside recorded cameras."""
    if not images:
        raise ValueError("side_by_side: no images")
    height = int(height or np.asarray(images[0]).shape[0])
    parts: list[np.ndarray] = []
    for i, image in enumerate(images):
        if i:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
        parts.append(resize_nearest(np.asarray(image, np.uint8), height))
    return np.concatenate(parts, axis=1)


def read_mp4_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(n_frames, width, height)`` of a video, counting the decoded frames."""
    import imageio.v2 as imageio

    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "no such file")
    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
    except Exception as exc:  # imageio raises OSError/RuntimeError depending on the failure
        raise VideoError(path, f"unreadable video ({type(exc).__name__}: {exc})") from None
    try:
        n = 0
        width = height = 0
        for frame in reader:
            height, width = frame.shape[:2]
            n += 1
    finally:
        reader.close()
    return n, int(width), int(height)
