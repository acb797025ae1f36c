"""Camera frames of LeRobot datasets: mp4 videos decoded with PyAV, PNG images from parquet.

LeRobot (``LeRobotDataset._query_videos`` and ``video_utils.decode_video_frames``) finds the
frame for a parquet row by time: the query is the episode's start in the video file
(``from_timestamp``: 0 for v2.x's one file per episode, the column
``videos/<key>/from_timestamp`` of ``meta/episodes`` for v3.0's shared files) plus the row's
``timestamp``, and the frame is the decoded one nearest to it, which must lie within a
tolerance (LeRobot's default 1e-4 s). This module does the same, so an import gets exactly the
frames LeRobot's own loader would give, and it refuses (one line naming the video and the
feature) a video that is missing, unreadable, recorded at another rate than the dataset's
``fps``, of another size than ``meta/info.json`` says, or too short for the episode's rows.

Frames come out as uint8 (T, H, W, 3) RGB, optionally resized (``size``) with swscale's area
averaging, which is what a downscale to training size wants (no aliasing).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from robolearn.data.errors import DemoFormatError

#: LeRobot's default ``tolerance_s``: frame times in its videos are exact multiples of 1/fps.
TOLERANCE_S = 1e-4
#: Relative difference between a video's frame rate and the dataset's fps that still counts as equal.
FPS_SLACK = 1e-3


def _av():
    try:
        import av
    except ImportError as exc:  # the 'lerobot' extra
        raise DemoFormatError("av", "<import>", f"importing LeRobot videos needs PyAV (pip install 'robolearn[lerobot]'): {exc}") from None
    return av


def frame_layout(path: Path, name: str, feature: dict[str, Any]) -> tuple[int, int, int]:
    """(height, width, channels) of a camera feature; LeRobot states ``names`` such as
    ["height", "width", "channels"] (some datasets list channels first)."""
    shape = feature.get("shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise DemoFormatError(path, f"features.{name}.shape", f"expected [height, width, channels] for a camera, got {shape!r}")
    names = feature.get("names")
    if isinstance(names, list) and len(names) == 3 and all(isinstance(n, str) for n in names):
        order = [n.rstrip("s").lower() for n in names]
        if sorted(order) == ["channel", "height", "width"]:
            return shape[order.index("height")], shape[order.index("width")], shape[order.index("channel")]
    return shape[0], shape[1], shape[2]


def _reformat(frame: Any, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=size[1], height=size[0], format="rgb24", interpolation="AREA").to_ndarray()


def _check_rate(path: Path, feature: str, stream: Any, fps: float) -> None:
    rate = stream.average_rate or stream.guessed_rate
    if rate is not None and abs(float(rate) - fps) > FPS_SLACK * fps:
        raise DemoFormatError(path, feature, f"the video runs at {float(rate):g} fps but meta/info.json says fps {fps:g}")


def decode_video(path: Path, feature: str, times: np.ndarray, fps: float, frame_hw: tuple[int, int],
                 size: tuple[int, int] | None = None, tolerance_s: float = TOLERANCE_S, episode: int | None = None) -> np.ndarray:
    """The frames of ``path`` nearest to each of ``times`` (seconds in the file), (len(times), H, W, 3) uint8.

    Decodes from the keyframe before the first time to the last time only, so one episode of a
    v3.0 file that holds many costs what that episode's frames cost."""
    av = _av()
    which = f"episode {episode}" if episode is not None else "the episode"
    if not path.is_file():
        raise DemoFormatError(path, feature, f"missing video file ({which} needs it; meta/info.json lists {feature} as a video)")
    times = np.asarray(times, np.float64)
    first, last = float(times.min()), float(times.max())
    got_t: list[float] = []
    got: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DemoFormatError(path, feature, "the file has no video stream")
            stream = container.streams.video[0]
            _check_rate(path, feature, stream, fps)
            if (stream.codec_context.height, stream.codec_context.width) != tuple(frame_hw):
                raise DemoFormatError(path, feature, f"frames are {stream.codec_context.height}x{stream.codec_context.width} (HxW) "
                                      f"but meta/info.json features.{feature}.shape says {frame_hw[0]}x{frame_hw[1]}")
            if first > tolerance_s:
                container.seek(int(max(0.0, first - tolerance_s) / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if t < first - tolerance_s:
                    continue
                got_t.append(t)
                got.append(_reformat(frame, size))
                if t >= last - tolerance_s:
                    break
    except DemoFormatError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DemoFormatError(path, feature, f"unreadable video ({type(exc).__name__}: {exc})") from None
    if not got or got_t[-1] < last - tolerance_s:
        end = f"its last frame is at {got_t[-1]:.4f} s" if got else "no frame was decoded"
        raise DemoFormatError(path, feature, f"video too short: {which} needs a frame at {last:.4f} s but {end}")
    stamps = np.asarray(got_t)
    nearest = np.clip(np.searchsorted(stamps, times), 1, len(stamps) - 1) if len(stamps) > 1 else np.zeros(len(times), np.int64)
    if len(stamps) > 1:
        nearest = np.where(np.abs(stamps[nearest - 1] - times) <= np.abs(stamps[nearest] - times), nearest - 1, nearest)
    off = np.abs(stamps[nearest] - times)
    if np.any(off > tolerance_s):
        j = int(np.argmax(off > tolerance_s))
        raise DemoFormatError(path, feature, f"no frame within {tolerance_s:g} s of timestamp {times[j]:.4f} s (row {j} of {which}; "
                              f"nearest frame at {stamps[nearest[j]]:.4f} s): the parquet timestamps and the video disagree")
    return np.stack([got[i] for i in nearest])


def decode_images(path: Path, feature: str, cells: Iterable[Any], root: Path, frame_hw: tuple[int, int],
                  size: tuple[int, int] | None = None) -> np.ndarray:
    """``image`` features: each parquet cell a struct {bytes, path} (PNG or JPEG bytes embedded, or
    a file under the dataset root), decoded to (n, H, W, 3) uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for row, cell in enumerate(cells):
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        try:
            if isinstance(data, (bytes, bytearray)):
                img = Image.open(io.BytesIO(data))
            elif isinstance(cell, dict) and isinstance(cell.get("path"), str) and (root / cell["path"]).is_file():
                img = Image.open(root / cell["path"])
            else:
                raise DemoFormatError(path, feature, f"row {row}: no image bytes and no image file at {cell!r:.80}")
            img = img.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DemoFormatError(path, feature, f"row {row}: undecodable image ({exc})") from None
        if (img.height, img.width) != tuple(frame_hw):
            raise DemoFormatError(path, feature, f"row {row}: image is {img.height}x{img.width} (HxW) but meta/info.json "
                                  f"features.{feature}.shape says {frame_hw[0]}x{frame_hw[1]}")
        if size is not None:
            img = img.resize((size[1], size[0]), Image.BOX)
        out.append(np.asarray(img, np.uint8))
    return np.stack(out)
