"""What every object-pose estimator shares: the ``Estimate`` it returns and the protocol.

An estimator turns one camera frame, and what the frame's pixels mean (``CameraView``:
intrinsics and the camera's pose in the arm frame), into the object's pose in the arm frame,
or into no pose and the reason (the marker is not in view, too small, reprojects badly).
Keeping the reason lets a run count why frames were lost, not only how many.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from robolearn.hal.cameras.base import Frame
from robolearn.perception.pose import CameraView, Pose


@dataclass(frozen=True)
class Estimate:
    """``pose`` in the arm frame, or None and ``reason``. ``markers``: the marker ids used;
    ``reprojection_px``: RMS reprojection error of the corners used (None for ground truth)."""

    pose: Pose | None
    reason: str = ""
    markers: tuple[int, ...] = ()
    reprojection_px: float | None = None

    @classmethod
    def missing(cls, reason: str) -> "Estimate":
        return cls(pose=None, reason=reason)


@runtime_checkable
class ObjectPoseEstimator(Protocol):
    """``prior``: the last pose the caller acted on, if any; an estimator may use it to choose
    between poses the picture cannot tell apart (a planar marker's two-fold ambiguity)."""

    def estimate(self, frame: Frame, view: CameraView, prior: Pose | None = None) -> Estimate: ...
