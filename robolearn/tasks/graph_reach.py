"""Graph Reach, the pedagogical task from IRIS (Mandlekar et al., ICRA 2020).

A 2-D point travels from a start node to a goal node through a fixed graph of straight
corridors and cannot leave them. Why it exists: it is the smallest task where the two
failure modes IRIS addresses are visible and cheap to measure. Suboptimal demos (detours,
back-tracking, pauses) contain every piece of the shortest route but rarely take it end
to end; multimodal demos (left vs right of a solid block) make a mean-regressing policy
average the two directions at the fork and drive into the wall between them.

Observation ``{"pos": float32 (2,)}``; action float32 (2,) in [-1, 1], a velocity scaled
by ``max_speed`` per step. Sparse reward 1.0 on reaching the goal; the episode ends on
success or at the horizon. The map and all settings live in ``envs/graph_reach.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robolearn.config import ConfigError, checked, from_dict, non_negative, positive, probability
from robolearn.data.format import ActionSpec, ObsFieldSpec
from robolearn.paths import ENVS_DIR
from robolearn.tasks.base import StepResult, register_env, register_operator
from robolearn.tasks.graph_reach_map import CorridorMap, build_map

_SOURCE = str(ENVS_DIR / "graph_reach.yaml")


@dataclass
class GraphReachOperatorConfig:
    """Settings of the scripted operators (see ``robolearn.tasks.graph_reach_operators``)."""

    noise: float = non_negative(0.05)
    switch_radius: float = positive(0.1)
    num_routes: int = positive(3)
    suboptimal_noise: float = non_negative(0.1)
    detour_prob: float = probability(0.6)
    backtrack_prob: float = probability(0.35)
    pause_prob: float = probability(0.25)
    pause_steps: list[int] = non_negative(default_factory=lambda: [3, 8])
    speed_range: list[float] = checked(default_factory=lambda: [0.45, 1.0], check="fraction")
    max_plan_fraction: float = checked(0.8, check="fraction")


@dataclass
class GraphReachConfig:
    nodes: dict[str, list[float]] = field(default_factory=dict)
    edges: list[list[str]] = field(default_factory=list)
    start: str = "S"
    goal: str = "G"
    corridor_half_width: float = positive(0.35)
    max_speed: float = positive(0.3)
    goal_radius: float = positive(0.3)
    start_noise: float = non_negative(0.15)
    horizon: int = positive(150)
    control_hz: float = positive(10.0)
    operators: GraphReachOperatorConfig = field(default_factory=GraphReachOperatorConfig)

    def validate(self, source: str = _SOURCE) -> CorridorMap:
        """Check every field and build the map; errors name the field and what was expected."""
        if not isinstance(self.nodes, dict) or len(self.nodes) < 2:
            raise ConfigError(source, "nodes", "expected a mapping of at least two node names -> [x, y]")
        for name, xy in self.nodes.items():
            try:
                arr = np.asarray(xy, dtype=np.float64)
            except (TypeError, ValueError):
                arr = np.zeros(0)
            if arr.shape != (2,) or not np.all(np.isfinite(arr)):
                raise ConfigError(source, f"nodes.{name}", f"expected [x, y] (two finite numbers), got {xy!r}")
        if not isinstance(self.edges, list) or not self.edges:
            raise ConfigError(source, "edges", "expected a non-empty list of [node, node] pairs")
        for i, e in enumerate(self.edges):
            if not isinstance(e, (list, tuple)) or len(e) != 2:
                raise ConfigError(source, f"edges[{i}]", f"expected [node, node], got {e!r}")
            for n in e:
                if n not in self.nodes:
                    raise ConfigError(source, f"edges[{i}]", f"unknown node {n!r}; nodes are {sorted(self.nodes)}")
            if e[0] == e[1] or np.allclose(self.nodes[e[0]], self.nodes[e[1]]):
                raise ConfigError(source, f"edges[{i}]", f"an edge needs two distinct node positions, got {e!r}")
        for key in ("start", "goal"):
            if getattr(self, key) not in self.nodes:
                raise ConfigError(source, key, f"unknown node {getattr(self, key)!r}; nodes are {sorted(self.nodes)}")
        if not self.start_noise < self.corridor_half_width:
            raise ConfigError(source, "start_noise", f"expected 0 <= start_noise < corridor_half_width, got {self.start_noise}")
        op = self.operators
        if len(op.pause_steps) != 2 or not op.pause_steps[0] <= op.pause_steps[1]:
            raise ConfigError(source, "operators.pause_steps", f"expected [min, max] with min <= max, got {op.pause_steps}")
        if len(op.speed_range) != 2 or not op.speed_range[0] <= op.speed_range[1]:
            raise ConfigError(source, "operators.speed_range", f"expected [lo, hi] with lo <= hi, got {op.speed_range}")
        m = build_map(self.nodes, self.edges, self.corridor_half_width)
        try:
            m.shortest_path(self.start, self.goal)
        except ValueError as exc:
            raise ConfigError(source, "edges", str(exc)) from None
        return m


# Colours for render(): RGB uint8.
_WALL = np.array([40, 42, 54], np.uint8)
_FLOOR = np.array([226, 226, 218], np.uint8)
_START = np.array([120, 190, 120], np.uint8)
_GOAL = np.array([240, 196, 60], np.uint8)
_POINT = np.array([40, 90, 220], np.uint8)
_SUBGOAL = np.array([220, 40, 60], np.uint8)


class GraphReachEnv:
    """The Graph Reach task environment (a ``TaskEnv``)."""

    name = "graph_reach"
    obs_spec = {"pos": ObsFieldSpec(shape=(2,), dtype="float32")}
    action_spec = ActionSpec(dim=2, low=-1.0, high=1.0, names=["vx", "vy"])

    def __init__(self, config: GraphReachConfig, source: str = _SOURCE):
        self.config = config
        self.map = config.validate(source)
        self.horizon = int(config.horizon)
        self.control_hz = float(config.control_hz)
        self.start_xy = self.map.nodes[config.start].copy()
        self.goal_xy = self.map.nodes[config.goal].copy()
        self._rng = np.random.default_rng()
        self._pos = self.start_xy.copy()
        self._t = 0
        self._mask_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ TaskEnv
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._pos = self._sample_start()
        self._t = 0
        return self._obs()

    def step(self, action: np.ndarray) -> StepResult:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,):
            raise ValueError(f"graph_reach: action must have 2 numbers (vx, vy), got shape {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"graph_reach: action contains NaN or inf: {action!r}")
        a = np.clip(a, -1.0, 1.0)
        self._pos, blocked = self.map.move(self._pos, a * self.config.max_speed)
        self._t += 1
        success = self.is_success()
        done = success or self._t >= self.horizon
        return StepResult(obs=self._obs(), reward=1.0 if success else 0.0, done=done, success=success,
                          info={"blocked": blocked, "t": self._t})

    def is_success(self) -> bool:
        return bool(np.linalg.norm(self._pos - self.goal_xy) <= self.config.goal_radius)

    def close(self) -> None:
        self._mask_cache.clear()

    # ------------------------------------------------------------------ exact replay
    def get_state(self) -> np.ndarray:
        """The whole simulator state: the point's position (float64, full precision)."""
        return self._pos.copy()

    def set_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Put the point at ``state`` and return the observation there (as robosuite tasks do)."""
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (2,) or not np.all(np.isfinite(s)):
            raise ValueError(f"graph_reach: state must be a finite (x, y) position, got {state!r}")
        if not self.map.is_free(s):
            raise ValueError(f"graph_reach: state {s.tolist()} is inside a wall (outside every corridor)")
        self._pos = s.copy()
        return self._obs()

    def observe(self) -> dict[str, np.ndarray]:
        return self._obs()

    # ------------------------------------------------------------------ helpers
    def _obs(self) -> dict[str, np.ndarray]:
        return {"pos": self._pos.astype(np.float32)}

    def _sample_start(self) -> np.ndarray:
        r = self.config.start_noise
        if r == 0:
            return self.start_xy.copy()
        for _ in range(1000):
            offset = self._rng.uniform(-r, r, size=2)
            if offset @ offset <= r * r and self.map.is_free(self.start_xy + offset):
                return self.start_xy + offset
        return self.start_xy.copy()

    # ------------------------------------------------------------------ pictures
    def render(self, width: int = 256, height: int = 256, goal: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """RGB frame (height, width, 3) uint8 of the map, the goal region, the point and, when
        ``goal`` is given (a policy's subgoal observation), a red ring at ``goal["pos"]``."""
        key = (int(width), int(height))
        if key not in self._mask_cache:  # the map is fixed: rasterise it once per frame size
            centres = self.map.pixel_centres(*key)
            self._mask_cache[key] = (np.where(self.map.is_free(centres)[..., None], _FLOOR, _WALL).astype(np.uint8), centres)
        background, centres = self._mask_cache[key]
        frame = background.copy()
        _, scale = self.map.pixel_frame(*key)

        def disk(xy: np.ndarray, radius: float, colour: np.ndarray, ring: float = 0.0) -> None:
            d = np.linalg.norm(centres - np.asarray(xy, float), axis=-1)
            r = max(radius, 1.5 * scale)
            sel = d <= r if ring <= 0 else np.abs(d - r) <= max(ring, 0.75 * scale)
            frame[sel] = colour

        disk(self.start_xy, 0.12, _START)
        disk(self.goal_xy, self.config.goal_radius, _GOAL)
        disk(self._pos, 0.15, _POINT)
        if goal is not None and "pos" in goal:
            g = np.asarray(goal["pos"], float).reshape(-1)[:2]
            disk(g, 0.22, _SUBGOAL, ring=0.05)
            disk(g, 0.05, _SUBGOAL)
        return frame

    def plot_rollouts(self, episodes: list[dict[str, np.ndarray]], successes: list[bool], path: str, title: str = "") -> None:
        """PNG of the corridor map with each rollout's path, green when it succeeded, red when not."""
        if len(episodes) != len(successes):
            raise ValueError(f"graph_reach.plot_rollouts: {len(episodes)} episodes but {len(successes)} success flags")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        lo, hi = self.map.bounds(0.3)
        mask = self.map.free_mask(400, 400)
        top_left, scale = self.map.pixel_frame(400, 400)
        extent = (top_left[0], top_left[0] + 400 * scale, top_left[1] - 400 * scale, top_left[1])
        fig, ax = plt.subplots(figsize=(6, 6))
        try:
            ax.imshow(mask, cmap="gray", vmin=-0.6, vmax=1.2, extent=extent, interpolation="nearest")
            for name, xy in self.map.nodes.items():
                ax.annotate(name, xy, fontsize=7, color="0.35", ha="center", va="center")
            for ep, ok in zip(episodes, successes):
                if "pos" not in ep:
                    raise ValueError("graph_reach.plot_rollouts: each episode needs a 'pos' array (T+1, 2)")
                p = np.asarray(ep["pos"], float).reshape(-1, 2)
                ax.plot(p[:, 0], p[:, 1], "-", lw=1.2, alpha=0.6, color="tab:green" if ok else "tab:red")
                ax.plot(p[-1, 0], p[-1, 1], "o", ms=3, color="tab:green" if ok else "tab:red")
            ax.plot(*self.start_xy, "s", ms=9, color="tab:blue", label="start")
            ax.add_patch(plt.Circle(tuple(self.goal_xy), self.config.goal_radius, color="gold", alpha=0.8, label="goal"))
            n_ok = int(sum(bool(s) for s in successes))
            ax.set_title(f"{title + ': ' if title else ''}{n_ok}/{len(successes)} succeeded", fontsize=10)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_aspect("equal")
            ax.legend(loc="lower left", fontsize=7)
            fig.savefig(path, dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)


@register_env("graph_reach", config=GraphReachConfig)
def make_graph_reach(**settings: Any) -> GraphReachEnv:
    """Factory used by ``make_env("graph_reach", **overrides)``: settings come from envs/graph_reach.yaml."""
    cfg = from_dict(GraphReachConfig, settings, source=_SOURCE)
    return GraphReachEnv(cfg)


@register_operator("graph_reach")
def make_graph_reach_operator(env: GraphReachEnv, kind: str, rng: np.random.Generator):
    from robolearn.tasks.graph_reach_operators import make_operator

    return make_operator(env, kind, rng)
