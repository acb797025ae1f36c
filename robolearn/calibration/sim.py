"""A ChArUco board in a MuJoCo scene, rendered by the HAL's MuJoCo camera at known poses.

Why: calibration code that is only tested on projected points never meets what a camera
gives (sampled pixels, edges without anti-aliasing, corner detection on a picture). Here the
board picture (``Board.image``) is the texture of a plane, the camera is a MuJoCo camera
rendered through ``MujocoCamera``, and every pose is known exactly, so a calibration of
the rendered frames can be compared with the truth: the focal length MuJoCo derives from
the camera's ``fovy`` and the camera's pose on the "hand".

The scene has two mocap bodies: ``hand`` (the robot's gripper, moved to each sample pose
in the world frame, which stands for the robot base) and ``mount`` (fixed at the world
origin). Eye-in-hand puts the camera on the hand and the board on the mount; eye-to-hand
puts the camera on the mount and the board on the hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robolearn.calibration.board import Board, import_cv2
from robolearn.geometry import invert, make_transform
from robolearn.geometry import mat_to_quat
from robolearn.hal.cameras.base import Intrinsics

#: MuJoCo cameras look down their -z with y up; OpenCV's look down +z with y down.
MJ_FROM_CV = np.diag([1.0, -1.0, -1.0])
PIXELS_PER_SQUARE = 120
MARGIN_SQUARES = 0.5


def _wxyz(rotation: np.ndarray) -> str:
    x, y, z, w = mat_to_quat(rotation)
    return f"{w:.12g} {x:.12g} {y:.12g} {z:.12g}"


def _xyz(v: np.ndarray) -> str:
    return " ".join(f"{float(c):.12g}" for c in v)


def scene_xml(board: Board, T_camera_parent_cam: np.ndarray, T_board_parent_board: np.ndarray, fovy_deg: float,
              camera_on_hand: bool) -> str:
    """The scene's MJCF. ``T_*_parent_*``: the OpenCV camera's and the board frame's pose in
    the body that holds each (the hand or the mount)."""
    c = board.config
    w, h = c.size_m
    margin = MARGIN_SQUARES * c.square_length_m
    # The plane's texture runs along its +x and down its -y (the picture's top at +y), and
    # its visible face is +z: the board frame (x right, y down, z into the board) is the
    # plane's frame turned half a turn about x, with the plane centred on the board.
    plane_in_board = make_transform(np.diag([1.0, -1.0, -1.0]), [w / 2, h / 2, 0.0])
    geom = T_board_parent_board @ plane_in_board
    cam_r = T_camera_parent_cam[:3, :3] @ MJ_FROM_CV
    camera = (f'<camera name="calib" fovy="{fovy_deg:.12g}" pos="{_xyz(T_camera_parent_cam[:3, 3])}" '
              f'quat="{_wxyz(cam_r)}"/>')
    plane = (f'<geom type="plane" size="{w / 2 + margin:.12g} {h / 2 + margin:.12g} 0.01" material="board" '
             f'pos="{_xyz(geom[:3, 3])}" quat="{_wxyz(geom[:3, :3])}" contype="0" conaffinity="0"/>')
    on_hand, on_mount = (camera, plane) if camera_on_hand else (plane, camera)
    return f"""<mujoco model="charuco_calibration">
  <asset>
    <texture name="board" type="2d" file="board.png"/>
    <material name="board" texture="board" texrepeat="1 1" texuniform="false" specular="0" shininess="0" reflectance="0"/>
  </asset>
  <visual><headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/></visual>
  <worldbody>
    <body name="mount" mocap="true">{on_mount}</body>
    <body name="hand" mocap="true" pos="0 0 1">{on_hand}</body>
  </worldbody>
</mujoco>"""


class CharucoScene:
    """The scene built and a ``MujocoCamera`` on it; ``render(T_base_hand)`` moves the hand
    and returns the frame (uint8 RGB). Use from one thread: the GL context belongs to it."""

    def __init__(self, board: Board, width: int, height: int, fovy_deg: float, *, camera_on_hand: bool,
                 T_camera_parent_cam: np.ndarray, T_board_parent_board: np.ndarray, samples: int = 4):
        from robolearn.hal.cameras.mujoco_camera import MujocoCamera, _mujoco

        cv2 = import_cv2()
        mujoco = _mujoco()
        ok, png = cv2.imencode(".png", board.image(PIXELS_PER_SQUARE, MARGIN_SQUARES))
        assert ok
        xml = scene_xml(board, T_camera_parent_cam, T_board_parent_board, fovy_deg, camera_on_hand)
        self.model = mujoco.MjModel.from_xml_string(xml, assets={"board.png": png.tobytes()})
        self.data = mujoco.MjData(self.model)
        self._mujoco = mujoco
        self._hand = self.model.body("hand").mocapid[0]
        self.camera = MujocoCamera(lambda: (self.model, self.data), "calib", width, height, name="calib", samples=samples)
        self.camera.connect()

    @property
    def intrinsics(self) -> Intrinsics:
        """What the simulator's camera is: the focal length its ``fovy`` gives."""
        return self.camera.spec.intrinsics

    def render(self, T_base_hand: np.ndarray) -> np.ndarray:
        self.data.mocap_pos[self._hand] = T_base_hand[:3, 3]
        x, y, z, w = mat_to_quat(T_base_hand[:3, :3])
        self.data.mocap_quat[self._hand] = [w, x, y, z]
        self._mujoco.mj_forward(self.model, self.data)
        return self.camera.read().image

    def close(self) -> None:
        self.camera.close()


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """T_parent_camera of an OpenCV camera at ``eye`` looking at ``target`` (z forward), its
    image rotated by ``roll`` radians about the view axis."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    r = np.column_stack([x, y, z]) @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return make_transform(r, eye)


def random_board_views(board: Board, intrinsics: Intrinsics, width: int, height: int, count: int,
                       rng: np.random.Generator, *, distance_m: tuple[float, float] = (0.35, 0.6),
                       max_tilt_deg: float = 40.0, margin_px: float = 8.0) -> list[np.ndarray]:
    """``count`` camera poses T_board_camera from which the whole board is in the image
    (``margin_px`` from its edges), looking at varied points of it from varied tilts and
    rolls: the spread of views a careful person captures for intrinsics."""
    cv2 = import_cv2()
    k = intrinsics.matrix()
    corners = board.corner_points()
    w, h = board.config.size_m
    out: list[np.ndarray] = []
    for _ in range(200 * count):
        if len(out) == count:
            break
        tilt = math.radians(rng.uniform(0.0, max_tilt_deg))
        heading = rng.uniform(0.0, 2 * math.pi)
        direction = np.array([math.sin(tilt) * math.cos(heading), math.sin(tilt) * math.sin(heading), -math.cos(tilt)])
        target = np.array([w / 2 + rng.uniform(-0.3, 0.3) * w, h / 2 + rng.uniform(-0.3, 0.3) * h, 0.0])
        eye = target + rng.uniform(*distance_m) * direction
        pose = look_at(eye, target, roll=rng.uniform(-0.6, 0.6))
        cam_board = invert(pose)
        rvec = cv2.Rodrigues(cam_board[:3, :3])[0]
        pix, _ = cv2.projectPoints(corners, rvec, cam_board[:3, 3], k, np.zeros(5))
        pix = pix.reshape(-1, 2)
        if (pix.min(axis=0) > margin_px).all() and (pix[:, 0] < width - margin_px).all() and (pix[:, 1] < height - margin_px).all():
            out.append(pose)
    if len(out) < count:
        raise ValueError(f"found {len(out)} of {count} views with the whole board in a {width}x{height} image")
    return out


@dataclass
class SimSample:
    """One rendered hand-eye sample: the hand's pose in the base frame, and the frame."""

    base_hand: np.ndarray
    image: np.ndarray


def default_camera_on_hand() -> np.ndarray:
    """The simulated wrist camera: 6 cm off the gripper's axis, 4 cm ahead, tilted 10 degrees."""
    tilt = math.radians(10.0)
    r = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(tilt), -math.sin(tilt)], [0.0, math.sin(tilt), math.cos(tilt)]])
    return make_transform(r, [0.03, -0.06, 0.04])


def default_board_on_hand(board: Board) -> np.ndarray:
    """The board held 8 cm in front of the gripper, centred, facing away from it."""
    w, h = board.config.size_m
    return make_transform(np.eye(3), [-w / 2, -h / 2, 0.08])


def render_hand_eye_samples(scene: CharucoScene, board: Board, mode: str, count: int, rng: np.random.Generator, *,
                            T_hand_camera: np.ndarray | None = None, T_hand_board: np.ndarray | None = None,
                            T_base_camera: np.ndarray | None = None) -> list[SimSample]:
    """Hand poses from which the camera sees the whole board, and the frames rendered there.

    eye-in-hand: the board lies at the mount (world origin); each sample is a camera view of
    it, and the hand is where that puts it (T_base_hand = T_base_camera @ inv(T_hand_camera)).
    eye-to-hand: the camera is at ``T_base_camera``; each sample is a board pose in its view
    (the same random views seen from the board), and the hand is where that holds the board."""
    intr = scene.intrinsics
    views = random_board_views(board, intr, scene.camera.spec.width, scene.camera.spec.height, count, rng,
                               max_tilt_deg=35.0)
    samples = []
    for T_board_camera in views:
        if mode == "eye-in-hand":
            hand = T_board_camera @ invert(T_hand_camera)
        else:
            hand = T_base_camera @ invert(T_board_camera) @ invert(T_hand_board)
        samples.append(SimSample(hand, scene.render(hand)))
    return samples
