"""A ChArUco board: its typed settings file, the picture to print, and finding it in an image.

Why ChArUco rather than a plain chessboard: every chessboard corner is identified by the
ArUco markers around it, so a view that shows only part of the board (the board tilted,
half out of frame, partly covered by the gripper) still gives matched 3-D/2-D points.
Views near the image edges are what pins down lens distortion, and those are exactly the
views a plain chessboard loses.

The board frame is OpenCV's: origin at the outer corner of the top-left square of the
printed picture, x along its rows, y down its columns, z into the board.

    # board.yaml
    squares_x: 7            # squares along x (the picture's width)
    squares_y: 5
    square_length_m: 0.04   # measure the print: printers scale
    marker_length_m: 0.03
    dictionary: DICT_5X5_100
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from robolearn.config import ConfigError, checked, from_dict, load_yaml, positive

#: The predefined ArUco dictionaries (cv2.aruco.DICT_<name>) and how many markers each holds.
DICTIONARIES = {f"DICT_{bits}_{n}": n for bits in ("4X4", "5X5", "6X6", "7X7") for n in (50, 100, 250, 1000)}


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError("calibration", "cv2", f"calibration needs OpenCV with aruco (pip install 'robolearn[opencv]'): {exc}") from None
    if not hasattr(cv2, "aruco") or not hasattr(cv2.aruco, "CharucoDetector"):
        raise ConfigError("calibration", "cv2", f"OpenCV {cv2.__version__} has no cv2.aruco.CharucoDetector; need OpenCV >= 4.7")
    return cv2


@dataclass(frozen=True)
class BoardConfig:
    squares_x: int = positive()
    squares_y: int = positive()
    square_length_m: float = positive()
    marker_length_m: float = positive()
    dictionary: str = checked("DICT_5X5_100", choices=tuple(DICTIONARIES))
    #: Boards printed from OpenCV before 4.6 start with a marker, not a black square, when
    #: squares_y is even; detecting one with the wrong pattern finds no corners at all.
    legacy_pattern: bool = False

    def validate(self, source: str) -> "BoardConfig":
        if self.squares_x < 2 or self.squares_y < 2:
            raise ConfigError(source, "squares_x", f"a ChArUco board needs at least 2 x 2 squares, got {self.squares_x} x {self.squares_y}")
        if self.marker_length_m >= self.square_length_m:
            raise ConfigError(source, "marker_length_m", f"a marker ({self.marker_length_m} m) must be smaller than its "
                                                         f"square ({self.square_length_m} m)")
        markers = self.squares_x * self.squares_y // 2
        if markers > DICTIONARIES[self.dictionary]:
            raise ConfigError(source, "dictionary", f"{self.dictionary} holds {DICTIONARIES[self.dictionary]} markers, "
                                                    f"the board needs {markers}")
        return self

    @property
    def corners(self) -> int:
        """Inner chessboard corners: the points a full view of the board gives."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_length_m, self.squares_y * self.square_length_m

    def as_dict(self) -> dict[str, Any]:
        return {"squares_x": self.squares_x, "squares_y": self.squares_y, "square_length_m": self.square_length_m,
                "marker_length_m": self.marker_length_m, "dictionary": self.dictionary,
                "legacy_pattern": self.legacy_pattern}


def board_config(data: Any, source: str = "board") -> BoardConfig:
    return from_dict(BoardConfig, data, str(source)).validate(str(source))


def load_board(path: str | os.PathLike) -> BoardConfig:
    return board_config(load_yaml(path), str(path))


@dataclass
class Detection:
    """The board corners found in one image: ``object_points`` (N, 3) in the board frame,
    metres, matched row by row with ``image_points`` (N, 2) in pixels; ``ids`` the corners'
    numbers; ``source`` where the image came from (a file, a frame), for error messages."""

    object_points: np.ndarray
    image_points: np.ndarray
    ids: np.ndarray
    source: str

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])


class Board:
    """A ``BoardConfig`` made into OpenCV's board and detector, built once and reused for
    every image (building the detector is what costs)."""

    def __init__(self, config: BoardConfig):
        self.config = config
        cv2 = self.cv2 = import_cv2()
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, config.dictionary))
        self.board = cv2.aruco.CharucoBoard((config.squares_x, config.squares_y), config.square_length_m,
                                            config.marker_length_m, dictionary)
        self.board.setLegacyPattern(config.legacy_pattern)
        self.detector = cv2.aruco.CharucoDetector(self.board)

    def image(self, pixels_per_square: int = 100, margin_squares: float = 0.5) -> np.ndarray:
        """The printable picture (uint8 grey), with a white margin of ``margin_squares``
        squares on every side: detection needs the quiet zone around the outer markers."""
        c = self.config
        margin = int(round(margin_squares * pixels_per_square))
        size = (c.squares_x * pixels_per_square + 2 * margin, c.squares_y * pixels_per_square + 2 * margin)
        return self.board.generateImage(size, marginSize=margin, borderBits=1)

    def detect(self, image: np.ndarray, source: str = "image") -> Detection:
        """Every board corner found in ``image`` (RGB or grey uint8); zero corners is a valid
        answer (a view without the board), which the calibration then counts and skips."""
        cv2 = self.cv2
        grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        corners, ids, _, _ = self.detector.detectBoard(grey)
        if ids is None or len(ids) == 0:
            return Detection(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int32), source)
        obj, img = self.board.matchImagePoints(corners, ids)
        return Detection(np.asarray(obj, np.float32).reshape(-1, 3), np.asarray(img, np.float32).reshape(-1, 2),
                         np.asarray(ids, np.int32).reshape(-1), source)

    def corner_points(self) -> np.ndarray:
        """All inner corners in the board frame, (N, 3) metres, in id order."""
        return np.asarray(self.board.getChessboardCorners(), np.float64).reshape(-1, 3)
