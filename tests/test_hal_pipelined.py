"""PipelinedReplanPolicy: plans run in the background on the policy's own schedule
(``needs_plan``); the plan adopted at each re-plan step is the one started `lead` steps earlier
from that step's observation, and the low level's reset still happens."""
import threading

import numpy as np
import pytest
import torch

from robolearn.algos.base import algo_class
from robolearn.models.encoders import ObsKey, unit_normalizers
from robolearn.hal.pipelined import PipelinedReplanPolicy
from robolearn.policy import Policy


class FakePlanner:
    """The planning interface on observation dicts: a plan is the observation + 100, every T steps."""

    plans = True
    meta: dict = {}

    def __init__(self, T=4):
        self.T, self.steps, self.goal = T, 0, None
        self.plans_on, self.plan_threads, self.adopted_at = [], [], []

    def reset(self, seed=0):
        self.steps, self.goal = 0, None

    def needs_plan(self, step):
        return step % self.T == 0

    def plan(self, obs):
        self.plans_on.append(float(obs["o"][0]))
        self.plan_threads.append(threading.current_thread().name)
        return obs["o"] + 100.0

    def adopt(self, plan):
        self.goal = plan
        self.adopted_at.append(self.steps)

    def act_on_plan(self, obs):
        self.steps += 1
        return self.goal

    @property
    def current_goal(self):
        return self.goal


def test_goal_planned_lead_steps_early_from_that_observation():
    pol = FakePlanner()
    pipe = PipelinedReplanPolicy(pol, hz=20, lead=2, adaptive=False)  # no real time passes between steps here
    pipe.reset()
    pipe.prime({"o": np.array([0.0])})  # first plan before the clock starts
    goals = [float(pipe.act({"o": np.array([float(t)])})[0]) for t in range(12)]
    pipe.close()
    # T = 4: re-plans at steps 0, 4, 8; plans for 4 and 8 come from the observations at 2 and 6.
    assert goals[0:4] == [100.0] * 4
    assert goals[4:8] == [102.0] * 4
    assert goals[8:12] == [106.0] * 4
    assert pol.plans_on[:3] == [0.0, 2.0, 6.0]
    assert pol.plans_on[3:] in ([], [10.0])  # the plan for step 12 was started (close() may cancel it)
    assert all(name.startswith("replan") for name in pol.plan_threads[1:])  # in the background
    assert pol.adopted_at == pipe.adopted_at == [0, 4, 8]


def test_lead_measured_from_first_plan_and_unsupported_policy_passes_through():
    pol = FakePlanner()
    pipe = PipelinedReplanPolicy(pol, hz=20)
    pipe.prime({"o": np.array([0.0])})
    assert 1 <= pipe.lead <= 3  # capped at T - 1
    assert PipelinedReplanPolicy(FakePlanner(), hz=20, lead=9).lead == 3
    pipe.close()

    class Plain:
        meta = {}

        def reset(self, seed=0):
            pass

        def act(self, obs):
            return np.ones(7, np.float32)

    plain = PipelinedReplanPolicy(Plain(), hz=20)
    assert not plain.supported
    plain.prime({})
    assert plain.act({})[0] == 1.0


def tiny_policy(name: str, replan_every: int | None) -> Policy:
    torch.manual_seed(0)
    cfg = {"subgoal_horizon": 5, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1, "replan_every": replan_every}
    if name == "iris":
        cfg.update(num_goal_samples=4, num_value_action_samples=3, value={"critic_hidden": [16], "action_vae_hidden": [16]})
    spec = {"o": ObsKey((3,))}
    algo = algo_class(name).build(cfg, spec, unit_normalizers(spec), action_dim=2)
    return Policy(algo, {})


def adoptions(policy: Policy) -> list[int]:
    """Record the step of every plan the policy adopts."""
    seen: list[int] = []
    adopt = policy.algo.adopt

    def recorded(plan):
        seen.append(policy.algo.steps)
        adopt(plan)

    policy.algo.adopt = recorded
    return seen


@pytest.mark.parametrize("name", ["hbc", "iris"])
@pytest.mark.parametrize("replan_every, lead", [(None, 2), (2, 1), (3, 2), (1, 0)])
def test_pipelined_schedule_is_the_synchronous_one(name, replan_every, lead):
    """The pipelined planner adopts plans at exactly the steps ``act`` plans at, with
    ``replan_every`` set or not, and adopts every plan it starts. With one observation throughout
    (so a plan from `lead` steps earlier is the plan from now) the actions are the synchronous
    ones bit for bit: the same plans, drawn in the same order from the same seed."""
    obs = {"o": np.array([0.2, -0.1, 0.4], np.float32)}
    sync = tiny_policy(name, replan_every)
    sync_steps = adoptions(sync)
    sync.reset(seed=5)
    expected = [sync.act(obs) for _ in range(13)]

    piped = tiny_policy(name, replan_every)
    piped_steps = adoptions(piped)
    pipe = PipelinedReplanPolicy(piped, hz=20, lead=lead, adaptive=False)
    pipe.reset(seed=5)
    pipe.prime(obs)
    got = [pipe.act(obs) for _ in range(13)]
    started = len(pipe.replan_ms)
    pipe.close()
    assert piped_steps == sync_steps == pipe.adopted_at == [t for t in range(13) if sync.needs_plan(t)]
    assert started - len(piped_steps) in (0, 1)  # at most the plan for step 13, started but not yet due
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


class FakeChunker:
    """An action-chunking policy (Diffusion Policy's shape): each plan is the next K actions,
    predicted from the observation; the cheap step plays them out one by one."""

    plans = True
    meta: dict = {}
    K = 3

    def reset(self, seed=0):
        self.steps, self.chunk = 0, None

    def needs_plan(self, step):
        return step % self.K == 0

    def plan(self, obs):
        return [obs["o"] * 10 + j for j in range(self.K)]

    def adopt(self, plan):
        self.chunk = plan

    def act_on_plan(self, obs):
        a = self.chunk[self.steps % self.K]
        self.steps += 1
        return a


def test_the_same_runner_pipelines_action_chunks():
    pol = FakeChunker()
    pipe = PipelinedReplanPolicy(pol, hz=20, lead=1, adaptive=False)
    pipe.reset()
    pipe.prime({"o": np.array([0.0])})
    played = [float(pipe.act({"o": np.array([float(t)])})[0]) for t in range(9)]
    pipe.close()
    # Chunks adopted at 0, 3, 6, each predicted one step early (from the observations at 2 and 5).
    assert pipe.adopted_at == [0, 3, 6]
    assert played == [0.0, 1.0, 2.0, 20.0, 21.0, 22.0, 50.0, 51.0, 52.0]
