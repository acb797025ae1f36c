"""Importing robosuite quietly and compatibly with the installed MuJoCo.

Why this module sits on the ground floor: the robosuite arm (``robolearn.hal``), the Lift
and Can tasks and the raw-demo importer (``robolearn.data``) all build robosuite
environments, and each must get the same quiet, patched robosuite. Importing this module
also sets ``MUJOCO_GL`` (default ``osmesa``) before MuJoCo is imported.

What it does:

* robosuite 1.5.2 prints five warnings at import time (no private macro file, no
  robosuite_models, no mink). They are noise for our users, so ``import_robosuite``
  hands robosuite an in-memory ``robosuite.macros_private`` module (nothing is written
  into site-packages) that sets its console logging level to ERROR before its logger
  is built, and also silences Python warnings raised during the import.
* robosuite 1.5.2 asserts ``jnt_type in (mjJNT_HINGE, mjJNT_SLIDE)``; with recent MuJoCo (seen
  with 3.17) the enum no longer compares equal from that side of a tuple membership test, so
  *every* environment fails to build. We patch the two address helpers with versions
  that compare integer codes, which is correct on every MuJoCo 3.x.
* Recent MuJoCo (seen with 3.14 and 3.17) removed ``mjData.qM`` and changed ``mj_fullM`` to ``mj_fullM(m, d, dst)``;
  robosuite's controllers call ``mj_fullM(m, dst, data.qM)`` every step. When the running
  MuJoCo lacks ``qM`` we hand robosuite's controller module a thin ``mujoco`` proxy whose
  ``mj_fullM`` accepts the old call, and give robosuite's ``MjData`` wrapper a ``qM`` that
  carries the raw ``MjData`` through. Nothing outside robosuite's controller module sees it.
"""
from __future__ import annotations

import logging
import os
import sys
import types
import warnings
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

_ROBOSUITE: Any = None
_LOGGER_NAME = "robosuite_logs"


def import_robosuite():
    """Import robosuite without its import-time warnings and with the MuJoCo compatibility fixes applied."""
    global _ROBOSUITE
    if _ROBOSUITE is not None:
        return _ROBOSUITE
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    if "robosuite" not in sys.modules and "robosuite.macros_private" not in sys.modules:
        quiet = types.ModuleType("robosuite.macros_private")
        quiet.__doc__ = "robolearn: in-memory private macros so robosuite's logger starts at ERROR."
        quiet.CONSOLE_LOGGING_LEVEL = "ERROR"
        quiet.FILE_LOGGING_LEVEL = None
        sys.modules["robosuite.macros_private"] = quiet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import robosuite  # noqa: F401
        import robosuite.utils.binding_utils as binding_utils
    # robosuite may already have been imported by someone else: quieten it all the same.
    logging.getLogger(_LOGGER_NAME).setLevel(logging.ERROR)
    _patch_joint_addr(binding_utils)
    _patch_full_mass_matrix(binding_utils)
    _ROBOSUITE = robosuite
    return robosuite


def _patch_joint_addr(binding_utils) -> None:
    import mujoco

    model_cls = binding_utils.MjModel
    if getattr(model_cls, "_robolearn_patched", False):
        return
    free, ball = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
    one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))

    def _addr(self, name: str, addr_table: np.ndarray, free_n: int, ball_n: int):
        joint_id = self.joint_name2id(name)
        joint_type = int(self.jnt_type[joint_id])
        addr = int(addr_table[joint_id])
        if joint_type == free:
            return (addr, addr + free_n)
        if joint_type == ball:
            return (addr, addr + ball_n)
        if joint_type not in one_dof:
            raise ValueError(f"joint {name!r}: unknown MuJoCo joint type {joint_type}")
        return addr

    def get_joint_qpos_addr(self, name):
        return _addr(self, name, self.jnt_qposadr, 7, 4)

    def get_joint_qvel_addr(self, name):
        return _addr(self, name, self.jnt_dofadr, 6, 3)

    model_cls.get_joint_qpos_addr = get_joint_qpos_addr
    model_cls.get_joint_qvel_addr = get_joint_qvel_addr
    model_cls._robolearn_patched = True


class _MujocoWithOldFullM(types.ModuleType):
    """``mujoco`` as robosuite 1.5.2 expects it: ``mj_fullM(m, dst, qM)`` with ``qM`` our raw-data carrier."""

    def __init__(self, real):
        super().__init__("mujoco")
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def mj_fullM(self, m, dst, qm):
        if isinstance(qm, self._real.MjData):
            return self._real.mj_fullM(m, qm, dst)
        return self._real.mj_fullM(m, dst, qm)


def _patch_full_mass_matrix(binding_utils) -> None:
    import mujoco

    probe_fields = getattr(mujoco.MjData, "qM", None)
    if probe_fields is not None:
        return  # an older MuJoCo with the API robosuite was written for
    data_cls = binding_utils.MjData
    if not getattr(data_cls, "_robolearn_qm_patched", False):
        data_cls.qM = property(lambda self: self._data)
        data_cls._robolearn_qm_patched = True
    import robosuite.controllers.parts.controller as controller_mod

    if not isinstance(controller_mod.mujoco, _MujocoWithOldFullM):
        controller_mod.mujoco = _MujocoWithOldFullM(mujoco)
