"""The Graph Reach map: a graph of straight corridors, the free space they make, and
motion that stops at walls.

Why a separate module: the geometry (is a point free, where does a motion stop, what
are the routes through the graph) is shared by the environment, the scripted
operators, the renderer and the tests, and is easier to get right on its own.

Free space is the union of capsules: every point within ``half_width`` of some edge
segment. A motion is checked along its whole length, not only at its end, so a step
can never tunnel through a wall between two corridors; when the motion would leave
free space the point stops at the last free point along it (found by sub-stepping,
then bisection), which is what makes an averaged action at a fork "drive into the
wall" instead of sliding round it.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

#: Bisection iterations when a motion hits a wall: 2**-30 of a step, far below float32 obs precision.
_BISECT_ITERS = 30
#: Points are "free" up to this tolerance beyond the corridor edge, so that a point left exactly on the
#: boundary by bisection is never judged to be inside the wall on the next step.
_FREE_EPS = 1e-9


@dataclass
class CorridorMap:
    """Nodes (name -> xy), undirected edges (corridors) and the corridor half-width."""

    nodes: dict[str, np.ndarray]
    edges: list[tuple[str, str]]
    half_width: float
    _a: np.ndarray = field(init=False, repr=False)
    _b: np.ndarray = field(init=False, repr=False)
    _adj: dict[str, list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.nodes = {k: np.asarray(v, dtype=np.float64).reshape(2) for k, v in self.nodes.items()}
        self.edges = [(str(a), str(b)) for a, b in self.edges]
        self._a = np.stack([self.nodes[a] for a, _ in self.edges])
        self._b = np.stack([self.nodes[b] for _, b in self.edges])
        self._adj = {k: [] for k in self.nodes}
        for a, b in self.edges:
            self._adj[a].append(b)
            self._adj[b].append(a)

    # ------------------------------------------------------------------ geometry
    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point (..., 2) to the nearest corridor centre line."""
        p = np.asarray(points, dtype=np.float64)
        flat = p.reshape(-1, 1, 2)
        ab = self._b - self._a  # (E, 2)
        denom = np.maximum((ab * ab).sum(-1), 1e-12)
        t = np.clip(((flat - self._a) * ab).sum(-1) / denom, 0.0, 1.0)  # (N, E)
        closest = self._a + t[..., None] * ab
        d = np.sqrt(((flat - closest) ** 2).sum(-1)).min(axis=1)
        return d.reshape(p.shape[:-1])

    def is_free(self, points: np.ndarray) -> np.ndarray:
        return self.distance(points) <= self.half_width + _FREE_EPS

    def move(self, pos: np.ndarray, delta: np.ndarray, substep: float | None = None) -> tuple[np.ndarray, bool]:
        """Move ``pos`` by ``delta``; stop at the last free point if the motion would leave a corridor.

        Returns (new position, blocked). ``substep`` bounds the length of motion checked at a time;
        it must be thinner than the thinnest wall (default: a quarter of the half-width).
        """
        pos = np.asarray(pos, dtype=np.float64)
        delta = np.asarray(delta, dtype=np.float64)
        length = float(np.linalg.norm(delta))
        if length == 0.0:
            return pos.copy(), False
        substep = substep or self.half_width / 4.0
        n = max(1, int(np.ceil(length / substep)))
        fracs = np.arange(1, n + 1) / n
        free = self.is_free(pos + fracs[:, None] * delta)
        if free.all():
            return pos + delta, False
        k = int(np.argmin(free))  # first blocked sub-step
        lo = 0.0 if k == 0 else fracs[k - 1]
        hi = fracs[k]
        for _ in range(_BISECT_ITERS):
            mid = 0.5 * (lo + hi)
            if self.is_free(pos + mid * delta):
                lo = mid
            else:
                hi = mid
        return pos + lo * delta, True

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        pts = np.stack(list(self.nodes.values()))
        pad = self.half_width + margin
        return pts.min(0) - pad, pts.max(0) + pad

    # ------------------------------------------------------------------ graph
    def neighbours(self, node: str) -> list[str]:
        return list(self._adj[node])

    def edge_length(self, a: str, b: str) -> float:
        return float(np.linalg.norm(self.nodes[a] - self.nodes[b]))

    def path_length(self, path: Sequence[str]) -> float:
        return sum(self.edge_length(a, b) for a, b in zip(path[:-1], path[1:]))

    def shortest_path(self, start: str, goal: str) -> list[str]:
        """Dijkstra over the nodes, with Euclidean edge lengths."""
        dist = {start: 0.0}
        prev: dict[str, str] = {}
        heap = [(0.0, start)]
        done: set[str] = set()
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u == goal:
                break
            for v in self._adj[u]:
                nd = d + self.edge_length(u, v)
                if nd < dist.get(v, np.inf):
                    dist[v], prev[v] = nd, u
                    heapq.heappush(heap, (nd, v))
        if goal not in done:
            raise ValueError(f"goal node {goal!r} is not reachable from {start!r}")
        path = [goal]
        while path[-1] != start:
            path.append(prev[path[-1]])
        return path[::-1]

    def simple_paths(self, start: str, goal: str, limit: int = 1000) -> list[list[str]]:
        """All simple paths start -> goal (at most ``limit``), shortest first."""
        out: list[list[str]] = []
        stack = [(start, [start])]
        while stack and len(out) < limit:
            node, path = stack.pop()
            if node == goal:
                out.append(path)
                continue
            for v in self._adj[node]:
                if v not in path:
                    stack.append((v, path + [v]))
        out.sort(key=lambda p: (self.path_length(p), p))
        return out

    def dead_ends(self, exclude: Sequence[str] = ()) -> list[str]:
        return sorted(k for k, v in self._adj.items() if len(v) == 1 and k not in exclude)

    # ------------------------------------------------------------------ raster
    def pixel_frame(self, width: int, height: int, margin: float = 0.3) -> tuple[np.ndarray, float]:
        """(world xy of the image's top-left corner, world units per pixel), keeping the aspect ratio."""
        lo, hi = self.bounds(margin)
        scale = max((hi[0] - lo[0]) / width, (hi[1] - lo[1]) / height)
        centre = 0.5 * (lo + hi)
        top_left = np.array([centre[0] - 0.5 * width * scale, centre[1] + 0.5 * height * scale])
        return top_left, scale

    def pixel_centres(self, width: int, height: int) -> np.ndarray:
        top_left, scale = self.pixel_frame(width, height)
        xs = top_left[0] + (np.arange(width) + 0.5) * scale
        ys = top_left[1] - (np.arange(height) + 0.5) * scale
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx, gy], axis=-1)

    def free_mask(self, width: int, height: int) -> np.ndarray:
        """(height, width) bool: which pixels lie in a corridor (row 0 is the top of the map)."""
        return self.is_free(self.pixel_centres(width, height))


def build_map(nodes: Mapping[str, Sequence[float]], edges: Sequence[Sequence[str]], half_width: float) -> CorridorMap:
    return CorridorMap(nodes={k: np.asarray(v, float) for k, v in nodes.items()}, edges=[tuple(e) for e in edges], half_width=half_width)
