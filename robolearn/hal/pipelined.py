"""PipelinedReplanPolicy: hides a planning policy's thinking time from the control loop.

Why: IRIS re-plans every T steps by sampling 100 subgoals and scoring each with the max
of Q over 100 sampled actions (10,000 critic and action-decoder passes). On one CPU core
that takes ~100-300 ms, several 50 ms control periods, so a synchronous re-plan makes
the loop overrun at every re-plan while the arm waits. The other steps need ~2 ms.

The policy's planning interface (``robolearn.algos.base.Algo``: ``needs_plan(step)``,
``plan(obs)``, ``adopt(plan)``, ``act_on_plan(obs)``) says when it thinks and what it acts
on; its synchronous ``act`` is plan-then-act at every step ``needs_plan`` names. This wrapper
keeps that schedule and only moves the thinking: each plan starts ``lead`` steps before the
step that needs it, in a background thread at normal (non real-time) priority, from the
observation of that earlier step, and is adopted exactly at the step the synchronous policy
would have planned at (the low level's LSTM state resets with it, as in IRIS). Every plan
started is adopted; the control thread keeps its schedule; planning uses the idle time of
the ``lead`` periods before it.

The one change of meaning, stated plainly: a plan is made from an observation ``lead`` steps
(``lead / hz`` seconds) older than the synchronous policy would use. With T = 10 the goal is
still ahead of the robot (it predicts the state T steps after the planning observation).
``lead`` is ``margin`` x the first (synchronous) plan's time in periods, or given, and at most
one less than the steps between two plans; when a plan still arrives late, ``lead`` grows by
one step (up to that bound).

A policy without the planning interface (``plans`` false) is passed through unchanged.
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

#: How far ahead the schedule is searched for the steps between two plans.
_SCHEDULE_SCAN = 10_000


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


def plan_gap(policy: Any) -> int:
    """The fewest steps from the first plan (step 0) to the next one: a plan started earlier than
    that would overtake the one before it. 0 when the schedule plans only once."""
    return next((s for s in range(1, _SCHEDULE_SCAN) if policy.needs_plan(s)), 0)


def has_planning_interface(policy: Any) -> bool:
    return bool(getattr(policy, "plans", False)) and all(
        callable(getattr(policy, n, None)) for n in ("needs_plan", "plan", "adopt", "act_on_plan"))


class PipelinedReplanPolicy:
    def __init__(self, policy: Any, hz: float, lead: int | None = None, margin: float = 2.0, adaptive: bool = True):
        self.policy = policy
        self.supported = has_planning_interface(policy)
        self.meta = getattr(policy, "meta", {})
        self.hz = float(hz)
        self.margin = float(margin)
        self.adaptive = adaptive
        self.max_lead = max(plan_gap(policy) - 1, 0) if self.supported else 0
        self.lead = None if lead is None else min(int(lead), self.max_lead)
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self._pending: Any = None
        self._step = 0
        self.replan_ms: list[float] = []
        self.late_waits_ms: list[float] = []
        #: The steps at which a plan was adopted, this episode.
        self.adopted_at: list[int] = []

    # -- the actor interface ------------------------------------------------------------------
    def reset(self, seed: int = 0) -> None:
        self._cancel()
        self._pending = None
        self._step = 0
        self.adopted_at = []
        self.policy.reset(seed)

    @property
    def current_goal(self):
        return getattr(self.policy, "current_goal", None)

    def _plan(self, obs):
        t = time.perf_counter()
        plan = self.policy.plan(obs)
        self.replan_ms.append((time.perf_counter() - t) * 1e3)
        return plan

    def prime(self, obs) -> None:
        """Make the first plan before the loop's clock starts (the arm is holding still), and
        size ``lead`` from how long it took."""
        if not self.supported:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replan", initializer=_normal_priority)
        if self.policy.needs_plan(self._step):
            self._pending = self._plan(obs)
        if self.lead is None:
            period_ms = 1e3 / self.hz
            first_ms = self.replan_ms[-1] if self.replan_ms else 0.0
            self.lead = min(max(1, math.ceil(self.margin * first_ms / period_ms)), self.max_lead)
            log.info("pipelined re-planning: plan took %.1f ms; starting each re-plan %d step(s) early", first_ms, self.lead)

    def _next_plan(self, obs):
        """The plan to adopt now: the primed one, the background one (waiting for it if late),
        or, when none was started, one made here and now."""
        if self._pending is not None:
            plan, self._pending = self._pending, None
            return plan
        if self._future is None:
            return self._plan(obs)
        w = time.perf_counter()
        late = not self._future.done()
        plan = self._future.result()
        self.late_waits_ms.append((time.perf_counter() - w) * 1e3)
        self._future = None
        if late and self.adaptive and self.lead < self.max_lead:
            self.lead += 1  # the plan arrived late: start the next one a step earlier
            log.info("re-plan arrived late; now starting re-plans %d steps early", self.lead)
        return plan

    def act(self, obs):
        if not self.supported:
            return self.policy.act(obs)
        t = self._step
        if self.policy.needs_plan(t):
            self.policy.adopt(self._next_plan(obs))
            self.adopted_at.append(t)
        action = self.policy.act_on_plan(obs)
        self._step = t + 1
        if self.lead and self._future is None and self._pool is not None and self.policy.needs_plan(t + self.lead):
            snapshot = {k: np.array(v, copy=True) for k, v in obs.items()}
            self._future = self._pool.submit(self._plan, snapshot)
        return action

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
