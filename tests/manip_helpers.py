"""Shared by the MuJoCo task tests: roll a scripted operator out and keep every observation."""
from __future__ import annotations

import numpy as np


def rollout(env, op, seed: int, max_steps: int | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """Returns (obs arrays with T+1 rows, success)."""
    obs = env.reset(seed=seed)
    op.reset()
    rows = {k: [v] for k, v in obs.items()}
    res = None
    for _ in range(max_steps or env.horizon):
        res = env.step(op.act(obs))
        obs = res.obs
        for k, v in obs.items():
            rows[k].append(v)
        if res.done:
            break
    return {k: np.stack(v) for k, v in rows.items()}, bool(res is not None and res.success)
