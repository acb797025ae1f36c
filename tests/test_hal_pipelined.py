"""PipelinedReplanPolicy: the subgoal installed at each re-plan step is the one planned
`lead` steps earlier from that step's observation, and the LSTM-style reset still happens."""
import threading

import numpy as np

from robolearn.hal.pipelined import PipelinedReplanPolicy


class FakeAlgo:
    """HBC's acting interface: re-plan with choose_goal every T steps, then act toward the goal."""

    def __init__(self, T=4):
        self.cfg = type("Cfg", (), {"subgoal_horizon": T})()
        self._t, self._goal, self.plans_on = 0, None, []
        self.plan_threads = []

    def choose_goal(self, x):
        self.plans_on.append(float(x[0]))
        self.plan_threads.append(threading.current_thread().name)
        return x + 100.0

    def act(self, x):
        if self._t % self.cfg.subgoal_horizon == 0:
            self._goal = self.choose_goal(x)
        self._t += 1
        return self._goal


class FakePolicy:
    def __init__(self):
        self.algo = FakeAlgo()
        self.obs_keys = ["o"]
        self.normalizer = lambda x: x
        self.meta = {}

    def reset(self):
        self.algo._t = 0

    def act(self, obs):
        import torch

        return self.algo.act(torch.tensor(obs["o"], dtype=torch.float32)).numpy()

    @property
    def current_goal(self):
        return self.algo._goal


def test_goal_planned_lead_steps_early_from_that_observation():
    pol = FakePolicy()
    pipe = PipelinedReplanPolicy(pol, hz=20, lead=2, adaptive=False)  # no real time passes between steps here
    pipe.reset()
    pipe.prime({"o": np.array([0.0])})  # first plan before the clock starts
    goals = [float(pipe.act({"o": np.array([float(t)])})[0]) for t in range(12)]
    pipe.close()
    # T = 4: re-plans at steps 0, 4, 8; plans for 4 and 8 come from the observations at 2 and 6.
    assert goals[0:4] == [100.0] * 4
    assert goals[4:8] == [102.0] * 4
    assert goals[8:12] == [106.0] * 4
    assert pol.algo.plans_on[:3] == [0.0, 2.0, 6.0]
    assert pol.algo.plans_on[3:] in ([], [10.0])  # the plan for step 12 was started (close() may cancel it)
    assert all(name.startswith("replan") for name in pol.algo.plan_threads[1:])  # in the background
    assert "choose_goal" not in vars(pol.algo)  # the one-call override is removed again


def test_lead_measured_from_first_plan_and_unsupported_policy_passes_through():
    pol = FakePolicy()
    pipe = PipelinedReplanPolicy(pol, hz=20)
    pipe.replan_ms.append(0.0)
    pipe.prime({"o": np.array([0.0])})
    assert 1 <= pipe.lead <= 3  # capped at T - 1
    pipe.close()

    class Plain:
        meta = {}

        def reset(self):
            pass

        def act(self, obs):
            return np.ones(7, np.float32)

    plain = PipelinedReplanPolicy(Plain(), hz=20)
    assert not plain.supported
    plain.prime({})
    assert plain.act({})[0] == 1.0
