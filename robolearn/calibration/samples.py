"""Hand-eye samples: the robot's end-effector pose with, for each, what the camera saw.

    # samples.yaml (image paths relative to this file)
    samples:
      - gripper: {position: [0.41, -0.02, 0.33], quaternion: [0.99, 0.01, 0.05, 0.02]}  # T_base_gripper
        image: images/000.png          # the frame taken at that pose ...
      - gripper: {position: [...], quaternion: [...]}
        board: {position: [...], quaternion: [...]}  # ... or the board's pose in it, T_camera_board

Positions in metres, quaternions (x, y, z, w), both as the arm reports its end effector
(robosuite's ``robot0_eef_pos`` / ``robot0_eef_quat``). Each robot pose must be read while the
arm stands still at the moment of its frame: a pose stream that lags the images by a few
centimetres is the most common cause of the two hand-eye methods disagreeing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from robolearn.hal.cameras.calibration_file import PoseFields, pose_dict, pose_matrix
from robolearn.calibration.images import write_image
from robolearn.config import ConfigError, from_dict, load_yaml
from robolearn.data.format import atomic_write_bytes

SAMPLES_NAME = "samples.yaml"


@dataclass
class _SampleFields:
    gripper: PoseFields
    image: str | None = None
    board: PoseFields | None = None


@dataclass
class _SamplesFile:
    samples: list[_SampleFields] = field(default_factory=list)


@dataclass
class HandEyeSample:
    """T_base_gripper, and the image taken there (a path) or the board pose T_camera_board."""

    base_gripper: np.ndarray
    image: Path | None = None
    camera_board: np.ndarray | None = None


def samples_file(path: str | os.PathLike) -> Path:
    """``path`` itself, or the ``samples.yaml`` in a folder."""
    path = Path(path)
    return path / SAMPLES_NAME if path.is_dir() else path


def load_samples(path: str | os.PathLike) -> list[HandEyeSample]:
    path = samples_file(path)
    source = str(path)
    parsed = from_dict(_SamplesFile, load_yaml(path), source)
    out = []
    for i, s in enumerate(parsed.samples):
        where = f"samples[{i}]"
        if (s.image is None) == (s.board is None):
            raise ConfigError(source, where, "give either image (a file) or board (its pose in the camera), not both or neither")
        base_gripper = pose_matrix(source, f"{where}.gripper.", s.gripper.position, s.gripper.quaternion)
        if s.image is not None:
            image = Path(s.image).expanduser()
            image = image if image.is_absolute() else path.parent / image
            if not image.is_file():
                raise ConfigError(source, f"{where}.image", f"no such file: {image}")
            out.append(HandEyeSample(base_gripper, image=image))
        else:
            out.append(HandEyeSample(base_gripper, camera_board=pose_matrix(source, f"{where}.board.", s.board.position,
                                                                            s.board.quaternion)))
    return out


def write_samples(folder: str | os.PathLike, base_gripper: Sequence[np.ndarray], images: Sequence[np.ndarray]) -> Path:
    """A samples folder: ``images/NNN.png`` and ``samples.yaml`` naming them, each file
    written atomically; the YAML last, so a folder with a samples file is complete."""
    folder = Path(folder)
    entries = []
    for i, (pose, image) in enumerate(zip(base_gripper, images)):
        name = f"images/{i:03d}.png"
        write_image(folder / name, image)
        entries.append({"gripper": pose_dict(pose), "image": name})
    path = folder / SAMPLES_NAME
    atomic_write_bytes(path, yaml.safe_dump({"samples": entries}, sort_keys=False, default_flow_style=None).encode())
    return path
