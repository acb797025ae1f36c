"""Fiducial markers and a perception camera added to a robosuite scene, so the marker
estimator runs on rendered frames exactly as on a real cell's pictures.

Each marker is a thin visual box on a face of the object: ``contype``/``conaffinity`` 0 and no
mass, so the physics is the scene's own (``tests/test_perception.py`` holds an object's
trajectory to be bit-identical with and without them). Its texture is the ArUco image with a
one-cell white margin (the quiet zone detectors need), written once per dictionary and id to a
cache folder with an atomic rename (MuJoCo reads texture files only while it compiles).

robosuite builds its model in ``_load_model``; ``marked_env`` registers a subclass of a
robosuite environment whose ``_load_model`` then calls a decorator on the environment (add
the markers, the camera) before robosuite compiles the XML.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import numpy as np

from robolearn.perception.config import MarkerConfig, MarkerPlacement
from robolearn.perception.marker import import_cv2
from robolearn.geometry import mat_to_quat
from robolearn.tempfiles import new_temp_file

#: Texture pixels per marker cell.
_PX_PER_CELL = 16
#: Half thickness of a marker plate (m); its outer face is 2x this off the object's face.
PLATE_HALF_THICKNESS = 0.0005
#: The marker's black square as a share of its plate (the rest is the white margin).
_MARGIN_CELLS = 1


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robolearn" / "markers"


def _cells(dictionary: str) -> int:
    """Cells along a marker's black square: its bits plus a one-cell black border each side."""
    cv2 = import_cv2()
    return int(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)).markerSize) + 2


def plate_size(size_m: float, dictionary: str) -> float:
    """Edge of the plate that carries a ``size_m`` marker with its white margin."""
    cells = _cells(dictionary)
    return size_m * (cells + 2 * _MARGIN_CELLS) / cells


def marker_size_for(plate_m: float, dictionary: str) -> float:
    cells = _cells(dictionary)
    return plate_m * cells / (cells + 2 * _MARGIN_CELLS)


def marker_png(dictionary: str, marker_id: int, folder: Path | None = None) -> Path:
    """The marker's texture (RGB PNG with its margin), made once and reused."""
    folder = Path(folder or cache_dir())
    path = folder / f"{dictionary}_{marker_id}_{_PX_PER_CELL}.png"
    if path.is_file():
        return path
    cv2 = import_cv2()
    cells = _cells(dictionary)
    image = cv2.aruco.generateImageMarker(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)),
                                          int(marker_id), cells * _PX_PER_CELL)
    m = _MARGIN_CELLS * _PX_PER_CELL
    image = cv2.copyMakeBorder(image, m, m, m, m, cv2.BORDER_CONSTANT, value=255)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    if not ok:  # pragma: no cover - encoding a small uint8 image does not fail
        raise RuntimeError(f"could not encode marker {marker_id} of {dictionary}")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(folder, f".{path.stem}.", ".png")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.tobytes())
        os.replace(tmp, path)  # a second writer renames the same bytes over it
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fmt(values: Any) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.asarray(values, dtype=np.float64).reshape(-1))


def _face_rotation(normal: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The marker frame on a face: z along the outward ``normal``, y along ``up`` (image up)."""
    z = normal / np.linalg.norm(normal)
    y = up - (up @ z) * z
    y = y / np.linalg.norm(y)
    return np.column_stack([np.cross(y, z), y, z])


def face_placement(marker_id: int, centre: np.ndarray, normal: np.ndarray, up: np.ndarray) -> MarkerPlacement:
    """A marker on the face with outward ``normal`` whose centre is ``centre`` (object frame):
    the placement is the marker's printed surface, 2 plate half-thicknesses off the face."""
    r = _face_rotation(np.asarray(normal, dtype=np.float64), np.asarray(up, dtype=np.float64))
    pos = np.asarray(centre, dtype=np.float64) + 2 * PLATE_HALF_THICKNESS * r[:, 2]
    return MarkerPlacement(id=int(marker_id), position=tuple(pos.tolist()), quaternion=tuple(mat_to_quat(r).tolist()))


def box_placements(half_size: np.ndarray, first_id: int = 0) -> list[MarkerPlacement]:
    """Markers on the top and the four sides of a box (object frame at its centre)."""
    hx, hy, hz = (float(v) for v in half_size)
    z, x, y = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    faces = [(np.array([0, 0, hz]), z, x), (np.array([hx, 0, 0]), x, z), (np.array([0, hy, 0]), y, z),
             (np.array([-hx, 0, 0]), -x, z), (np.array([0, -hy, 0]), -y, z)]
    return [face_placement(first_id + k, c, n, u) for k, (c, n, u) in enumerate(faces)]


def add_marker_plates(model: Any, body: str, config: MarkerConfig, prefix: str) -> None:
    """Add ``config``'s markers as visual plates on ``body`` of a robosuite ``model``
    (``MujocoWorldBase``: ``asset`` and ``worldbody`` XML elements), before it is compiled."""
    element = model.worldbody.find(f".//body[@name='{body}']")
    if element is None:
        raise ValueError(f"marker plates: the scene has no body {body!r}")
    half = plate_size(config.size_m, config.dictionary) / 2.0
    for m in config.markers:
        name = f"{prefix}_marker{m.id}"
        ET.SubElement(model.asset, "texture", name=name, type="2d", file=str(marker_png(config.dictionary, m.id)))
        ET.SubElement(model.asset, "material", name=name, texture=name, specular="0", shininess="0", reflectance="0")
        t = m.T_object_marker()
        centre = t[:3, 3] - PLATE_HALF_THICKNESS * t[:3, 2]
        x, y, z, w = m.quaternion
        ET.SubElement(element, "geom", name=name, type="box", size=_fmt([half, half, PLATE_HALF_THICKNESS]),
                      pos=_fmt(centre), quat=_fmt([w, x, y, z]), material=name, contype="0", conaffinity="0",
                      group="1", mass="0")


def add_camera(model: Any, name: str, position: np.ndarray, target: np.ndarray, fovy_deg: float) -> None:
    """A fixed camera at ``position`` looking at ``target`` (world frame), image up towards +z."""
    position, target = np.asarray(position, dtype=np.float64), np.asarray(target, dtype=np.float64)
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    ET.SubElement(model.worldbody, "camera", name=name, mode="fixed", pos=_fmt(position),
                  xyaxes=_fmt(np.concatenate([right, up])), fovy=f"{float(fovy_deg):g}")


def mark_object(env: Any, body: str, half_size: np.ndarray, plate_m: float, camera: dict[str, Any], prefix: str,
                dictionary: str = "DICT_4X4_50") -> MarkerConfig:
    """Markers on the top and sides of ``body`` (``box_placements(half_size)``, plates ``plate_m``
    wide) and the ``perception`` camera (``camera``: ``position``, ``target``, ``fovy_deg`` in the
    world frame) added to a robosuite env's model; the placements are kept on the env as
    ``robolearn_markers`` for the estimator."""
    config = MarkerConfig(markers=box_placements(half_size), size_m=marker_size_for(plate_m, dictionary), dictionary=dictionary)
    add_marker_plates(env.model, body, config, prefix)
    add_camera(env.model, "perception", camera["position"], camera["target"], camera["fovy_deg"])
    env.robolearn_markers = config
    return config


def marked_env(base: str, decorate: Callable[[Any], None]) -> str:
    """The registered name of robosuite environment ``base`` whose model ``decorate(env)``
    amends after robosuite's own ``_load_model`` (registered once per process)."""
    from robolearn.sim_compat import import_robosuite

    import_robosuite()
    from robosuite.environments.base import REGISTERED_ENVS

    name = f"Marked{base}"
    if name not in REGISTERED_ENVS:
        parent = REGISTERED_ENVS[base]

        def _load_model(self: Any) -> None:
            parent._load_model(self)
            decorate(self)

        type(name, (parent,), {"_load_model": _load_model, "__doc__": f"robosuite {base} with fiducial markers."})
    return name
