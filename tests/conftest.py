"""Shared test helpers: a small Graph Reach demo folder collected through the real command."""
from __future__ import annotations

from pathlib import Path

from robolearn.cli import main


def collect_graph_reach(tmp_path_factory, episodes: int) -> Path:
    """``robolearn collect graph_reach --operator suboptimal --episodes N --seed 0`` into a fresh folder."""
    out = tmp_path_factory.mktemp("data") / "gr"
    assert main(["collect", "graph_reach", "--operator", "suboptimal", "--episodes", str(episodes), "--seed", "0",
                 "--out", str(out), "--no-progress"]) == 0
    return out
