"""Scripted operators for Lift and Can: ``proficient``, ``suboptimal`` and ``multimodal``.

An operator is a command source like a teleoperation device: ``reset()`` then
``act(obs) -> 7 numbers in [-1, 1]`` (OSC_POSE delta position, delta axis-angle, gripper),
computed only from the observation it is shown (end-effector pose, gripper fingers,
object state) plus fixed scene facts a person would know (table height, where the target
bin is). It never reads the simulator, so the same script could drive a real arm.

Each script is a Python generator: motion primitives (``_move``, ``_grip``, ``_wait``)
yield one command per control step and read the newest observation after each yield.
That keeps behaviours such as "grasp, carry, release, then grasp again" readable as
straight-line code with ordinary ``if``/``for``, and lets the suboptimal operator splice
randomly chosen behaviours into an otherwise proficient script.

The suboptimal operator imitates the deliberately suboptimal operator of the IRIS paper:
most episodes *undo progress* before finishing. It records which behaviours it ran in
``self.behaviours`` (and ``self.events`` with step indices) so tests and analysis can
check them against the recorded object and gripper states.

Every kind can also fail an episode on purpose (``plan_failure``, see
``robolearn.tasks.operator_failures``), in the ways teleoperators fail: ``dropped_object``
(grasp, raise part way, open the hand mid-carry), ``missed_grasp`` (close above the object,
lift the empty hand, never retry) and ``timeout`` (hover and dawdle until the horizon). The
failure replaces the finishing lift or transport; whatever the kind does before it stays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Protocol

import numpy as np

from robolearn.config import ConfigError
from robolearn.geometry import mat_to_axis_angle, quat_to_mat, rot_z
from robolearn.tasks.operator_failures import FailurePlan

KINDS = ("proficient", "suboptimal", "multimodal")
LIFT_BEHAVIOURS = ("partial_lift", "push", "drag", "carry_release", "wander", "missed_grasp")
CAN_BEHAVIOURS = ("partial_lift", "drag", "carry_release", "wander", "missed_grasp")
FAILURE_MODES = ("dropped_object", "missed_grasp", "timeout")

#: Command gain: position command per metre of error. With robosuite's OSC_POSE at 20 Hz
#: (0.05 m per command unit, kp 150) a steady command of 1 moves ~12 mm per step, so 25
#: closes ~30 % of the error per step: fast and free of overshoot.
POS_GAIN = 25.0
ROT_GAIN = 1.6
OPEN, CLOSE = -1.0, 1.0

Script = Generator[np.ndarray, None, None]


# ---------------------------------------------------------------------------------------
# orientation facts (quaternions are xyzw, as robosuite reports them)
# ---------------------------------------------------------------------------------------
#: The Panda hand pointing straight down (180 degrees about x), robosuite's home orientation.
R_DOWN = np.diag([1.0, -1.0, -1.0])


def object_yaw(quat: np.ndarray) -> float:
    """Yaw of a box-like object: the heading of whichever body axis lies most horizontal
    after choosing the most vertical one as "up" (works when the cube has tipped over)."""
    r = quat_to_mat(quat)
    up = int(np.argmax(np.abs(r[2, :])))
    other = (up + 1) % 3
    return math.atan2(r[1, other], r[0, other])


# ---------------------------------------------------------------------------------------
# task geometry: the fixed facts a human operator would know, stated by each task
# ---------------------------------------------------------------------------------------
@dataclass
class Scene:
    task: str
    table_z: float  # surface the object rests on
    success_z: float | None  # Lift: object centre height that counts as success
    grasp_dz: float  # end-effector height relative to the object centre when grasping
    hover_dz: float  # height above the object centre for approach
    lift_z: float  # absolute end-effector height for the final lift / carry
    yaw_period: float  # symmetry of the object about z (cube: pi/2, can: any)
    #: xy box the operator may push/carry the object to (centre, half sizes)
    area_centre: np.ndarray
    area_half: np.ndarray
    target: np.ndarray | None = None  # Can: slot in the target bin (x, y, floor z)
    #: suboptimal operator: chance of a hesitation at each chance to hesitate, and its length in steps
    hesitate_chance: float = 0.25
    hesitate_steps: tuple[int, int] = (3, 10)


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError("operator", "kind", f"unknown operator kind {kind!r}; expected one of {list(KINDS)}")


class HasOperatorScene(Protocol):
    """A task that scripted operators can work in: it states its own scene facts."""

    def operator_scene(self) -> Scene: ...


# ---------------------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------------------
class ScriptedOperator(FailurePlan):
    """A scripted command source. ``kind`` picks the script; ``rng`` makes every random
    choice (behaviours, speeds, pauses, action noise), so one seed gives one demo."""

    failure_modes = FAILURE_MODES

    def __init__(
        self,
        scene: Scene,
        kind: str,
        rng: np.random.Generator,
        noise: float | None = None,
        behaviours: list[str] | None = None,
    ):
        check_kind(kind)
        pool = LIFT_BEHAVIOURS if scene.task == "lift" else CAN_BEHAVIOURS
        for b in behaviours or []:
            if b not in pool:
                raise ConfigError("operator", "behaviours", f"unknown behaviour {b!r} for {scene.task}; expected some of {list(pool)}")
        #: Suboptimal only: run exactly these behaviours (tests, analysis) instead of drawing 1-3.
        self.forced_behaviours = list(behaviours) if behaviours else None
        self.scene = scene
        self.kind = kind
        self.rng = rng
        self.noise = (0.05 if kind != "suboptimal" else 0.1) if noise is None else float(noise)
        self.reset()

    # -- CommandSource -------------------------------------------------------------------
    def reset(self) -> None:
        self.obs: dict[str, np.ndarray] | None = None
        self.step_count = 0
        self.behaviours: list[str] = []
        self.events: list[tuple[int, str]] = []
        self.mode: str = ""
        self._gen: Iterator[np.ndarray] | None = None
        self._grip = OPEN
        self._yaw_offset = 0.0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.obs = {k: np.asarray(v, dtype=np.float64) for k, v in obs.items()}
        for key in ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"):
            if key not in self.obs:
                raise ConfigError("operator", key, f"observation lacks {key!r}; the scripted operator needs it")
        if self._gen is None:
            self._gen = self._script()
        try:
            action = next(self._gen)
        except StopIteration:
            action = self._hold()
            self._gen = iter(())
        self.step_count += 1
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    def episode_info(self) -> dict[str, np.ndarray]:
        """What this episode contained, stored by the collect command as ``extra/*`` arrays."""
        return {
            "operator_mode": np.asarray(self.mode or self.kind),
            "behaviours": np.asarray("+".join(self.behaviours)),
            "event_steps": np.asarray([s for s, _ in self.events], dtype=np.int64),
            "event_names": np.asarray([n for _, n in self.events], dtype=np.str_) if self.events else np.zeros(0, "U1"),
            **self.failure_info(),
        }

    # -- observation helpers --------------------------------------------------------------
    def eef(self) -> np.ndarray:
        return self.obs["robot0_eef_pos"]

    def obj(self) -> np.ndarray:
        return self.obs["object"][:3]

    def obj_quat(self) -> np.ndarray:
        return self.obs["object"][3:7]

    def gap(self) -> float:
        q = self.obs["robot0_gripper_qpos"]
        return float(q[0] - q[1])

    def holding(self) -> bool:
        """Fingers stopped part way and the object sits between them."""
        near = np.linalg.norm(self.obj() - self.eef()) < 0.05
        return self.gap() > 0.012 and near

    def lifted(self) -> bool:
        return self.obj()[2] > self.scene.table_z + 0.035 + (0.0 if self.scene.task == "lift" else 0.04)

    def _event(self, name: str) -> None:
        self.events.append((self.step_count, name))

    # -- low-level command ----------------------------------------------------------------
    def _command(self, target: np.ndarray, speed: float, yaw: float | None, grip: float) -> np.ndarray:
        a = np.zeros(7)
        d = (np.asarray(target) - self.eef()) * POS_GAIN
        n = np.linalg.norm(d)
        if n > speed:
            d *= speed / n
        a[:3] = d
        a[3:6] = self._rot_command(yaw)
        a[6] = grip
        if self.noise:
            a[:3] += self.rng.normal(0.0, self.noise, 3) * min(1.0, n)
        return a

    def _rot_command(self, yaw: float | None) -> np.ndarray:
        r = quat_to_mat(self.obs["robot0_eef_quat"])
        cur_yaw = math.atan2(r[1, 0], r[0, 0])
        goal_yaw = cur_yaw if yaw is None else yaw
        err = mat_to_axis_angle(rot_z(goal_yaw) @ R_DOWN @ r.T)
        return np.clip(err * ROT_GAIN, -0.6, 0.6)

    def _hold(self) -> np.ndarray:
        a = np.zeros(7)
        a[3:6] = self._rot_command(None)
        a[6] = self._grip
        return a

    def grasp_yaw(self) -> float | None:
        """The hand yaw for grasping the object now: the object's yaw (plus this episode's
        grasp-yaw offset) taken modulo the hand's 180-degree symmetry, nearest the current yaw."""
        if self.scene.yaw_period == 0.0:
            if self._yaw_offset == 0.0:
                return None
            return self._yaw_offset
        r = quat_to_mat(self.obs["robot0_eef_quat"])
        cur = math.atan2(r[1, 0], r[0, 0])
        base = object_yaw(self.obj_quat()) + self._yaw_offset
        period = math.pi  # the parallel gripper looks the same turned by 180 degrees
        if self._yaw_offset == 0.0:
            period = self.scene.yaw_period  # any face pair will do
        k = round((cur - base) / period)
        return base + k * period

    # -- motion primitives (generators) ---------------------------------------------------
    def _move(
        self,
        target: Callable[[], np.ndarray],
        grip: float | None = None,
        speed: float = 1.0,
        tol: float = 0.012,
        max_steps: int = 60,
        yaw: Callable[[], float | None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Script:
        if grip is not None:
            self._grip = grip
        still = 0
        last = self.eef().copy()
        for _ in range(max_steps):
            t = np.asarray(target(), dtype=np.float64)
            if np.linalg.norm(t - self.eef()) < tol or (stop is not None and stop()):
                return
            # Blocked (fingers on the table, arm at its reach): a person would stop pushing.
            still = still + 1 if np.linalg.norm(self.eef() - last) < 0.0015 else 0
            if still >= 4 and np.linalg.norm(t - self.eef()) < 4 * tol + 0.01:
                return
            last = self.eef().copy()
            yield self._command(t, speed, yaw() if yaw else None, self._grip)

    def _grip_to(self, grip: float, steps: int = 8) -> Script:
        self._grip = grip
        self._event("close" if grip > 0 else "open")
        hold = self.eef().copy()
        for _ in range(steps):
            yield self._command(hold, 0.3, None, grip)

    def _close_until_blocked(self, min_steps: int = 5, max_steps: int = 16) -> Script:
        """Squeeze until the fingers stop moving: on the object, or fully shut on nothing."""
        self._grip = CLOSE
        self._event("close")
        hold = self.eef().copy()
        last, still = self.gap(), 0
        for i in range(max_steps):
            yield self._command(hold, 0.3, None, CLOSE)
            g = self.gap()
            still = still + 1 if abs(g - last) < 0.0015 else 0
            last = g
            if i + 1 >= min_steps and still >= 2:
                return

    def _wait(self, steps: int) -> Script:
        hold = self.eef().copy()
        for _ in range(steps):
            a = self._command(hold, 0.2, None, self._grip)
            yield a

    # -- building blocks ------------------------------------------------------------------
    def _speed(self) -> float:
        if self.kind == "suboptimal":
            return float(self.rng.uniform(0.5, 1.0))
        return 1.0

    def _maybe_hesitate(self) -> Script:
        """Now and then stop still, as teleoperators do while they line up the next move (Lift:
        half the time, 0.5-2 s, i.e. 10-40 steps at 20 Hz). Held still, the recorded action is
        ~0 for as long as the pause lasts, so from a still hand the data says "keep still" far
        more often than "go": plain imitation slows to a crawl and stalls where the operator
        paused (above the object, before descending), while IRIS's value ranks a subgoal after
        the pause above one inside it. The chance and length are per task (``Scene``): Lift's v13 values here;
        v12, and Can still, pause a quarter of the time for 3-10 steps."""
        shortest, longest = self.scene.hesitate_steps
        if self.kind == "suboptimal" and self.rng.random() < self.scene.hesitate_chance:
            self._event("hesitate")
            yield from self._wait(int(self.rng.integers(shortest, longest + 1)))

    def _above(self, dz: float | None = None) -> Callable[[], np.ndarray]:
        dz = self.scene.hover_dz if dz is None else dz
        return lambda: self.obj() + np.array([0.0, 0.0, dz])

    def _approach(self, side: str = "above") -> Script:
        """Get above the object, from straight above or sliding in from one side."""
        if self.kind == "suboptimal" and self.rng.random() < 0.4:
            self._event("detour")
            p = self.eef() + np.append(self.rng.uniform(-0.12, 0.12, 2), self.rng.uniform(0.0, 0.08))
            yield from self._move(lambda: p, OPEN, self._speed(), tol=0.03)
            yield from self._maybe_hesitate()
        if side in ("left", "right"):
            s = -1.0 if side == "left" else 1.0
            start = self.obj().copy()
            via = start + np.array([0.0, s * 0.13, self.scene.hover_dz * 0.5])
            yield from self._move(lambda: via + np.array([0.0, 0.0, 0.06]), OPEN, 1.0, tol=0.02, yaw=self.grasp_yaw)
            yield from self._move(lambda: via, OPEN, 1.0, tol=0.015, yaw=self.grasp_yaw)
            yield from self._move(self._above(self.scene.hover_dz * 0.5), OPEN, 0.8, tol=0.012, yaw=self.grasp_yaw)
        else:
            yield from self._move(self._above(), OPEN, self._speed(), tol=0.015, yaw=self.grasp_yaw)

    def _descend_and_close(self, extra_dz: float = 0.0, offset: np.ndarray | None = None) -> Script:
        off = np.zeros(3) if offset is None else offset
        yield from self._move(
            lambda: self.obj() + np.array([0.0, 0.0, self.scene.grasp_dz + extra_dz]) + off,
            OPEN,
            self._speed() * 0.8,
            tol=0.007,
            max_steps=50,
            yaw=self.grasp_yaw,
        )
        yield from self._close_until_blocked()

    def _release_and_rise(self, dz: float = 0.08) -> Script:
        yield from self._grip_to(OPEN, 8)
        up = self.eef() + np.array([0.0, 0.0, dz])
        yield from self._move(lambda: up, OPEN, self._speed(), tol=0.015, max_steps=30)

    def _grasp(self, side: str = "above", tries: int = 4) -> Generator[np.ndarray, None, bool]:
        """Approach, descend, close; retry when the fingers close on nothing."""
        for attempt in range(tries):
            yield from self._approach(side if attempt == 0 else "above")
            yield from self._maybe_hesitate()
            yield from self._descend_and_close()
            if self.holding():
                self._event("grasped")
                return True
            self._event("regrasp")
            yield from self._release_and_rise(0.06)
        return False

    def _place_point(self, min_dist: float, max_dist: float) -> np.ndarray:
        """A random object destination min..max metres away, inside the allowed area."""
        start = self.obj()[:2]
        for _ in range(50):
            ang = self.rng.uniform(0, 2 * math.pi)
            dist = self.rng.uniform(min_dist, max_dist)
            p = start + dist * np.array([math.cos(ang), math.sin(ang)])
            if np.all(np.abs(p - self.scene.area_centre) <= self.scene.area_half):
                return p
        return self.scene.area_centre + self.rng.uniform(-0.5, 0.5, 2) * self.scene.area_half

    # -- behaviours that undo progress (suboptimal) ---------------------------------------
    def _lift_part_way(self, turn_back: bool = False) -> Generator[np.ndarray, None, float]:
        """Raise the held object part way, slowly, and wait there.

        Shared by the partial lift (``turn_back``: it then sets the object back down) and the
        suboptimal operator's final lift (which pauses here and then goes on up, fast), so
        that the state "held, part way up, paused" is followed by both outcomes in the data,
        as with a human operator who sometimes changes their mind. A policy that imitates
        without a notion of progress averages the two; one that ranks subgoals by value can
        tell them apart.

        On Lift the final lift pauses low (the end effector 6-9 mm up) while partial lifts
        turn back anywhere from 6 to 16 mm, just under the success height. A slow rise past
        the final lift's pause then only ever ends in a set-down, and only a rise that leaves
        the pause fast is a final lift: the value of a height is not readable from the height.
        Against the v5 operator (both turning points in one low band), on the same draws of
        demos, this costs BC-RNN far more than IRIS (measured in commit 15e14e3;
        ``bench/lift_probe.py heights`` measures the turning points of a demo folder).
        """
        rest_z = self.obj()[2]
        if self.scene.success_z is not None:  # stay clearly below the success height
            # (highest end-effector rise, its margin below success, the cube's stop margin)
            highest, rise_margin, stop_margin = (0.016, 0.003, 0.003) if turn_back else (0.009, 0.006, 0.005)
            rise = min(self.rng.uniform(0.006, highest), self.scene.success_z - rise_margin - rest_z)
            stop_z = self.scene.success_z - stop_margin
            guard = lambda: self.obj()[2] > stop_z
        else:
            rise = self.rng.uniform(0.03, 0.07)
            guard = None
        top = self.eef() + np.array([0.0, 0.0, rise])
        yield from self._move(lambda: top, CLOSE, self._speed() * 0.6, tol=0.003, max_steps=25, stop=guard)
        yield from self._wait(int(self.rng.integers(2, 8)))
        return rise

    def _b_partial_lift(self) -> Script:
        """Pick the object up part way and set it back down, one to three times, then let go."""
        ok = yield from self._grasp()
        if not ok:
            return
        for _ in range(int(self.rng.integers(1, 4))):
            self._event("partial_lift_up")
            rise = yield from self._lift_part_way(turn_back=True)
            down = self.eef() - np.array([0.0, 0.0, rise + 0.002])
            yield from self._move(lambda: down, CLOSE, self._speed() * 0.6, tol=0.004, max_steps=25)
            self._event("partial_lift_down")
            yield from self._wait(int(self.rng.integers(1, 5)))
        yield from self._release_and_rise()

    def _b_push(self) -> Script:
        """Push the object along the table with the closed hand, without grasping it."""
        dest = self._place_point(0.05, 0.10)
        start = self.obj().copy()
        d = dest - start[:2]
        d /= max(np.linalg.norm(d), 1e-9)
        behind = np.array([*(start[:2] - d * 0.075), start[2] + 0.08])
        self._grip = CLOSE
        self._event("push_start")
        yield from self._move(lambda: behind, CLOSE, self._speed(), tol=0.015)
        low = np.array([behind[0], behind[1], start[2] - 0.005])
        yield from self._move(lambda: low, CLOSE, 0.6, tol=0.01, max_steps=30)
        end = np.array([*(dest - d * 0.03), start[2] - 0.005])
        yield from self._move(lambda: end, CLOSE, self._speed() * 0.6, tol=0.01, max_steps=50)
        self._event("push_end")
        up = self.eef() + np.array([0.0, 0.0, 0.08])
        yield from self._move(lambda: up, OPEN, self._speed(), tol=0.015, max_steps=30)

    def _b_drag(self) -> Script:
        """Grasp the object and drag it along the table, then let go."""
        ok = yield from self._grasp()
        if not ok:
            return
        dest = self._place_point(0.05, 0.10)
        z = self.eef()[2] + 0.002
        self._event("drag_start")
        yield from self._move(lambda: np.array([dest[0], dest[1], z]), CLOSE, self._speed() * 0.6, tol=0.01, max_steps=50)
        self._event("drag_end")
        yield from self._release_and_rise()

    def _b_carry_release(self) -> Script:
        """Grasp, carry the object (low, below success height) elsewhere, set it down, let go."""
        ok = yield from self._grasp()
        if not ok:
            return
        dest = self._place_point(0.07, 0.13)
        rest_z = self.obj()[2]
        if self.scene.success_z is not None:
            rise = min(0.010, self.scene.success_z - 0.008 - rest_z)
        else:
            rise = self.rng.uniform(0.08, 0.12)
        z0 = self.eef()[2]
        guard = (lambda: self.obj()[2] > self.scene.success_z - 0.006) if self.scene.success_z else None
        self._event("carry_start")
        yield from self._move(lambda: np.array([*self.eef()[:2], z0 + rise]), CLOSE, 0.5, tol=0.003, max_steps=20, stop=guard)
        yield from self._move(lambda: np.array([dest[0], dest[1], z0 + rise]), CLOSE, self._speed() * 0.7, tol=0.01, max_steps=60)
        yield from self._move(lambda: np.array([dest[0], dest[1], z0 + 0.001]), CLOSE, 0.5, tol=0.004, max_steps=40)
        self._event("carry_end")
        yield from self._release_and_rise()

    def _b_wander(self) -> Script:
        """Approach the object, then drift away and come back later."""
        yield from self._approach()
        self._event("wander")
        for _ in range(int(self.rng.integers(1, 3))):
            p = self.eef() + np.append(self.rng.uniform(-0.18, 0.18, 2), self.rng.uniform(0.0, 0.12))
            p[:2] = np.clip(p[:2], self.scene.area_centre - 0.2, self.scene.area_centre + 0.2)
            yield from self._move(lambda p=p: p, OPEN, self._speed(), tol=0.03)
            yield from self._wait(int(self.rng.integers(2, 9)))

    def _b_missed_grasp(self) -> Script:
        """Close the hand too high (or beside the object), notice, open and back off."""
        yield from self._approach()
        off = np.zeros(3)
        extra = float(self.rng.uniform(0.045, 0.06))
        self._event("missed_grasp")
        yield from self._descend_and_close(extra_dz=extra, offset=off)
        yield from self._wait(int(self.rng.integers(2, 6)))
        yield from self._release_and_rise(0.05)

    # -- finishing: the proficient part ---------------------------------------------------
    def _finish_lift(self, side: str = "above") -> Script:
        for _ in range(4):
            ok = yield from self._grasp(side)
            if ok:
                self._event("final_lift")
                if self.kind == "suboptimal":
                    yield from self._lift_part_way()  # the same pause the partial lift makes
                xy = self.eef()[:2].copy()
                yield from self._move(
                    lambda: np.array([xy[0], xy[1], self.scene.lift_z]), CLOSE, 1.0, tol=0.01, max_steps=40
                )
                if self.lifted():
                    return
                yield from self._release_and_rise()
            side = "above"

    def _finish_can(self, side: str = "above") -> Script:
        # Aim a little inside the slot centre, towards the robot: the far corner of the
        # target bin is at the edge of the Panda's reach.
        tgt = self.scene.target + np.array([-0.01, -0.04, 0.0])
        for _ in range(4):
            ok = yield from self._grasp(side)
            side = "above"
            if not ok:
                continue
            self._event("final_lift")
            xy = self.eef()[:2].copy()
            yield from self._move(lambda: np.array([xy[0], xy[1], self.scene.lift_z]), CLOSE, 1.0, tol=0.02, max_steps=40)
            if not self.holding():
                continue
            self._event("transport")
            yield from self._move(lambda: np.array([tgt[0], tgt[1], self.scene.lift_z]), CLOSE, 1.0, tol=0.02, max_steps=80)
            yield from self._move(lambda: np.array([tgt[0], tgt[1], tgt[2] + 0.13]), CLOSE, 0.6, tol=0.015, max_steps=40)
            yield from self._grip_to(OPEN, 6)
            yield from self._move(lambda: np.array([tgt[0], tgt[1], self.scene.lift_z + 0.05]), OPEN, 1.0, tol=0.02, max_steps=40)
            near_target = np.linalg.norm(self.obj()[:2] - tgt[:2]) < 0.12
            if near_target:
                return

    def _finish(self, side: str = "above") -> Script:
        if self.failure_mode:
            self._event(f"fail:{self.failure_mode}")
            yield from getattr(self, f"_fail_{self.failure_mode}")()
        elif self.scene.task == "lift":
            yield from self._finish_lift(side)
        else:
            yield from self._finish_can(side)

    # -- failing: episodes that end without success (plan_failure) -------------------------
    def _below_success(self) -> Callable[[], bool] | None:
        """A stop test that keeps a held object under the success height (Lift), None elsewhere."""
        if self.scene.success_z is None:
            return None
        return lambda: self.obj()[2] > self.scene.success_z - 0.006

    def _fail_dropped_object(self) -> Script:
        """Grasp, raise the object part way (the final lift's own pause), start carrying it, and
        open the hand mid-carry: the object falls back and the operator does not try again."""
        ok = yield from self._grasp()
        if ok:
            yield from self._lift_part_way()
            dest = self._place_point(0.03, 0.08)
            z = self.eef()[2]
            self._event("carry_start")
            yield from self._move(lambda: np.array([dest[0], dest[1], z]), CLOSE, self._speed() * 0.7, tol=0.01,
                                  max_steps=int(self.rng.integers(5, 25)), stop=self._below_success())
            self._event("drop")
        yield from self._release_and_rise(float(self.rng.uniform(0.04, 0.1)))

    def _fail_missed_grasp(self) -> Script:
        """Close the hand above the object, then lift the empty hand as if it held the object,
        and never try again."""
        yield from self._approach()
        self._event("missed_grasp")
        yield from self._descend_and_close(extra_dz=float(self.rng.uniform(0.045, 0.06)))
        yield from self._wait(int(self.rng.integers(2, 6)))
        xy = self.eef()[:2].copy()
        yield from self._move(lambda: np.array([xy[0], xy[1], self.scene.lift_z]), CLOSE, self._speed(), tol=0.01, max_steps=40)

    def _fail_timeout(self) -> Script:
        """Dawdle until the horizon ends the episode: hover over the object, drift about slowly and
        stop still for long spells, with the hand open, never grasping."""
        yield from self._approach()
        self._event("dawdle")
        while True:
            p = self.obj() + np.append(self.rng.uniform(-0.06, 0.06, 2), self.scene.hover_dz + self.rng.uniform(0.0, 0.06))
            yield from self._move(lambda p=p: p, OPEN, 0.3 * self._speed(), tol=0.02, max_steps=40)
            yield from self._wait(int(self.rng.integers(10, 40)))

    # -- scripts ---------------------------------------------------------------------------
    def _script(self) -> Script:
        # Let the object settle (robosuite drops it from 1 cm) while starting to move.
        if self.kind == "proficient":
            self.mode = "proficient"
            yield from self._finish("above")
        elif self.kind == "multimodal":
            side = str(self.rng.choice(["above", "left", "right"]))
            self._yaw_offset = float(self.rng.choice([0.0, math.pi / 2]))
            if self.scene.yaw_period == 0.0:
                self._yaw_offset = float(self.rng.choice([0.0, math.pi / 4, -math.pi / 4]))
            self.mode = f"{side}/yaw{int(round(math.degrees(self._yaw_offset)))}"
            yield from self._finish(side)
        else:
            pool = LIFT_BEHAVIOURS if self.scene.task == "lift" else CAN_BEHAVIOURS
            n = int(self.rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
            # Setting the object back down after picking it up is the behaviour that most
            # confuses plain imitation (see _lift_part_way), so it is drawn most often: from the
            # "held part way up" state the demos go back down more often than on up.
            weights = np.array([4.0 if b == "partial_lift" else 1.0 for b in pool])
            chosen = list(self.rng.choice(pool, size=n, replace=False, p=weights / weights.sum()))
            self.behaviours = list(self.forced_behaviours) if self.forced_behaviours else [str(b) for b in chosen]
            self.mode = "+".join(self.behaviours)
            for b in self.behaviours:
                self._event(f"begin:{b}")
                yield from getattr(self, f"_b_{b}")()
                yield from self._maybe_hesitate()
            yield from self._finish("above")


def scripted_operator_for(
    env: HasOperatorScene, kind: str, rng: np.random.Generator | None, noise: float | None = None,
    behaviours: list[str] | None = None,
) -> ScriptedOperator:
    """A scripted operator in ``env``'s scene (``env.operator_scene()``): the operator factory
    that the Lift, Can and PyBullet Lift tasks register."""
    check_kind(kind)  # before the scene: asking a simulated task for it may build the simulator
    rng = rng if rng is not None else np.random.default_rng()
    return ScriptedOperator(env.operator_scene(), kind, rng, noise, behaviours)
