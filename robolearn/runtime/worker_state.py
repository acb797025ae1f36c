"""What every worker, a local process or a Ray actor, does with the state its ``init`` built:
it starts with one torch thread and closes what it built. One module, so the two kinds of worker
(``robolearn.runtime.workers``, ``robolearn.runtime.ray_pool``) behave the same way.
"""
from __future__ import annotations

import os
import sys
from typing import Any


def quiet_torch_threads() -> None:
    """One intra-op thread per worker: W workers with a thread per core each oversubscribe the
    machine. A worker that has not imported torch gets ``OMP_NUM_THREADS=1``, which torch reads
    when its ``init`` imports it, so a job that never needs torch (collecting with a scripted
    operator) does not pay for importing it."""
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = "1"
        return
    torch.set_num_threads(1)


def close_state(state: Any) -> None:
    """Close what ``init`` built: the state itself, or each value of a dict state, when it has ``close``."""
    parts = state.values() if isinstance(state, dict) else (state,)
    for part in parts:
        close = getattr(part, "close", None)
        if callable(close):
            close()
