"""The arm inside a task's scene: what ``deploy``, ``serve-arm`` and ``teleop`` drive in simulation.

Why here and not in the HAL: in simulation the cube's placement, the success test and the
reward live in the task (``TaskOverArm``), but deployment drives Arms. ``TaskBoundArm``
joins the two without the control loop knowing about tasks, and ``make_task_arm`` is the
factory's entry point for launches that name a task; the HAL's ``make_arm`` knows none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robolearn.config import ConfigError
from robolearn.hal.arm import Arm, ArmSpec, Observation
from robolearn.hal.factory import BACKENDS, build_backend, resolve_controller, shield_arm, with_cameras
from robolearn.runtime.seeds import EpisodeSeeds, deployment_seeds
from robolearn.tasks.base import make_env
from robolearn.tasks.over_arm import TaskOverArm


class TaskBoundArm:
    """An arm that belongs to a simulated task: ``home()`` starts a new episode through the
    task's reset distribution and ``success()`` and ``reward()`` ask the task. Everything
    else goes to the arm.

    Episode ``i`` of a run seeded ``seed`` resets with ``deployment_seeds(seed, i).reset``, the
    runtime's one seeding rule (stream 2: episodes on an arm), so ``deploy`` with seed 3 never
    replays the reset states of ``collect --seed 3`` or ``eval --seed 3``; deploy seeds episode
    ``i``'s policy with the same rule's actor seed."""

    def __init__(self, env: TaskOverArm, seed: int | None = None):
        self.env = env
        self.arm = env.arm
        self.spec: ArmSpec = self.arm.spec
        self._seed = seed
        self._episode = 0
        # Unseeded runs still draw each episode's seed themselves, so that it can be recorded
        # (teleop stores it with the episode) and the episode replayed exactly later.
        self._entropy = np.random.default_rng()
        #: The seed of the current episode's reset (object placement, joint noise).
        self.last_reset_seed: int | None = None
        #: The current episode's seeds under the seeding rule (None in an unseeded run).
        self.last_seeds: EpisodeSeeds | None = None

    @property
    def connected(self) -> bool:
        return self.arm.connected

    def connect(self) -> None:
        self.arm.connect()

    def observe(self) -> Observation:
        return self.arm.observe()

    def eef_position(self) -> np.ndarray:
        from robolearn.hal.shield import measure_eef

        return measure_eef(self.arm)

    def send(self, command: np.ndarray) -> np.ndarray:
        return self.arm.send(command)

    def home(self) -> Observation:
        if self._seed is None:
            self.last_seeds = None
            seed = int(self._entropy.integers(0, 2**31 - 1))
        else:
            self.last_seeds = deployment_seeds(self._seed, self._episode)
            seed = self.last_seeds.reset
        self._episode += 1
        self.env.reset(seed=seed)
        self.last_reset_seed = seed
        return self.arm.observe()

    def stop(self) -> None:
        self.arm.stop()

    def close(self) -> None:
        self.env.close()

    def success(self) -> bool:
        return bool(self.env.success())

    def get_state(self) -> np.ndarray:
        return self.env.get_state()

    def reward(self) -> float:
        """The task's reward for the step just taken, as the task's own ``step`` gives it."""
        return self.env.step_reward(self.env.success())


def make_task_arm(
    name: str | None = None,
    controller_yaml: str | Path | None = None,
    *,
    task: str | None = None,
    env_overrides: dict[str, Any] | None = None,
    seed: int | None = None,
    shield: bool = True,
    cameras: tuple[Any, str] | None = None,
    **params: Any,
) -> Arm:
    """``make_arm`` for a launch that may name a task.

    With a task and a simulated backend whose scene a task supplies (``Backend.task_scene``:
    pybullet, robosuite), the arm is the task's own arm in the task's scene, bound to the task
    (``TaskBoundArm``: episode ``i`` resets with ``deployment_seeds(seed, i)``) and configured
    from the same controller file as its shield. Otherwise the task is not the arm's business
    and this is ``make_arm``'s arm.

    env_overrides: task settings over ``envs/<task>.yaml`` (e.g. from a policy's meta).
    cameras: ``(CamerasConfig, source)`` built instead of the controller file's ``cameras:``
        section (a deploy launch file's views merged with the controller's), inside the shield
        all the same.
    """
    choice = resolve_controller(name, controller_yaml, params)
    if task and BACKENDS[choice.backend].task_scene:
        arm: Arm = _bound_task_arm(task, choice.path, env_overrides, seed, choice.backend)
    else:
        arm = build_backend(choice)
    if cameras is None:
        arm = with_cameras(arm, choice)
    else:
        from robolearn.hal.cameras.config import wrap_with_cameras

        section, source = cameras
        arm = wrap_with_cameras(arm, section, source=str(source), sim=BACKENDS[choice.backend].task_scene)
    return shield_arm(arm, choice.cfg, choice.path) if shield else arm


def _bound_task_arm(task: str, path: Path, env_overrides: dict[str, Any] | None, seed: int | None, backend: str) -> TaskBoundArm:
    overrides = dict(env_overrides or {})
    overrides.setdefault("controller", str(path))
    try:
        env = make_env(task, **overrides)
    except TypeError as exc:
        raise ConfigError(path, "params", f"bad constructor arguments for the {backend} arm: {exc}") from None
    if not isinstance(env, TaskOverArm):
        raise ConfigError(path, "task", f"task {task!r} is not a task over an arm, so it has no arm to drive")
    return TaskBoundArm(env, seed=seed)
