"""``LostMarkerPolicy``: what an episode does with frames in which the object is not seen.

Why a bound: a marker hidden by the gripper for a few frames is normal, and holding the last
estimate through it keeps a grasp going. A marker that stays hidden means the object may have
moved where the last estimate says it is not; driving a stale pose indefinitely is how a real
arm pushes a cube off the table. So the last estimate stands for at most ``max_held`` frames;
after that the object is lost for the rest of the episode: the arm holds and the episode fails.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robolearn.perception.base import Estimate
from robolearn.perception.pose import Pose

SEEN, HELD, LOST = "seen", "held", "lost"


@dataclass(frozen=True)
class Tracked:
    """The pose to act on this frame (None once lost), and why: ``seen``, ``held`` or ``lost``."""

    pose: Pose | None
    status: str
    reason: str = ""


def continuous_quaternion(q: np.ndarray, previous: np.ndarray | None, axis: int = 2) -> np.ndarray:
    """``q`` or ``-q`` (the same rotation): the one nearer ``previous``, or with component
    ``axis`` >= 0 when there is none. Why: a policy reads the four numbers, not the rotation, and
    robosuite's placement samples yaw in [0, 2 pi), so its quaternions start with z >= 0 and move
    continuously from there; an estimate must follow the same sign to read the same."""
    q = np.asarray(q, dtype=np.float64)
    ref = float(q @ previous) if previous is not None else float(q[axis])
    return -q if ref < 0 else q


class LostMarkerPolicy:
    """Feed it every frame's ``Estimate`` in order (``update``); ``reset`` at each episode.
    ``max_held``: frames the last pose may be held (``config.held_frames(hold_s, hz)``)."""

    def __init__(self, max_held: int):
        if isinstance(max_held, bool) or not isinstance(max_held, int) or max_held < 0:
            raise ValueError(f"max_held must be a whole number of frames >= 0, got {max_held!r}")
        self.max_held = max_held
        self.reset()

    def reset(self) -> None:
        self.last: Pose | None = None
        self.missed = 0
        self.lost = False
        self.reason = ""

    def update(self, estimate: Estimate) -> Tracked:
        if self.lost:
            return Tracked(None, LOST, self.reason)
        if estimate.pose is not None:
            prev = None if self.last is None else self.last.quaternion
            pose = Pose(estimate.pose.position, continuous_quaternion(estimate.pose.quaternion, prev))
            self.last, self.missed = pose, 0
            return Tracked(pose, SEEN)
        self.missed += 1
        if self.last is None or self.missed > self.max_held:
            self.lost = True
            held = "no estimate yet" if self.last is None else f"held the last estimate for {self.max_held} frames"
            self.reason = f"object lost ({estimate.reason}; {held})"
            return Tracked(None, LOST, self.reason)
        return Tracked(self.last, HELD, estimate.reason)
