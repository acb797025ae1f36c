"""What the protocol reports per demo set and algorithm, from its cells' result files.

Why these figures: one final checkpoint on one draw rewards whoever happened to stop at a good
step on a lucky draw. The mean over draws x seeds of the final checkpoint, the mean of the last K
checkpoints (Diffusion Policy's protocol: how much the figure depends on where training stops) and
the worst draw-seed pair (what a user with one run may get) together leave no such choice.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def summarise(cells: list[dict[str, Any]], draws: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (demo set, algorithm), in the order the cells come."""
    rows = []
    for demos, algo in dict.fromkeys((c["demos"], c["algo"]) for c in cells):
        cs = [c for c in cells if c["demos"] == demos and c["algo"] == algo]
        final = np.array([c["final"]["success_rate"] for c in cs])
        last_k = np.array([c["last_k_mean"] for c in cs])
        worst = min(cs, key=lambda c: (c["final"]["success_rate"], c["last_k_mean"]))
        worst_k = min(cs, key=lambda c: c["last_k_mean"])
        lengths = [c["final"]["successful_mean_length"] for c in cs if c["final"]["successful_mean_length"] is not None]
        demo_stats = draws.get(demos, [])
        medians = [d["median_length"] for d in demo_stats if d.get("median_length") is not None]
        walls = [c["train_wall_s"] for c in cs if c.get("train_wall_s") is not None]
        rows.append({
            "demos": demos, "algo": algo, "cells": len(cs),
            "draws": sorted({c["draw"] for c in cs}), "seeds": sorted({c["seed"] for c in cs}),
            "final_mean": float(final.mean()), "final_std": float(final.std()),
            "last_k_mean": float(last_k.mean()), "last_k_std": float(last_k.std()),
            "last_k": max(len(c["checkpoints"]) for c in cs),
            "worst": {"success_rate": worst["final"]["success_rate"], "draw": worst["draw"], "seed": worst["seed"]},
            "worst_last_k": {"success_rate": worst_k["last_k_mean"], "draw": worst_k["draw"], "seed": worst_k["seed"]},
            "per_cell": [{"draw": c["draw"], "seed": c["seed"], "final": c["final"]["success_rate"],
                          "last_k_mean": c["last_k_mean"]} for c in cs],
            "demonstrator_success": float(np.mean([d["success_rate"] for d in demo_stats])) if demo_stats else None,
            "successful_length": float(np.mean(lengths)) if lengths else None,
            "demo_median_length": float(np.median(medians)) if medians else None,
            "train_wall_s": float(np.mean(walls)) if walls else None,
        })
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    k = max((r["last_k"] for r in rows), default=5)
    lines = [
        f"| demos | algo | final % (mean ± std) | last-{k} mean % | worst pair % (draw, seed) | demonstrator % "
        "| successful length (demo median) | train s | cells |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        w = r["worst"]
        length = "-" if r["successful_length"] is None else f"{r['successful_length']:.1f}"
        median = "-" if r["demo_median_length"] is None else f"{r['demo_median_length']:.0f}"
        wall = "-" if r["train_wall_s"] is None else f"{r['train_wall_s']:.0f}"
        lines.append(
            f"| {r['demos']} | {r['algo']} | {_pct(r['final_mean'])} ± {_pct(r['final_std'])} | {_pct(r['last_k_mean'])} "
            f"| {_pct(w['success_rate'])} ({w['draw']}, {w['seed']}) | {_pct(r['demonstrator_success'])} "
            f"| {length} ({median}) | {wall} | {r['cells']} |")
    return "\n".join(lines)
