"""``GroundTruth``: the object's pose read from the simulator, behind the estimator protocol.

Why an estimator that ignores the picture: it is the reference every other estimator's error
is measured against, and the control that runs the perceived episode loop (lost-marker policy,
object layout) on exact poses, so a drop in success can be put on the estimate, not the loop.
"""
from __future__ import annotations

import numpy as np

from robolearn.hal.cameras.base import Frame
from robolearn.hal.cameras.mujoco_camera import Handles
from robolearn.perception.base import Estimate
from robolearn.perception.pose import CameraView, Pose


class GroundTruth:
    """``handles``: -> (MjModel, MjData) of the simulator; ``body``: the object's body name
    (robosuite: ``cube_main``, ``Can_main``). In MuJoCo's world frame, robosuite's arm frame."""

    def __init__(self, handles: Handles, body: str):
        self.handles = handles
        self.body = body
        self._id: int | None = None
        self._model = None

    def pose(self) -> Pose:
        import mujoco

        model, data = self.handles()
        if model is not self._model:
            self._id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, self.body)
            if self._id < 0:
                raise ValueError(f"ground truth: the MuJoCo model has no body {self.body!r}")
            self._model = model
        w, x, y, z = np.asarray(data.xquat[self._id], dtype=np.float64)
        return Pose(np.asarray(data.xpos[self._id], dtype=np.float64).copy(), np.array([x, y, z, w]))

    def estimate(self, frame: Frame, view: CameraView, prior: Pose | None = None) -> Estimate:
        return Estimate(pose=self.pose())
