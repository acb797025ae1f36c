"""The ``Arm`` protocol that every backend implements: robosuite, PyBullet, a remote arm
server, and vendor drivers alike.

Modelled on LeRobot's ``Robot`` (specs readable before connecting, ``send`` returns what
was actually applied) and Polymetis (one client interface for sim and hardware).
Commands follow robosuite's OSC_POSE convention: 7 numbers in [-1, 1] (delta position,
delta axis-angle rotation, gripper with -1 open and +1 closed), scaled by the
controller config in ``controllers/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from robolearn.config import require_number
from robolearn.data.format import ActionSpec, ObsFieldSpec


class ArmError(RuntimeError):
    """An arm that cannot do what was asked: not connected, connection lost, fault, e-stop."""


@dataclass
class Observation:
    """A timestamped observation. ``timestamp`` is ``time.monotonic()`` on the host that read it."""

    timestamp: float
    data: dict[str, np.ndarray]


@dataclass
class ArmSpec:
    name: str
    obs_spec: dict[str, ObsFieldSpec]
    action_spec: ActionSpec = field(default_factory=lambda: ActionSpec(dim=7))
    control_hz: float = 20.0


@runtime_checkable
class Arm(Protocol):
    """Readable without connecting: ``spec``. Everything else needs ``connect()`` first."""

    spec: ArmSpec

    def connect(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    def observe(self) -> Observation: ...

    def send(self, command: np.ndarray) -> np.ndarray:
        """Apply one command; return the command actually applied (after any clipping).

        An arm whose end effector can move while no command is being applied (real
        hardware, a follower thread streaming setpoints) must also offer
        ``send_within(command, low, high)``: the same, with the absolute position target it
        computes clamped into the box [low, high] (metres, 3 each). The SafetyShield calls
        it with the box it clipped the command against, so motion between the shield's
        measurement and the arm's cannot carry a target out of the workspace."""
        ...

    def home(self) -> Observation:
        """Move to the home / reset configuration and return the observation there."""
        ...

    def stop(self) -> None:
        """Stop moving and hold position now. Safe to call at any time, repeatedly."""
        ...

    def close(self) -> None: ...


def position_box(name: str, low: object, high: object) -> tuple[np.ndarray, np.ndarray]:
    """``send_within``'s box as two float64 3-vectors, or ArmError: a box that is not 6 finite
    numbers with low <= high would clamp to nothing meaningful (NaN compares False)."""
    try:
        lo, hi = np.asarray(low, np.float64).reshape(-1), np.asarray(high, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ArmError(f"{name}: send_within's box must be numbers, got {low!r} and {high!r}") from None
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or np.any(lo > hi):
        raise ArmError(f"{name}: send_within's box must be two 3-vectors of finite numbers with low <= high, "
                       f"got {lo.tolist()} and {hi.tolist()}")
    return lo, hi


def command_scales(name: str, pos_scale: float, rot_scale: float) -> tuple[float, float]:
    """A delta-command backend's metres and radians per command unit, checked: an infinite or
    NaN scale turns every command into an infinite or NaN target."""
    return (require_number(name, "pos_scale", pos_scale, positive=True),
            require_number(name, "rot_scale", rot_scale, positive=True))
