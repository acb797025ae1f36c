"""``TaskOverArm``: a task (reset distribution, success test, reward, horizon) over an arm.

Why one base: the robosuite tasks (Lift, Can) and PyBullet Lift all run an episode the same
way: connect the arm on first use, reset it, send one command per step, ask the task whether
it succeeded, give the sparse (or the task's shaped) reward and end the episode on success or
at the horizon. ``TaskBoundArm`` (``robolearn/tasks/task_arm.py``) asks the same task for
success and reward when a deployment drives the arm directly. Subclasses only say how the arm
is reset with a seed and how success is judged.

Cameras. A task may carry cameras (``robolearn.hal.cameras``: a ``MujocoCamera`` per
robosuite camera name, say) that it renders synchronously after every reset, step and
``set_state``, adding ``<name>_image`` (uint8 H x W x 3) to the observation. Why not the
threaded ``CameraArm``: a scripted demo must be the same bytes run to run and worker to
worker, so each frame is rendered from exactly the state the step left, in the calling
thread, with no wall-clock frame ages in the observation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robolearn.config import ConfigError
from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.hal.arm import ArmError, Observation
from robolearn.hal.cameras.base import Camera
from robolearn.tasks.base import StepResult


def check_camera_names(source: str, names: list[str], available: Sequence[str] | None = None) -> list[str]:
    """The task setting ``cameras``: distinct names usable as key prefixes (``<name>_image``),
    each among ``available`` when the task knows its cameras before building its scene."""
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(source, "cameras", f"camera name {name!r} becomes an observation key prefix; "
                              "use letters, digits and _ (e.g. agentview, robot0_eye_in_hand)")
        if available is not None and name not in available:
            raise ConfigError(source, "cameras", f"no camera {name!r}; this task has {list(available)}")
    if len(set(names)) != len(names):
        raise ConfigError(source, "cameras", f"a camera is named twice in {names}")
    return list(names)


class TaskOverArm:
    """A ``TaskEnv`` whose physics is an arm's: ``self.arm`` is the ``Arm`` (with the task's
    scene inside it) that the task's episodes drive."""

    name = "task"
    #: Plot limits (x, y, z) in metres for ``plot_rollouts``.
    plot_limits = ((-0.3, 0.3), (-0.3, 0.3), (0.0, 1.1))

    def __init__(self, arm: Any, horizon: int, control_hz: float, done_on_success: bool, cameras: Sequence[Camera] = ()):
        self.arm = arm
        self.horizon = int(horizon)
        self.control_hz = float(control_hz)
        self.done_on_success = bool(done_on_success)
        self.obs_spec: dict[str, ObsFieldSpec] = dict(arm.spec.obs_spec)
        #: Rendered into every observation as ``<name>_image``; connected on the first reset.
        self.cameras: list[Camera] = list(cameras)
        for cam in self.cameras:
            self.obs_spec[cam.spec.image_key] = ObsFieldSpec(shape=(cam.spec.height, cam.spec.width, 3), dtype="uint8")
        self.action_spec: ActionSpec = arm.spec.action_spec
        self.t = 0

    # -- to override ------------------------------------------------------------------------
    def reset_arm(self, seed: int | None) -> Observation:
        """Start the arm's episode; with ``seed`` the initial placement is a function of it."""
        raise NotImplementedError

    def success(self) -> bool:
        raise NotImplementedError

    def step_reward(self, success: bool) -> float:
        """The reward of the step just taken: 1 on success steps (sparse, robomimic's datasets)."""
        return float(success)

    # -- TaskEnv --------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        if not self.arm.connected:
            self.arm.connect()
        self.t = 0
        return self.with_images(self.reset_arm(seed).data)

    def observe(self) -> dict[str, np.ndarray]:
        return self.with_images(self.arm.observe().data)

    def with_images(self, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``data`` plus each camera's frame of the current state (``data`` itself without cameras).
        A camera connects on first use, once the arm has built the model it renders."""
        if not self.cameras:
            return data
        out = dict(data)
        for cam in self.cameras:
            if not cam.connected:
                cam.connect()
            out[cam.spec.image_key] = cam.read().image
        return out

    def step(self, action: np.ndarray) -> StepResult:
        if not self.arm.connected:
            raise ArmError(f"{self.name}: call reset() before step()")
        applied = self.arm.send(action)
        self.t += 1
        success = self.success()
        reward = self.step_reward(success)
        done = (success and self.done_on_success) or self.t >= self.horizon
        return StepResult(obs=self.observe(), reward=reward, done=done, success=success,
                          info={"t": self.t, "applied": applied})

    def get_state(self) -> np.ndarray:
        return self.arm.get_state()

    def set_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return self.with_images(self.arm.set_state(state).data)

    def plot_rollouts(self, episodes: list[dict[str, np.ndarray]], successes: list[bool], path: str, title: str = "") -> None:
        plot_eef_paths(episodes, successes, path, title or self.name, self.plot_limits)

    def close(self) -> None:
        try:
            for cam in self.cameras:
                cam.close()
        finally:
            self.arm.close()


def plot_eef_paths(
    episodes: list[dict[str, np.ndarray]], successes: list[bool], path: str, title: str, limits
) -> None:
    """End-effector paths seen from the front (x-z) and from above (x-y); green succeeded,
    red failed. A circle marks where the object started when the episode has ``object``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(episodes) != len(successes):
        raise ValueError(f"plot_rollouts: {len(episodes)} episodes but {len(successes)} success flags")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    views = (("x", 0, "z", 2), ("x", 0, "y", 1))
    for ep, ok in zip(episodes, successes):
        if "robot0_eef_pos" not in ep:
            raise ValueError("plot_rollouts: every episode needs 'robot0_eef_pos' (T+1, 3)")
        p = np.asarray(ep["robot0_eef_pos"], dtype=np.float64).reshape(-1, 3)
        color = "tab:green" if ok else "tab:red"
        for ax, (_, i, _, j) in zip(axes, views):
            ax.plot(p[:, i], p[:, j], color=color, alpha=0.6, lw=1)
            ax.plot(p[-1, i], p[-1, j], marker="x", color=color, ms=5)
            if "object" in ep:
                o = np.asarray(ep["object"]).reshape(len(p), -1)[0, :3]
                ax.plot(o[i], o[j], marker="o", mfc="none", color="k", ms=6)
    for ax, (a, i, b, j) in zip(axes, views):
        ax.set_xlim(*limits[i])
        ax.set_ylim(*limits[j])
        ax.set_xlabel(f"{a} (m)")
        ax.set_ylabel(f"{b} (m)")
        ax.set_aspect("equal", adjustable="box")
        ax.grid(alpha=0.3)
    axes[0].set_title("front (x-z)")
    axes[1].set_title("top (x-y)")
    n_ok = int(sum(bool(s) for s in successes))
    fig.suptitle(f"{title}: {n_ok}/{len(successes)} succeeded (green)")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
