"""Capturing calibration views from a live ``Camera``: keep a frame only when it adds something.

Why not every frame: a camera gives 30 frames a second of nearly the same view, and fifty
copies of one pose weigh that pose fifty times in the fit. A frame is kept when the board is
found with at least ``min_corners`` corners and its corners lie, on average, at least
``min_shift`` (a share of the image diagonal) away from where they were in every view kept so
far: the person holding the board has moved it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from robolearn.calibration.board import Board, Detection
from robolearn.calibration.errors import CalibrationError
from robolearn.calibration.images import write_image
from robolearn.calibration.intrinsics import MIN_CORNERS
from robolearn.hal.cameras.base import Camera


@dataclass
class CapturedView:
    image: np.ndarray
    detection: Detection


def _moved(view: Detection, kept: list[CapturedView], threshold_px: float) -> bool:
    for other in kept:
        common, a, b = np.intersect1d(view.ids, other.detection.ids, return_indices=True)
        if len(common) == 0:
            continue
        shift = float(np.mean(np.linalg.norm(view.image_points[a] - other.detection.image_points[b], axis=1)))
        if shift < threshold_px:
            return False
    return True


def capture_views(camera: Camera, board: Board, count: int, *, min_corners: int = MIN_CORNERS,
                  min_shift: float = 0.05, max_frames: int = 3000, save_dir: str | os.PathLike | None = None,
                  progress: Callable[[str], None] | None = None) -> list[CapturedView]:
    """Read ``camera`` until ``count`` distinct views of the board are kept (or refuse after
    ``max_frames`` frames). The camera is connected here and closed at the end; kept views
    are saved as ``save_dir/view_NNN.png`` when given, so the calibration can be rerun."""
    spec = camera.spec
    threshold = min_shift * math.hypot(spec.width, spec.height)
    kept: list[CapturedView] = []
    camera.connect()
    try:
        for i in range(max_frames):
            if len(kept) == count:
                break
            frame = camera.read()
            d = board.detect(frame.image, f"{spec.name} frame {frame.index}")
            if d.count < min_corners or not _moved(d, kept, threshold):
                continue
            kept.append(CapturedView(frame.image, d))
            if save_dir is not None:
                write_image(Path(save_dir) / f"view_{len(kept) - 1:03d}.png", frame.image)
            if progress is not None:
                progress(f"view {len(kept)}/{count}: {d.count} corners (frame {i + 1})")
    finally:
        camera.close()
    if len(kept) < count:
        raise CalibrationError(f"camera {spec.name}", "views", f"{len(kept)} distinct views of the board in {max_frames} "
                                                               f"frames, asked for {count}; move the board between views")
    return kept
