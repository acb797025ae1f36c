"""PyBulletArm: a Franka Panda in PyBullet (DIRECT mode) behind the ``Arm`` protocol.

Why a second simulator: a policy that only ever ran in robosuite/MuJoCo may lean on one
engine's quirks. The same OSC_POSE-style commands drive this arm: the delta is added to
the *measured* end-effector pose (as robosuite's OSC does), solved to joint targets with
PyBullet's damped-least-squares IK and tracked by position motors over the physics
substeps of one control period.

Frames and conventions (document once, used by the task and the operator):
* world frame: z up, the Panda's base at the origin, the floor (our "table top") at z = 0;
* ``robot0_eef_pos``: the grasp point between the fingertips (URDF link ``panda_grasptarget``);
* ``robot0_eef_quat``: its orientation, (x, y, z, w) like robosuite; at home the gripper
  points straight down;
* ``robot0_gripper_qpos``: the two finger joint positions in robosuite's signs
  (left +, right -: (0.04, -0.04) open, (0, 0) closed);
* gripper command: -1 open, +1 closed, mapped linearly onto the finger targets.

A *scene* (``robolearn/tasks/pybullet_lift.py``'s ``LiftScene``) adds objects, their
observation (``object``), a reset distribution and a success test; the arm itself knows
nothing about cubes.
"""
from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.geometry import axis_angle_to_quat, quat_mul
from robolearn.hal.arm import ArmError, ArmSpec, Observation, command_scales

ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
EEF_LINK = 11  # panda_grasptarget
HOME_Q = [0.0, -0.35, 0.0, -2.35, 0.0, 2.0, 0.785]
FINGER_MAX = 0.04
PHYSICS_HZ = 240.0


class Scene(Protocol):
    obs_spec: dict[str, ObsFieldSpec]

    def build(self, client: int) -> None: ...

    def reset(self, client: int, rng: np.random.Generator) -> None: ...

    def observe(self, client: int, eef_pos: np.ndarray) -> dict[str, np.ndarray]: ...

    def success(self, client: int) -> bool: ...


def _pb():
    try:
        import pybullet
        import pybullet_data
    except ImportError as exc:  # pragma: no cover - pybullet is in the sim extra
        raise ArmError(f"the PyBullet arm needs pybullet: pip install 'robolearn[sim]' ({exc})") from None
    return pybullet, pybullet_data


class PyBulletArm:
    def __init__(
        self,
        control_hz: float = 20.0,
        pos_scale: float = 0.05,
        rot_scale: float = 0.5,
        scene: Scene | None = None,
        seed: int | None = None,
        finger_force: float = 60.0,
        arm_force: float = 240.0,
        name: str = "pybullet_panda",
        gui: bool = False,
    ):
        self.control_hz = float(control_hz)
        if not 0 < self.control_hz <= PHYSICS_HZ:
            raise ArmError(f"{name}: control_hz must be in (0, {PHYSICS_HZ:g}], got {control_hz}")
        self.substeps = max(1, int(round(PHYSICS_HZ / self.control_hz)))
        self.pos_scale, self.rot_scale = command_scales(name, pos_scale, rot_scale)
        self.scene = scene
        self.finger_force, self.arm_force = float(finger_force), float(arm_force)
        self.gui = gui
        self._rng = np.random.default_rng(seed)
        obs_spec = {
            "robot0_eef_pos": ObsFieldSpec((3,)),
            "robot0_eef_quat": ObsFieldSpec((4,)),
            "robot0_gripper_qpos": ObsFieldSpec((2,)),
        }
        if scene is not None:
            obs_spec.update(scene.obs_spec)
        names = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
        self.spec = ArmSpec(name=name, obs_spec=obs_spec, action_spec=ActionSpec(dim=7, names=names), control_hz=self.control_hz)
        self._client: int | None = None
        self._robot: int | None = None
        self._gripper_cmd = -1.0
        self.steps = 0

    # -- Arm protocol -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        if self._client is not None:
            return
        p, pd = _pb()
        self._p = p
        self._client = p.connect(p.GUI if self.gui else p.DIRECT)
        c = self._client
        p.setAdditionalSearchPath(pd.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        p.loadURDF("plane.urdf", physicsClientId=c)
        self._robot = p.loadURDF("franka_panda/panda.urdf", [0, 0, 0], useFixedBase=True,
                                 flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, physicsClientId=c)
        for j in FINGER_JOINTS:
            p.changeDynamics(self._robot, j, lateralFriction=1.5, spinningFriction=0.01, physicsClientId=c)
        info = [p.getJointInfo(self._robot, j, physicsClientId=c) for j in ARM_JOINTS]
        self._lower = [i[8] for i in info]
        self._upper = [i[9] for i in info]
        self._ranges = [u - l for l, u in zip(self._lower, self._upper)]
        if self.scene is not None:
            self.scene.build(c)
        self.home()

    def _require(self) -> int:
        if self._client is None:
            raise ArmError(f"{self.spec.name}: not connected; call connect() first")
        return self._client

    def _eef(self) -> tuple[np.ndarray, np.ndarray]:
        ls = self._p.getLinkState(self._robot, EEF_LINK, computeForwardKinematics=True, physicsClientId=self._client)
        return np.asarray(ls[4], np.float64), np.asarray(ls[5], np.float64)

    def eef_position(self) -> np.ndarray:
        """The grasp point's position, the one ``send`` adds its delta to (one link-state read)."""
        self._require()
        return self._eef()[0]

    def observe(self) -> Observation:
        c = self._require()
        pos, quat = self._eef()
        f = [self._p.getJointState(self._robot, j, physicsClientId=c)[0] for j in FINGER_JOINTS]
        fingers = [f[0], -f[1]]  # robosuite's signs: (+left, -right), so gap = q[0] - q[1]
        data = {
            "robot0_eef_pos": pos.astype(np.float32),
            "robot0_eef_quat": quat.astype(np.float32),
            "robot0_gripper_qpos": np.asarray(fingers, np.float32),
        }
        if self.scene is not None:
            data.update(self.scene.observe(c, pos))
        return Observation(time.monotonic(), data)

    def send(self, command: np.ndarray) -> np.ndarray:
        c = self._require()
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.shape != (7,) or not np.all(np.isfinite(cmd)):
            raise ArmError(f"{self.spec.name}: command must be 7 finite numbers, got {np.asarray(command).tolist()}")
        cmd = np.clip(cmd, -1.0, 1.0)
        pos, quat = self._eef()
        target_pos = pos + cmd[:3] * self.pos_scale
        target_quat = quat_mul(axis_angle_to_quat(cmd[3:6] * self.rot_scale), quat)
        self._drive(target_pos, target_quat, float(cmd[6]))
        for _ in range(self.substeps):
            self._p.stepSimulation(physicsClientId=c)
        self.steps += 1
        return cmd.astype(np.float32)

    def _drive(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: float) -> None:
        p, c = self._p, self._client
        q = p.calculateInverseKinematics(
            self._robot, EEF_LINK, target_pos.tolist(), target_quat.tolist(),
            lowerLimits=self._lower, upperLimits=self._upper, jointRanges=self._ranges, restPoses=HOME_Q,
            maxNumIterations=50, residualThreshold=1e-5, physicsClientId=c,
        )
        p.setJointMotorControlArray(self._robot, ARM_JOINTS, p.POSITION_CONTROL, targetPositions=list(q[:7]),
                                    forces=[self.arm_force] * 7, physicsClientId=c)
        self._gripper_cmd = float(np.clip(gripper, -1.0, 1.0))
        width = FINGER_MAX * (1.0 - self._gripper_cmd) / 2.0
        p.setJointMotorControlArray(self._robot, FINGER_JOINTS, p.POSITION_CONTROL, targetPositions=[width, width],
                                    forces=[self.finger_force] * 2, physicsClientId=c)

    def home(self) -> Observation:
        """Joints to the home configuration, gripper open, scene re-placed (a new episode)."""
        c = self._require()
        p = self._p
        for j, q in zip(ARM_JOINTS, HOME_Q):
            p.resetJointState(self._robot, j, q, 0.0, physicsClientId=c)
        for j in FINGER_JOINTS:
            p.resetJointState(self._robot, j, FINGER_MAX, 0.0, physicsClientId=c)
        if self.scene is not None:
            self.scene.reset(c, self._rng)
        self.hold()
        for _ in range(10):  # let contacts settle
            p.stepSimulation(physicsClientId=c)
        self.steps = 0
        return self.observe()

    def hold(self) -> None:
        """Motors keep the current joint positions (and the last gripper command)."""
        c = self._require()
        q = [self._p.getJointState(self._robot, j, physicsClientId=c)[0] for j in ARM_JOINTS]
        self._p.setJointMotorControlArray(self._robot, ARM_JOINTS, self._p.POSITION_CONTROL, targetPositions=q,
                                          forces=[self.arm_force] * 7, physicsClientId=c)
        width = FINGER_MAX * (1.0 - self._gripper_cmd) / 2.0
        self._p.setJointMotorControlArray(self._robot, FINGER_JOINTS, self._p.POSITION_CONTROL, targetPositions=[width, width],
                                          forces=[self.finger_force] * 2, physicsClientId=c)

    def stop(self) -> None:
        if self._client is not None:
            self.hold()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._p.disconnect(physicsClientId=self._client)
            finally:
                self._client = None

    # -- simulation extras --------------------------------------------------------------
    def reseed(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)

    def success(self) -> bool:
        return bool(self.scene is not None and self.connected and self.scene.success(self._client))

    @property
    def client(self) -> int:
        return self._require()

    def get_state(self) -> np.ndarray:
        """Joint positions and velocities of the arm, then the scene's body states."""
        c = self._require()
        joints = ARM_JOINTS + FINGER_JOINTS
        js = self._p.getJointStates(self._robot, joints, physicsClientId=c)
        parts = [np.array([s[0] for s in js]), np.array([s[1] for s in js])]
        if self.scene is not None and hasattr(self.scene, "get_state"):
            parts.append(self.scene.get_state(c))
        return np.concatenate(parts).astype(np.float64)

    def set_state(self, state: np.ndarray) -> Observation:
        c = self._require()
        joints = ARM_JOINTS + FINGER_JOINTS
        n = len(joints)
        state = np.asarray(state, np.float64).reshape(-1)
        if state.shape[0] < 2 * n:
            raise ArmError(f"{self.spec.name}: state must have at least {2 * n} numbers, got {state.shape[0]}")
        for i, j in enumerate(joints):
            self._p.resetJointState(self._robot, j, state[i], state[n + i], physicsClientId=c)
        if self.scene is not None and hasattr(self.scene, "set_state"):
            self.scene.set_state(c, state[2 * n:])
        self.hold()
        return self.observe()
