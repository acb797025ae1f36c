"""Evaluation videos of an image policy show what it saw: the scene render with the camera
frames of the observation each action was chosen from beside it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from robolearn.data.format import ActionSpec
from robolearn.runtime.rollout import rollout


class CameraTask:
    """A task whose camera frame encodes the step number, so the video can be checked frame by frame."""

    horizon = 3
    action_spec = ActionSpec(dim=2)

    def __init__(self):
        self.t = 0

    def _obs(self):
        return {"state": np.array([self.t], np.float32), "cam_image": np.full((8, 8, 3), 10 * (self.t + 1), np.uint8)}

    def reset(self, seed=None):
        self.t = 0
        return self._obs()

    def step(self, action):
        self.t += 1
        return SimpleNamespace(obs=self._obs(), reward=0.0, done=False, success=False)

    def render(self, height, width, goal=None):
        return np.zeros((height, width, 3), np.uint8)


class StillActor:
    def reset(self, seed=None):
        pass

    def act(self, obs):
        return np.zeros(2, np.float32)


def test_video_frames_show_the_camera_the_actor_acted_on():
    r = rollout(CameraTask(), StillActor(), 0, video_size=16, video_keys=("cam_image",))
    assert len(r.frames) == 4  # before each of the 3 steps, and after the last
    for step, frame in enumerate(r.frames):
        assert frame.shape == (16, 16 + 4 + 16, 3)
        assert (frame[:, :16] == 0).all()  # the scene render
        assert (frame[:, 20:] == 10 * (step + 1)).all()  # the frame observed before the step's action (the final one last)


def test_without_video_keys_frames_are_the_render_alone():
    r = rollout(CameraTask(), StillActor(), 0, video_size=16)
    assert [f.shape for f in r.frames] == [(16, 16, 3)] * 4
