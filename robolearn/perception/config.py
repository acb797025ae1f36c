"""Typed settings of the perception layer: the fiducial markers on an object, the camera's
extrinsics on a real cell, and how long a lost marker's last estimate may be held.

Every number is checked where it enters (``robolearn.config.from_dict``: type, sign,
finiteness), and what ``from_dict`` cannot see (a zero quaternion, a matrix that is not a
rigid transform, a marker id twice) is refused here, naming the file and the field.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robolearn.config import ConfigError, checked, from_dict, load_yaml, non_negative, positive
from robolearn.geometry import pose_to_matrix

#: cv2.aruco's predefined dictionaries (name -> number of markers), readable without OpenCV.
DICTIONARIES = {
    **{f"DICT_{n}X{n}_{k}": k for n in (4, 5, 6, 7) for k in (50, 100, 250, 1000)},
    "DICT_ARUCO_ORIGINAL": 1024,
    "DICT_APRILTAG_16h5": 30,
    "DICT_APRILTAG_25h9": 35,
    "DICT_APRILTAG_36h10": 2320,
    "DICT_APRILTAG_36h11": 587,
}


@dataclass
class MarkerPlacement:
    """Where one marker sits on the object: its centre and orientation in the object frame.
    The marker frame is OpenCV's: x to the right and y up in the printed image, z out of the
    face (towards a camera that sees it), centred on the black square."""

    id: int = non_negative()
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: (x, y, z, w) rotation of the marker frame in the object frame.
    quaternion: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    def T_object_marker(self) -> np.ndarray:
        return pose_to_matrix(np.asarray(self.position), np.asarray(self.quaternion))


@dataclass
class MarkerConfig:
    """The markers an object carries (one or more faces) and the detector's acceptance limits."""

    markers: list[MarkerPlacement]
    #: Edge of a marker's black square, metres (the printed size, without the white margin).
    size_m: float = positive()
    dictionary: str = checked("DICT_4X4_50", choices=tuple(DICTIONARIES))
    #: An estimate whose corners reproject worse than this (RMS, pixels) is refused.
    max_reprojection_px: float = positive(2.0)
    #: Markers whose shortest side in the image is shorter than this are ignored: their pose is
    #: too uncertain to steer by (a face seen edge-on).
    min_side_px: float = positive(10.0)
    #: cv2.aruco's corner refinement. ``subpix`` (the default) measured 2.3 mm median error at
    #: 640 x 480 on Lift's rendered cube; ``apriltag`` 1.2 mm but about 12x the time per frame.
    corner_refinement: str = checked("subpix", choices=("subpix", "apriltag", "contour", "none"))

    def check(self, source: str) -> "MarkerConfig":
        if not self.markers:
            raise ConfigError(source, "markers", "expected at least one marker placement")
        seen: set[int] = set()
        for i, m in enumerate(self.markers):
            if m.id >= DICTIONARIES[self.dictionary]:
                raise ConfigError(source, f"markers[{i}].id", f"{self.dictionary} has ids 0..{DICTIONARIES[self.dictionary] - 1}, got {m.id}")
            if m.id in seen:
                raise ConfigError(source, f"markers[{i}].id", f"marker id {m.id} is placed twice")
            seen.add(m.id)
            if not np.linalg.norm(m.quaternion) > 1e-6:
                raise ConfigError(source, f"markers[{i}].quaternion", f"expected a non-zero quaternion, got {list(m.quaternion)}")
        return self


@dataclass
class ExtrinsicsConfig:
    """The camera's pose in the arm's base frame (``T_base_camera``, OpenCV camera axes), as a
    4x4 ``matrix`` or as ``position`` + (x, y, z, w) ``quaternion``: what a hand-eye
    calibration (``robolearn calibrate``) gives for a camera fixed in the cell."""

    matrix: list[list[float]] | None = None
    position: tuple[float, float, float] | None = None
    quaternion: tuple[float, float, float, float] | None = None

    def transform(self, source: str, prefix: str = "extrinsics.") -> np.ndarray:
        if self.matrix is not None:
            if self.position is not None or self.quaternion is not None:
                raise ConfigError(source, f"{prefix}matrix", "give either matrix or position + quaternion, not both")
            t = np.asarray(self.matrix, dtype=np.float64)
            if t.shape != (4, 4):
                raise ConfigError(source, f"{prefix}matrix", f"expected 4 rows of 4 numbers, got shape {t.shape}")
            r = t[:3, :3]
            if not np.allclose(t[3], [0, 0, 0, 1]) or not np.allclose(r.T @ r, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
                raise ConfigError(source, f"{prefix}matrix", "expected a rigid transform (orthonormal rotation, last row 0 0 0 1)")
            return t
        if self.position is None or self.quaternion is None:
            raise ConfigError(source, f"{prefix}position", "expected matrix, or both position and quaternion")
        if not np.linalg.norm(self.quaternion) > 1e-6:
            raise ConfigError(source, f"{prefix}quaternion", f"expected a non-zero quaternion, got {list(self.quaternion)}")
        return pose_to_matrix(np.asarray(self.position), np.asarray(self.quaternion))


@dataclass
class LostMarkerConfig:
    #: How long the last estimate may stand in for a marker that is not seen. Past it the
    #: object is lost: the arm holds and the episode fails.
    hold_s: float = positive(0.5)


@dataclass
class PerceptionFile:
    """A real cell's perception file: the object's markers, the camera's extrinsics and the
    lost-marker bound (``load_perception_file``)."""

    marker: MarkerConfig
    extrinsics: ExtrinsicsConfig
    lost: LostMarkerConfig = field(default_factory=LostMarkerConfig)


def marker_config(data: Any, source: str = "marker") -> MarkerConfig:
    return from_dict(MarkerConfig, data, source).check(source)


def load_perception_file(path: str | os.PathLike) -> tuple[MarkerConfig, np.ndarray, LostMarkerConfig]:
    """-> (markers, ``T_base_camera``, lost-marker bound) from a YAML file, or ConfigError naming it."""
    source = str(path)
    cfg = from_dict(PerceptionFile, load_yaml(path), source)
    return cfg.marker.check(source), cfg.extrinsics.transform(source), cfg.lost


def held_frames(hold_s: float, control_hz: float) -> int:
    """The whole frames of ``hold_s`` at ``control_hz`` (0: never hold, lost at the first miss)."""
    return int(math.floor(hold_s * control_hz + 1e-9))
