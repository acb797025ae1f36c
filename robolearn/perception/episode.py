"""``PerceivedTask``: a simulated task whose ``object`` observation comes from its cameras.

It wraps a task (``reset``/``step`` as ``robolearn.tasks.base.TaskEnv``) and, after every reset
and step, renders the task's perception cameras, estimates the object's pose in each frame,
keeps the best estimate (the most markers seen, then the smallest reprojection error), and writes
the task's ``object`` vector from it instead of the simulator's state. The simulator's
own pose is read alongside, only to measure the estimator (``stats``).

A frame without an estimate goes to the ``LostMarkerPolicy``: the last estimate is held for at
most ``max_held`` frames; past that the object is lost, and the next step sends the hold
command (no motion, the last gripper command again: the gripper keeps its state) instead of
the policy's and ends the episode as a failure. The episode loop needs nothing new for it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from robolearn.config import ConfigError, require_number
from robolearn.hal.cameras.base import Camera
from robolearn.perception.base import Estimate, ObjectPoseEstimator
from robolearn.perception.ground_truth import GroundTruth
from robolearn.perception.layouts import object_vector
from robolearn.perception.lost import HELD, LOST, SEEN, LostMarkerPolicy
from robolearn.perception.pose import CameraView, Pose


@dataclass
class PerceptionStats:
    """One episode's perception record: errors on frames with a fresh estimate, frame counts."""

    pos_err_mm: list[float] = field(default_factory=list)
    rot_err_deg: list[float] = field(default_factory=list)
    frames: int = 0
    #: Frames without a fresh estimate (held or lost).
    lost_frames: int = 0
    held_frames: int = 0
    #: Why the episode was failed for a lost object ("" when it was not).
    lost_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _better(a: Estimate, b: Estimate) -> bool:
    """More markers pin a pose better than fewer; among equals, the smaller reprojection error."""
    return (len(a.markers), -(a.reprojection_px or 0.0)) > (len(b.markers), -(b.reprojection_px or 0.0))


def hold_command(dim: int, last_gripper: float) -> np.ndarray:
    """No motion, the gripper's last command: what an arm is sent while it holds."""
    cmd = np.zeros(dim, dtype=np.float32)
    cmd[-1] = last_gripper
    return cmd


class PerceivedTask:
    """``env``: the task; ``cameras``: (``Camera`` of its scene, connected on first use; -> its
    ``CameraView`` now) pairs; ``estimator``; ``truth``: the simulator's pose (for the errors; None
    on a cell without one); ``max_held``: the lost-marker bound."""

    def __init__(self, env: Any, cameras: list[tuple[Camera, Callable[[], CameraView]]], estimator: ObjectPoseEstimator,
                 truth: GroundTruth | None, max_held: int, layout: str | None = None):
        self.env, self.cameras, self.estimator, self.truth = env, list(cameras), estimator, truth
        self.layout = layout or env.name
        self.lost = LostMarkerPolicy(max_held)
        self.stats = PerceptionStats()
        self._last_gripper = 0.0
        self.last_timing_ms = (0.0, 0.0)

    def __getattr__(self, name: str) -> Any:  # horizon, action_spec, render, get_state, close, ...
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        obs = self.env.reset(seed=seed)
        self.lost.reset()
        self.stats = PerceptionStats()
        self._last_gripper = 0.0
        return self._perceive(obs)

    def step(self, action: np.ndarray) -> Any:
        if self.lost.lost:
            result = self.env.step(hold_command(len(np.asarray(action).reshape(-1)), self._last_gripper))
            info = {**result.info, "perception": self.lost.reason}
            return dataclasses.replace(result, obs=self._blind(result.obs), reward=0.0, done=True, success=False, info=info)
        self._last_gripper = float(np.asarray(action, dtype=np.float64).reshape(-1)[-1])
        result = self.env.step(action)
        return dataclasses.replace(result, obs=self._perceive(result.obs))

    def _perceive(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tracked = self.lost.update(self.estimate_now(self.lost.last))
        s = self.stats
        s.frames += 1
        if tracked.status == SEEN and self.truth is not None:
            pos, rot = tracked.pose.errors_to(self.truth.pose())
            s.pos_err_mm.append(pos)
            s.rot_err_deg.append(rot)
        if tracked.status in (HELD, LOST):
            s.lost_frames += 1
            s.held_frames += tracked.status == HELD
        if tracked.status == LOST:
            s.lost_reason = tracked.reason
            return self._blind(obs)
        out = dict(obs)
        out["object"] = object_vector(self.layout, tracked.pose, obs)
        return out

    def estimate_now(self, prior: Pose | None = None) -> Estimate:
        """The best of the cameras' estimates of the current state (or the first camera's miss).
        ``last_timing_ms``: (rendering, estimating) of this call, all cameras together. Ground
        truth needs no picture, so that control renders nothing."""
        if isinstance(self.estimator, GroundTruth):
            return self.estimator.estimate(None, None)
        best: Estimate | None = None
        render_ms = estimate_ms = 0.0
        for camera, view in self.cameras:
            t0 = time.perf_counter()
            if not camera.connected:
                camera.connect()
            frame = camera.read()
            t1 = time.perf_counter()
            e = self.estimator.estimate(frame, view(), prior=prior)
            render_ms, estimate_ms = render_ms + 1e3 * (t1 - t0), estimate_ms + 1e3 * (time.perf_counter() - t1)
            if best is None or (e.pose is not None and (best.pose is None or _better(e, best))):
                best = e
        self.last_timing_ms = (render_ms, estimate_ms)
        return best

    @staticmethod
    def _blind(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The observation without the simulator's object state (nothing may steer by it)."""
        out = dict(obs)
        out["object"] = np.zeros_like(np.asarray(obs["object"]))
        return out

    def close(self) -> None:
        try:
            for camera, _ in self.cameras:
                camera.close()
        finally:
            self.env.close()


def perceived_task(env: Any, estimator: str, hold_s: float, width: int = 640, height: int = 480) -> PerceivedTask:
    """``env`` (a robosuite task with markers: ``marker_config()``, ``object_body``,
    ``perception_cameras``) with ``object`` from ``estimator`` ("marker" or "ground_truth")
    on its perception cameras' ``width`` x ``height`` frames."""
    import mujoco

    from robolearn.hal.cameras.mujoco_camera import MujocoCamera, robosuite_handles
    from robolearn.perception.config import held_frames
    from robolearn.perception.pose import mujoco_view

    check_perception_args(estimator, hold_s)
    if not hasattr(env, "marker_config"):
        raise ConfigError("--perception", "perception", f"task {getattr(env, 'name', env)!r} has no markers or perception camera")
    handles = robosuite_handles(env.arm)
    truth = GroundTruth(handles, env.object_body)

    def camera_and_view(name: str) -> tuple[MujocoCamera, Callable[[], CameraView]]:
        camera = MujocoCamera(handles, name, width=width, height=height)

        def view() -> CameraView:
            model, data = handles()
            return mujoco_view(model, data, mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name), camera.spec.intrinsics)

        return camera, view

    if estimator == "marker":
        from robolearn.perception.marker import MarkerEstimator

        est: ObjectPoseEstimator = MarkerEstimator(env.marker_config())
    else:
        est = truth
    cameras = [camera_and_view(name) for name in env.perception_cameras]
    return PerceivedTask(env, cameras, est, truth, held_frames(hold_s, env.control_hz))


ESTIMATORS = ("marker", "ground_truth")


def check_perception_args(estimator: Any, hold_s: Any) -> None:
    """``robolearn eval``'s ``--perception`` and ``--perception-hold-s``, checked before any work starts."""
    if estimator not in ESTIMATORS:
        raise ConfigError("--perception", "perception", f"expected one of {list(ESTIMATORS)}, got {estimator!r}")
    require_number("--perception-hold-s", "perception_hold_s", hold_s, at_least=0.0)


def perception_summary(episodes: list[dict[str, Any]], estimator: str, hold_s: float) -> dict[str, Any]:
    """The eval JSON's ``perception`` section from the episodes' ``PerceptionStats`` dicts:
    error medians (and 90th percentiles) over the frames with a fresh estimate, frame counts."""
    pos = np.concatenate([np.asarray(e["pos_err_mm"], dtype=np.float64) for e in episodes]) if episodes else np.zeros(0)
    rot = np.concatenate([np.asarray(e["rot_err_deg"], dtype=np.float64) for e in episodes]) if episodes else np.zeros(0)

    def stat(values: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)), 3) if values.size else None

    return {
        "estimator": estimator,
        "hold_s": float(hold_s),
        "pos_err_mm_median": stat(pos, 50),
        "pos_err_mm_p90": stat(pos, 90),
        "rot_err_deg_median": stat(rot, 50),
        "rot_err_deg_p90": stat(rot, 90),
        "estimated_frames": int(pos.size),
        "frames": int(sum(e["frames"] for e in episodes)),
        "lost_frames": int(sum(e["lost_frames"] for e in episodes)),
        "held_frames": int(sum(e["held_frames"] for e in episodes)),
        "lost_episodes": int(sum(bool(e["lost_reason"]) for e in episodes)),
    }
