"""Calibration views as PNG files: reading a folder of them, writing captured ones."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robolearn.calibration.board import import_cv2
from robolearn.config import ConfigError
from robolearn.data.format import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: str | os.PathLike, source: str | None = None) -> np.ndarray:
    """An image file as uint8 RGB; an unreadable one is a ConfigError naming it."""
    cv2 = import_cv2()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(source or str(path), str(path), "not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(str(folder), "--images", "no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(str(folder), "--images", f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return files


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """``image`` (uint8 RGB) as a PNG, written atomically."""
    cv2 = import_cv2()
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ConfigError(str(path), "image", "OpenCV could not encode the frame as PNG")
    path = Path(path)
    atomic_write_bytes(path, png.tobytes())
    return path
