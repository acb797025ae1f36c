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
        """Apply one command; return the command actually applied (after any clipping)."""
        ...

    def home(self) -> Observation:
        """Move to the home / reset configuration and return the observation there."""
        ...

    def stop(self) -> None:
        """Stop moving and hold position now. Safe to call at any time, repeatedly."""
        ...

    def close(self) -> None: ...
