"""Deploying with perception: the policy's ``object`` estimated from a camera frame, not read from a simulator.

``PerceivedArm`` wraps the shielded arm (``PerceivedArm(SafetyShield(CameraArm(arm)))``). Each
observation it passes on has the arm's own ``object`` key removed unread (on a simulated task
that key is the simulator's state, which nothing on a real cell has) and written anew from
the pose the estimator finds in the newest frame of the perception camera, in the task's
``object`` layout (``robolearn.perception.layouts``). The policy, the recorder and the deploy
summary all see the estimate.

Why outside the shield: what this wrapper sends of its own, the hold below, goes through the
shield like every policy command (clipped to the workspace box and step limits, watched by
its watchdog, refused after an e-stop).

A frame without an estimate goes to the ``LostMarkerPolicy`` (``perception/lost.py``): the last
estimate stands in for at most ``hold_s``; past that the object is lost for the rest of the
episode. At that observation the arm is sent the hold command (no motion, the last gripper
command again, so a grasp stays closed), every later command is replaced by it, ``lost`` ends
the episode (deploy's ``stop_when``) and ``success()`` is False: a real arm never drives a stale
pose.

``plan_perception`` checks a launch file's ``deploy.perception`` (the view, the calibration
file: missing, unreadable, stale, of another camera or resolution, without a base-frame
extrinsic) before the arm takes control; ``sim_camera_calibration`` writes a simulated task
camera's exact calibration, what ``robolearn calibrate sim-camera`` writes.

The perception view is a local camera view (the controller file's ``cameras:`` or the launch
file's ``deploy.cameras``) or, with ``deploy.arm: remote``, a view the arm server serves: a
camera on the robot host, inside the served arm (``robolearn serve-arm`` of a controller file
with ``cameras:``), whose frames arrive in the RemoteArm's observations as ``<view>_image``.
Its resolution is read from the served arm's spec (INFO, which needs no control); there is no
local camera config to name its calibration file, so ``deploy.perception.calibration`` must.
With the remote arm's ``frame_encoding: jpeg`` the estimator runs on the decoded frame, JPEG's
loss included: the corners it finds move with the compression and the pose with them (on Lift's
rendered cube at 320 x 240 and quality 90, 1 to 5 mm from the raw frame's estimate over four
resets), and each estimate is still held to ``MarkerConfig.max_reprojection_px``; ``raw``
frames arrive bit-exact.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Container, Mapping

import numpy as np

from robolearn.hal.cameras.calibration_file import CameraCalibration, Extrinsic, check_calibration, load_calibration
from robolearn.config import ConfigError, from_dict, load_yaml
from robolearn.data.format import ObsFieldSpec
from robolearn.hal.arm import ArmSpec, Observation
from robolearn.hal.cameras.base import Frame
from robolearn.hal.cameras.config import CamerasConfig
from robolearn.launch import DeployPerception, resolve_path
from robolearn.perception.base import Estimate, ObjectPoseEstimator
from robolearn.perception.config import MarkerConfig, held_frames
from robolearn.perception.episode import PerceptionStats, hold_command
from robolearn.perception.layouts import OBJECT_LAYOUTS, object_vector
from robolearn.perception.lost import HELD, LOST, LostMarkerPolicy
from robolearn.perception.pose import CameraView, Pose

OBJECT_KEY = "object"


def object_dim(layout: str) -> int:
    """Numbers in the ``object`` vector of ``layout`` (lift: 10, can: 14)."""
    eef = {"robot0_eef_pos": np.zeros(3), "robot0_eef_quat": np.array([0.0, 0.0, 0.0, 1.0])}
    return int(object_vector(layout, Pose(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])), eef).shape[0])


@dataclass(frozen=True)
class PerceptionPlan:
    """A launch file's ``deploy.perception``, checked: what ``make_perceived_arm`` builds from."""

    estimator: str
    view: str
    image_key: str
    layout: str
    hold_s: float
    #: None: the simulated task's own markers (read from its scene once it is built).
    marker: MarkerConfig | None
    calibration: CameraCalibration | None
    calibration_path: Path | None
    #: The view is a camera on the robot host, its frames served by the arm server.
    served: bool = False

    @property
    def camera(self) -> str:
        """What the frames come from, in words: ``camera`` or ``served camera``."""
        return "served camera" if self.served else "camera"

    def camera_view(self) -> CameraView:
        cal = self.calibration
        return CameraView(intrinsics=cal.intrinsics, T_arm_camera=cal.extrinsic.transform, distortion=cal.distortion)

    def words(self) -> str:
        where = f"{self.calibration_path}" if self.calibration_path else "the simulator"
        return f"{self.estimator} on {self.camera} {self.view!r} (pose from {where}), lost after {self.hold_s:g} s unseen"


@dataclass(frozen=True)
class PerceptionView:
    """The perception view's frames as configured: their size and the calibration file the
    view's own config names (a served view has none)."""

    width: int
    height: int
    served: bool
    calibration: Path | None


def perception_calibration(path: Path, view: str, width: int, height: int, max_age_days: float | None) -> CameraCalibration:
    """The view's calibration file, checked for perception: this camera and resolution, fresh
    enough, with the camera's pose in the arm's base frame. Errors name the file and its field."""
    data = load_yaml(path)
    if "K" not in data and "fx" in data:
        raise ConfigError(path, "extrinsic", "an intrinsics-only file; perception needs the camera's pose in the arm's base "
                          "frame: run `robolearn calibrate intrinsics` and `robolearn calibrate hand-eye --mode eye-to-hand`")
    cal = check_calibration(load_calibration(path), path, width=width, height=height, camera=view,
                            max_age_days=max_age_days, need_extrinsic=True)
    if cal.extrinsic.frame != "base":
        raise ConfigError(path, "extrinsic.frame", f"{cal.extrinsic.frame!r}: perception needs a camera fixed in the cell "
                          "(frame: base, from `robolearn calibrate hand-eye --mode eye-to-hand`)")
    return cal


def served_views(spec: ArmSpec, local: Container[str] = ()) -> dict[str, tuple[int, int]]:
    """The camera views a served arm's ``spec`` holds that are not in ``local``: each
    ``<view>_image`` key of uint8 H x W x 3 frames -> (width, height)."""
    out = {}
    for key, field in spec.obs_spec.items():
        view, shape = key[: -len("_image")], tuple(field.shape)
        if key.endswith("_image") and view not in local and str(field.dtype) == "uint8" and len(shape) == 3 and shape[2] == 3:
            out[view] = (int(shape[1]), int(shape[0]))
    return out


def perception_view(name: str, cameras: CamerasConfig | None, served: Callable[[], ArmSpec] | None,
                    source: str) -> PerceptionView:
    """Camera view ``name``: a local one, else (``served``: the arm server's spec, asked only
    here) one the arm server serves. Neither is refused, listing both."""
    views = dict(cameras.views) if cameras is not None else {}
    if name in views:
        view = views[name]
        own = Path(view.calibration) if view.calibration else None  # made absolute by deploy.deployment_cameras
        return PerceptionView(view.width, view.height, served=False, calibration=own)
    configured = sorted(views) or "none"
    if served is None:
        raise ConfigError(source, "deploy.perception.view", f"{name!r} is not a configured camera view (configured: "
                          f"{configured}); add it under deploy.cameras.views")
    remote = served_views(served(), views)
    if name not in remote:
        raise ConfigError(source, "deploy.perception.view", f"{name!r} is neither a configured camera view (configured: "
                          f"{configured}) nor one the arm server serves (served: {sorted(remote) or 'none'}); add it "
                          "under deploy.cameras.views, or to the cameras: of the controller file the robot host serves")
    width, height = remote[name]
    return PerceptionView(width, height, served=True, calibration=None)


def calibration_path(section: DeployPerception, view: PerceptionView, source: str) -> Path | None:
    """The perception view's calibration file (``deploy.perception.calibration``, else the one the
    view's config names), which must exist; None only where the estimator needs none."""
    where = "deploy.perception.calibration"
    own = view.calibration
    path = resolve_path(section.calibration).absolute() if section.calibration is not None else own
    if own is not None and path != own:
        raise ConfigError(source, where, f"{path} is not the file camera {section.view!r} names ({own}); "
                          "one camera has one calibration")
    if path is None:
        if section.estimator == "marker":
            served = (f"; view {section.view!r} is served by the arm server, with no local camera config to name it, "
                      "so name it here") if view.served else ""
            raise ConfigError(source, where, "missing: the marker estimator needs the camera's calibration file "
                              f"(intrinsics and its pose in the arm's base frame, from `robolearn calibrate`){served}")
        return None
    if not path.is_file():
        raise ConfigError(source, where, f"no such file: {path} (make it with `robolearn calibrate intrinsics` then "
                          "`robolearn calibrate hand-eye --mode eye-to-hand`)")
    return path


def plan_perception(section: DeployPerception, cameras: CamerasConfig | None, source: str, task: str | None,
                    simulated: bool, served: Callable[[], ArmSpec] | None = None) -> PerceptionPlan:
    """Check ``deploy.perception`` against the configured cameras and its files, before the arm
    takes control. ``simulated``: the arm is a simulated task's (the task's markers and ground
    truth exist); ``served``: a remote arm's spec (``RemoteArm.spec``: INFO, no control), asked
    only when the view is not a local one. The settings are checked before the arm server is asked."""
    where = "deploy.perception"
    if task not in OBJECT_LAYOUTS:
        raise ConfigError(source, "task", f"perception writes the object observation of tasks {sorted(OBJECT_LAYOUTS)}, "
                          f"and {task!r} has no object layout")
    if not simulated and (section.estimator == "ground_truth" or section.marker is None):
        field = f"{where}.estimator" if section.estimator == "ground_truth" else f"{where}.marker"
        raise ConfigError(source, field, "ground truth and a task's own markers exist in a simulated scene only; on a real "
                          "arm use estimator: marker and describe the object's markers (size_m, markers: [...])")
    marker = None
    if section.marker is not None:
        marker = from_dict(MarkerConfig, section.marker, source, field_prefix=f"{where}.marker.").check(source)
    view = perception_view(section.view, cameras, served, source)
    path = calibration_path(section, view, source)
    cal = None if path is None else perception_calibration(path, section.view, view.width, view.height,
                                                           section.max_calibration_age_days)
    return PerceptionPlan(estimator=section.estimator, view=section.view, image_key=f"{section.view}_image", layout=str(task),
                          hold_s=section.hold_s, marker=marker, calibration=cal, calibration_path=path, served=view.served)


class PerceivedArm:
    """``arm``: the shielded arm with the perception camera; ``estimator``; ``view``: the frame's
    meaning (intrinsics, the camera's pose in the arm frame); ``image_key``: the camera's
    observation key; ``layout``: the task whose ``object`` layout is written; ``max_held``: the
    lost-marker bound in frames (``perception.config.held_frames``)."""

    def __init__(self, arm: Any, estimator: ObjectPoseEstimator, view: CameraView, image_key: str, layout: str,
                 max_held: int):
        self.arm = arm
        self.estimator, self.view, self.image_key, self.layout = estimator, view, image_key, layout
        self.lost = LostMarkerPolicy(max_held)
        self.perception_stats = PerceptionStats()
        #: Each finished episode's ``PerceptionStats`` (the current one is ``perception_stats``).
        self.episode_stats: list[PerceptionStats] = []
        #: The estimate of the newest observation (what its ``object`` was written from).
        self.last_estimate: Estimate | None = None
        self._dim = object_dim(layout)
        self._last_gripper = 0.0
        inner = arm.spec
        obs_spec = dict(inner.obs_spec)
        obs_spec[OBJECT_KEY] = ObsFieldSpec(shape=(self._dim,), dtype="float32")
        self.spec = ArmSpec(name=inner.name, obs_spec=obs_spec, action_spec=inner.action_spec, control_hz=inner.control_hz)

    # -- Arm protocol -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.arm.connected

    def connect(self) -> None:
        self.arm.connect()

    def home(self) -> Observation:
        """A new episode: the lost-marker bound starts again, and the first frame is perceived."""
        if self.perception_stats.frames:
            self.episode_stats.append(self.perception_stats)
        self.perception_stats = PerceptionStats()
        self.lost.reset()
        self._last_gripper = 0.0
        return self._perceived(self.arm.home())

    def observe(self) -> Observation:
        return self._perceived(self.arm.observe())

    def send(self, command: np.ndarray) -> np.ndarray:
        if self.lost.lost:
            return self.arm.send(self._hold())
        applied = self.arm.send(command)
        self._last_gripper = float(np.asarray(applied, dtype=np.float64).reshape(-1)[-1])
        return applied

    def stop(self) -> None:
        self.arm.stop()

    def close(self) -> None:
        if self.perception_stats.frames:
            self.episode_stats.append(self.perception_stats)
            self.perception_stats = PerceptionStats()
        self.arm.close()

    def success(self) -> bool | None:
        """The task's verdict (None on an arm that cannot tell); never a success once the object was lost."""
        if self.lost.lost:
            return False
        fn = getattr(self.arm, "success", None)
        return bool(fn()) if callable(fn) else None

    def __getattr__(self, name: str) -> Any:  # the shield's stats and estop, a task arm's env, get_state, reward, ...
        if name.startswith("_") or name == "arm":
            raise AttributeError(name)
        return getattr(self.arm, name)

    # -- internals --------------------------------------------------------------------
    def _hold(self) -> np.ndarray:
        return hold_command(self.spec.action_spec.dim, self._last_gripper)

    def _perceived(self, obs: Observation) -> Observation:
        # The arm's own object key is dropped unread: on a simulated task it is the simulator's state.
        data = {k: v for k, v in obs.data.items() if k != OBJECT_KEY}
        image = data.get(self.image_key)
        s = self.perception_stats
        if image is None:
            estimate = Estimate.missing(f"no current frame in {self.image_key}")
        else:
            estimate = self.estimator.estimate(Frame(image=image, timestamp=obs.timestamp, index=s.frames), self.view,
                                               prior=self.lost.last)
        self.last_estimate = estimate
        was_lost = self.lost.lost
        tracked = self.lost.update(estimate)
        s.frames += 1
        if tracked.status in (HELD, LOST):
            s.lost_frames += 1
            s.held_frames += tracked.status == HELD
        if tracked.status == LOST:
            s.lost_reason = tracked.reason
            data[OBJECT_KEY] = np.zeros(self._dim, dtype=np.float32)
            if not was_lost:
                self.arm.send(self._hold())  # through the shield: stop moving towards a pose no longer seen
        else:
            data[OBJECT_KEY] = object_vector(self.layout, tracked.pose, data)
        return Observation(timestamp=obs.timestamp, data=data)


def _task_env(arm: Any) -> Any:
    """The simulated task under the wrappers (a ``TaskBoundArm``'s ``env``), or None."""
    return getattr(arm, "env", None)


def make_perceived_arm(arm: Any, plan: PerceptionPlan, control_hz: float, source: str) -> PerceivedArm:
    """``PerceivedArm`` over the shielded ``arm`` as ``plan`` says; the task's own markers and
    its ground truth are read from the simulated task's scene."""
    env = _task_env(arm)
    marker = plan.marker
    if plan.estimator == "marker" and marker is None:
        if env is None or not hasattr(env, "marker_config"):
            raise ConfigError(source, "deploy.perception.marker", f"task {plan.layout!r} carries no markers in its scene; "
                              "describe the object's markers here (size_m, markers: [...])")
        marker = env.marker_config()
    if plan.estimator == "marker":
        from robolearn.perception.marker import MarkerEstimator

        estimator: ObjectPoseEstimator = MarkerEstimator(marker)
        view = plan.camera_view()
    else:
        from robolearn.hal.cameras.mujoco_camera import robosuite_handles
        from robolearn.perception.ground_truth import GroundTruth

        if env is None or not hasattr(env, "object_body"):
            raise ConfigError(source, "deploy.perception.estimator", "ground_truth reads a simulated MuJoCo task's object "
                              "pose; this arm has none")
        estimator = GroundTruth(robosuite_handles(env.arm), env.object_body)
        # Ground truth reads no pixels: the view only says what a frame would have meant.
        view = plan.camera_view() if plan.calibration is not None else CameraView(intrinsics=None, T_arm_camera=np.eye(4))
    return PerceivedArm(arm, estimator, view, plan.image_key, plan.layout, held_frames(plan.hold_s, control_hz))


def sim_camera_calibration(task: str, view: str, width: int, height: int, env: Mapping[str, Any] | None = None) -> CameraCalibration:
    """The exact calibration of camera ``view`` in simulated task ``task``'s scene at
    ``width`` x ``height``: K from the camera's field of view (with MuJoCo's half-pixel
    principal point, ``perception.pose.mujoco_view``), no distortion, and its pose in the
    world frame, which is robosuite's arm frame, as a ``base`` extrinsic (``method: model``)."""
    import mujoco

    from robolearn.hal.cameras.base import Intrinsics
    from robolearn.hal.cameras.mujoco_camera import robosuite_handles
    from robolearn.perception.pose import mujoco_view
    from robolearn.tasks.base import make_env

    sim = make_env(task, **dict(env or {}))
    try:
        sim.reset(seed=0)
        arm = getattr(sim, "arm", None)
        if arm is None or not hasattr(arm, "env"):
            raise ConfigError("--task", "task", f"task {task!r} is not a MuJoCo (robosuite) scene")
        model, data = robosuite_handles(arm)()
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, view)
        if cam < 0:
            names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
            raise ConfigError("--view", "view", f"task {task!r}'s scene has no camera {view!r}; it has {names}")
        v = mujoco_view(model, data, cam, Intrinsics.from_fovy(float(model.cam_fovy[cam]), width, height))
    finally:
        sim.close()
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    extrinsic = Extrinsic(frame="base", transform=v.T_arm_camera, method="model", samples=1, residual_mm=0.0,
                          residual_deg=0.0, disagreement_mm=0.0, disagreement_deg=0.0, date=now)
    return CameraCalibration(camera=view, width=int(width), height=int(height), K=v.intrinsics.matrix(),
                             distortion=np.zeros(5), rms_px=0.0, views=1, date=now, extrinsic=extrinsic)
