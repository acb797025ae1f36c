"""PipelinedReplanPolicy: hides a hierarchical policy's re-planning time from the control loop.

Why: IRIS re-plans every T steps by sampling 100 subgoals and scoring each with the max
of Q over 100 sampled actions (10,000 critic and action-decoder passes). On one CPU core
that takes ~100-300 ms, several 50 ms control periods, so a synchronous re-plan makes
the loop overrun at every re-plan while the arm waits. The other T-1 steps need ~2 ms.

This wrapper starts the next re-plan ``lead`` steps early, in a background thread at
normal (non real-time) priority, from the observation of that step, and installs the
chosen subgoal exactly when the policy would have re-planned (the low level's LSTM state
resets with it, as in IRIS). The control thread keeps its schedule; the re-plan uses the
idle time of the ``lead`` periods before it.

The one change of meaning, stated plainly: the subgoal is chosen from an observation
``lead`` steps (``lead / hz`` seconds) older than the synchronous policy would use. With
T = 10 the goal is still ahead of the robot (it predicts the state T steps after the
planning observation). ``lead`` is ``margin`` x the first (synchronous) plan's time in
periods, or given; when a plan still arrives late, ``lead`` grows by one step (up to T - 1).

Works with policies whose algorithm has HBC/IRIS's acting interface (``choose_goal(x)``,
``cfg.subgoal_horizon``, ``_t``); anything else is passed through unchanged.
"""
from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _normal_priority() -> None:
    """Threads inherit SCHED_FIFO from a real-time creator; planning must not preempt the loop."""
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


class PipelinedReplanPolicy:
    def __init__(self, policy: Any, hz: float, lead: int | None = None, margin: float = 2.0, adaptive: bool = True):
        self.policy = policy
        self.algo = getattr(policy, "algo", None)
        self.supported = all(hasattr(self.algo, n) for n in ("choose_goal", "_t", "cfg")) and hasattr(
            getattr(self.algo, "cfg", None), "subgoal_horizon")
        self.meta = getattr(policy, "meta", {})
        self.hz = float(hz)
        self.margin = float(margin)
        self.adaptive = adaptive
        self.lead = lead
        self.T = int(self.algo.cfg.subgoal_horizon) if self.supported else 0
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self._pending: Any = None
        self.replan_ms: list[float] = []
        self.late_waits_ms: list[float] = []

    # -- CommandSource ----------------------------------------------------------------------
    def reset(self) -> None:
        self._cancel()
        self._pending = None
        self.policy.reset()

    @property
    def current_goal(self):
        return getattr(self.policy, "current_goal", None)

    def _x(self, obs):
        import torch
        from robolearn.data.dataset import flatten_obs

        p = self.policy
        return torch.from_numpy(p.normalizer(flatten_obs(obs, p.obs_keys)).astype(np.float32))

    def _plan(self, x):
        t = time.perf_counter()
        g = self.algo.choose_goal(x)
        self.replan_ms.append((time.perf_counter() - t) * 1e3)
        return g

    def prime(self, obs) -> None:
        """Plan the first subgoal before the loop's clock starts (the arm is holding still)."""
        if not self.supported:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replan", initializer=_normal_priority)
        import torch

        with torch.no_grad():
            self._pending = self._plan(self._x(obs))
        if self.lead is None:
            period_ms = 1e3 / self.hz
            self.lead = min(max(1, math.ceil(self.margin * self.replan_ms[-1] / period_ms)), self.T - 1)
            log.info("pipelined re-planning: plan took %.1f ms; starting each re-plan %d step(s) early", self.replan_ms[-1], self.lead)

    def act(self, obs):
        if not self.supported:
            return self.policy.act(obs)
        import torch

        algo, T = self.algo, self.T
        t = int(algo._t)
        goal = None
        if t % T == 0:
            if self._pending is not None:
                goal, self._pending = self._pending, None
            elif self._future is not None:
                w = time.perf_counter()
                late = not self._future.done()
                goal = self._future.result()
                self.late_waits_ms.append((time.perf_counter() - w) * 1e3)
                self._future = None
                if late and self.adaptive and self.lead < T - 1:
                    self.lead += 1  # the plan arrived late: start the next one a step earlier
                    log.info("re-plan arrived late; now starting re-plans %d steps early", self.lead)
        if goal is not None:
            algo.choose_goal = lambda _x, g=goal: g  # instance attribute: this one call uses the pre-planned goal
            try:
                a = self.policy.act(obs)
            finally:
                del algo.choose_goal
        else:
            a = self.policy.act(obs)
        # Start the plan for the next re-plan step (t_next = next multiple of T) `lead` steps before it.
        nxt = (t // T + 1) * T
        if self.lead and nxt - t == self.lead and self._future is None and self._pool is not None:
            with torch.no_grad():
                x = self._x(obs)
            self._future = self._pool.submit(self._plan_no_grad, x)
        return a

    def _plan_no_grad(self, x):
        import torch

        with torch.no_grad():
            return self._plan(x)

    def _cancel(self) -> None:
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=5)
            except Exception:
                pass
            self._future = None

    def close(self) -> None:
        self._cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
