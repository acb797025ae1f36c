"""The one error a calibration step raises for data it cannot use."""
from __future__ import annotations

from robolearn.config import ConfigError


class CalibrationError(ConfigError):
    """Views, samples or settings a calibration cannot use (too few views, too few board
    corners, poses without rotation, two hand-eye methods that disagree). A ``ConfigError``:
    the command line prints it as one line naming the source and the field, exit code 2."""
