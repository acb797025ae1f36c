"""Scripted Graph Reach operators: proficient, suboptimal and multimodal demonstrators.

Each is a ``CommandSource`` (``reset()``, ``act(obs)``) that follows a *plan*: a list of
waypoints (each with a speed factor) and pauses. Why plans rather than reactive rules:
every kind of demo quality the IRIS experiments need is then a plan-making policy over
the same graph, and the follower that executes plans is shared and tested once.

- ``proficient``: the graph's shortest route at full speed with small action noise.
- ``suboptimal``: a random route (often a longer one), dead-end detours, back-tracking,
  pauses and uneven speed; still reaches the goal (plans are redrawn until they fit in
  the horizon). The demos contain every piece of the shortest route, but few take it end
  to end: the data IRIS must beat.
- ``multimodal``: one of the K shortest distinct routes per episode, each driven
  proficiently, so mean-averaging the actions at the fork drives into the wall.

Any of them can also fail an episode the way real operators do (``plan_failure``, see
``robolearn.tasks.operator_failures``): ``wrong_turn`` drives into a dead end that is not on
the way to the goal and stays there, never correcting; ``timeout`` follows the kind's usual
route but dawdles (slower segments and long pauses) until the horizon runs out.

All randomness comes from the ``rng`` given to the factory, so a seeded rng gives the
same episode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robolearn.config import ConfigError
from robolearn.tasks.operator_failures import FailurePlan

KINDS = ("proficient", "suboptimal", "multimodal")
FAILURE_MODES = ("wrong_turn", "timeout")


@dataclass
class Waypoint:
    pos: np.ndarray
    speed: float = 1.0  # fraction of max_speed


@dataclass
class Pause:
    steps: int


class PlanFollower(FailurePlan):
    """Drives the point through a plan of waypoints and pauses, then onto the goal.

    A waypoint is reached within ``switch_radius``; because every waypoint lies on a
    corridor centre line and the point stays within ``switch_radius`` of the previous one,
    the straight line to the next waypoint lies inside one (convex) corridor capsule, so
    the follower never pushes into a wall except by noise.
    """

    def __init__(self, env, rng: np.random.Generator, noise: float):
        self.env = env
        self.rng = rng
        self.noise = float(noise)
        self.max_speed = float(env.config.max_speed)
        self.switch_radius = float(env.config.operators.switch_radius)
        self.plan: list[Waypoint | Pause] = []
        self._i = 0
        self._pause_left = 0
        #: Which route (index into ``routes``) the current episode follows; -1 when not applicable.
        self.route_index = -1
        self.route: list[str] = []

    failure_modes = FAILURE_MODES

    # Subclasses make the plan.
    def make_plan(self) -> list[Waypoint | Pause]:
        raise NotImplementedError

    def reset(self) -> None:
        self.plan = self.make_failing_plan(self.failure_mode) if self.failure_mode else self.make_plan()
        self._i = 0
        self._pause_left = -1

    # -- failures ---------------------------------------------------------------------------
    def segment_speed(self) -> float:
        """Speed factor of one segment of a failing plan (the suboptimal operator's are uneven)."""
        return 1.0

    def make_failing_plan(self, mode: str) -> list[Waypoint | Pause]:
        """A plan that cannot reach the goal within the horizon, playing failure ``mode``."""
        stay = Pause(int(self.env.horizon) + 1)  # outlasts the episode: the operator never goes on
        if mode == "wrong_turn":
            self.route = self._wrong_route()
            self.route_index = -1
            nodes = self.env.map.nodes
            return [*(Waypoint(nodes[n].copy(), self.segment_speed()) for n in self.route[1:]), stay]
        return self._dawdle(self.make_plan())

    def _wrong_route(self) -> list[str]:
        """The way to a dead end whose path does not pass the goal, drawn uniformly."""
        cfg, m = self.env.config, self.env.map
        choices = [p for p in (m.shortest_path(cfg.start, d) for d in m.dead_ends(exclude=(cfg.start, cfg.goal)))
                   if cfg.goal not in p]
        if not choices:
            raise ConfigError("operator", "failure_mode", "wrong_turn needs a dead end off the way to the goal; this map has none")
        return choices[int(self.rng.integers(len(choices)))]

    def _dawdle(self, plan: list[Waypoint | Pause]) -> list[Waypoint | Pause]:
        """``plan`` slowed to a crawl, with pauses before its last waypoint (the goal) that add up
        to more than the horizon (with a margin for action noise, which can speed a segment up):
        the goal comes into reach only after the episode has ended."""
        plan = [Waypoint(p.pos, p.speed * 0.5) if isinstance(p, Waypoint) else p for p in plan]
        horizon = int(self.env.horizon)
        head, last = plan[:-1], plan[-1:]
        while self.plan_steps(head) <= 1.1 * horizon:
            steps = int(self.rng.integers(horizon // 6, horizon // 3 + 2))
            head.insert(int(self.rng.integers(len(head) + 1)), Pause(steps))
        return head + last

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        pos = np.asarray(obs["pos"], dtype=np.float64)
        while self._i < len(self.plan):
            item = self.plan[self._i]
            if isinstance(item, Pause):
                if self._pause_left < 0:
                    self._pause_left = item.steps
                if self._pause_left > 0:
                    self._pause_left -= 1
                    return np.zeros(2, np.float32)
                self._pause_left = -1
                self._i += 1
                continue
            if np.linalg.norm(item.pos - pos) < self.switch_radius and self._i < len(self.plan) - 1:
                self._i += 1
                continue
            break
        target, speed = (self.plan[self._i].pos, self.plan[self._i].speed) if self._i < len(self.plan) else (self.env.goal_xy, 1.0)
        d = target - pos
        dist = float(np.linalg.norm(d))
        if dist < 1e-9:
            a = np.zeros(2)
        else:
            step = min(speed * self.max_speed, dist)
            a = d / dist * step / self.max_speed
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def episode_info(self) -> dict[str, np.ndarray]:
        """Per-episode facts worth keeping beside the demo (stored under ``extra/``)."""
        return {"route_index": np.asarray(self.route_index, np.int64), "plan_steps": np.asarray(self.plan_steps(), np.int64),
                **self.failure_info()}

    def plan_steps(self, plan: list[Waypoint | Pause] | None = None) -> int:
        """Steps the plan takes without noise, from the start node: the length it is designed to have."""
        plan = self.plan if plan is None else plan
        pos = self.env.start_xy
        total = 0.0
        for item in plan:
            if isinstance(item, Pause):
                total += item.steps
            else:
                total += np.ceil(np.linalg.norm(item.pos - pos) / (self.max_speed * item.speed))
                pos = item.pos
        return int(total)

    def _waypoints(self, path: list[str], speed: float = 1.0) -> list[Waypoint | Pause]:
        nodes = self.env.map.nodes
        return [Waypoint(nodes[n].copy(), speed) for n in path[1:]]


def candidate_routes(env) -> list[list[str]]:
    """Distinct simple routes start -> goal, shortest first."""
    return env.map.simple_paths(env.config.start, env.config.goal)


class ProficientOperator(PlanFollower):
    def __init__(self, env, rng: np.random.Generator):
        super().__init__(env, rng, env.config.operators.noise)

    def make_plan(self) -> list[Waypoint | Pause]:
        self.route = self.env.map.shortest_path(self.env.config.start, self.env.config.goal)
        self.route_index = 0
        return self._waypoints(self.route)


class RouteOperator(PlanFollower):
    """Drives one given route proficiently (used by the multimodal operator and by tests)."""

    def __init__(self, env, rng: np.random.Generator, route: list[str], noise: float | None = None):
        super().__init__(env, rng, env.config.operators.noise if noise is None else noise)
        self.route = list(route)

    def make_plan(self) -> list[Waypoint | Pause]:
        return self._waypoints(self.route)


class MultimodalOperator(PlanFollower):
    def __init__(self, env, rng: np.random.Generator):
        super().__init__(env, rng, env.config.operators.noise)
        self.routes = candidate_routes(env)[: env.config.operators.num_routes]

    def make_plan(self) -> list[Waypoint | Pause]:
        self.route_index = int(self.rng.integers(len(self.routes)))
        self.route = self.routes[self.route_index]
        return self._waypoints(self.route)


class SuboptimalOperator(PlanFollower):
    def __init__(self, env, rng: np.random.Generator):
        super().__init__(env, rng, env.config.operators.suboptimal_noise)
        self.routes = candidate_routes(env)
        cfg = env.config
        self.dead_ends = set(env.map.dead_ends(exclude=(cfg.start, cfg.goal)))
        self.budget = int(cfg.operators.max_plan_fraction * cfg.horizon)

    def segment_speed(self) -> float:
        lo, hi = self.env.config.operators.speed_range
        return float(self.rng.uniform(lo, hi))

    def make_plan(self) -> list[Waypoint | Pause]:
        best: list[Waypoint | Pause] | None = None
        for attempt in range(50):
            # Later attempts damp the perturbations, so a short horizon still gets a plan that fits.
            damp = 0.85**attempt
            plan, idx, route = self._draw(damp)
            steps = self.plan_steps(plan)
            if steps <= self.budget:
                best = plan
                break
            if best is None or steps < self.plan_steps(best):
                best, idx_best, route_best = plan, idx, route
        else:
            idx, route = idx_best, route_best
        self.route_index, self.route = idx, route
        return best

    def _draw(self, damp: float) -> tuple[list[Waypoint | Pause], int, list[str]]:
        op = self.env.config.operators
        rng, nodes, m = self.rng, self.env.map.nodes, self.env.map
        idx = int(rng.integers(len(self.routes)))
        route = self.routes[idx]
        lo, hi = op.speed_range

        def speed() -> float:
            return float(rng.uniform(lo, hi))

        def maybe_pause(plan: list) -> None:
            if rng.random() < op.pause_prob * damp:
                plan.append(Pause(int(rng.integers(op.pause_steps[0], op.pause_steps[1] + 1))))

        plan: list[Waypoint | Pause] = []
        for i in range(1, len(route)):
            node = route[i]
            plan.append(Waypoint(nodes[node].copy(), speed()))
            if node == route[-1]:
                break
            maybe_pause(plan)
            # Dead-end detours: drive part or all of the way in, then come back.
            for nb in m.neighbours(node):
                if nb in self.dead_ends and nb not in route and rng.random() < op.detour_prob * damp:
                    frac = float(rng.uniform(0.5, 1.0))
                    plan.append(Waypoint(nodes[node] + frac * (nodes[nb] - nodes[node]), speed()))
                    maybe_pause(plan)
                    plan.append(Waypoint(nodes[node].copy(), speed()))
            # Back-tracking: go back one or two nodes (partly or fully), then forward again.
            if i >= 2 and rng.random() < op.backtrack_prob * damp:
                back = 1 if i < 3 or rng.random() < 0.6 else 2
                frac = float(rng.uniform(0.5, 1.0))
                path_back = route[i - back : i][::-1]  # nodes to revisit, nearest first
                for j, n in enumerate(path_back):
                    target = nodes[n] if j < len(path_back) - 1 else nodes[route[i - back + 1]] + frac * (
                        nodes[n] - nodes[route[i - back + 1]]
                    )
                    plan.append(Waypoint(np.asarray(target, float).copy(), speed()))
                maybe_pause(plan)
                for n in route[i - back + 1 : i + 1]:
                    plan.append(Waypoint(nodes[n].copy(), speed()))
        return plan, idx, route


def make_operator(env, kind: str, rng: np.random.Generator) -> PlanFollower:
    if kind == "proficient":
        return ProficientOperator(env, rng)
    if kind == "suboptimal":
        return SuboptimalOperator(env, rng)
    if kind == "multimodal":
        return MultimodalOperator(env, rng)
    raise ConfigError("--operator", kind, f"unknown graph_reach operator; expected one of {list(KINDS)}")
