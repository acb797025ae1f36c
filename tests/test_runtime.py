"""The runtime: one seeding rule, one episode loop, one worker pool."""
from __future__ import annotations

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.errors import error_line
from robolearn.runtime.rollout import rollout
from robolearn.runtime.seeds import demonstration_seeds, episode_seed, evaluation_seeds
from robolearn.runtime.workers import run_jobs
from robolearn.tasks.base import make_env


def test_evaluation_seeds_are_the_published_rule_for_reset_and_policy_alike():
    assert [episode_seed(0, i) for i in range(3)] == [0, 1, 2]
    assert episode_seed(2, 5) == 2 * 1_000_003 + 5
    s = evaluation_seeds(2, 5)
    assert s.reset == s.actor == episode_seed(2, 5) and s.index == 5


def test_demonstration_seeds_depend_on_base_and_index_only():
    a, b = demonstration_seeds(3, 7), demonstration_seeds(3, 7)
    assert a.reset == b.reset
    assert np.random.default_rng(a.actor).random() == np.random.default_rng(b.actor).random()
    assert demonstration_seeds(3, 8).reset != a.reset and demonstration_seeds(4, 7).reset != a.reset
    # Demonstrations and evaluation episodes of the same --seed are different draws.
    assert a.reset != evaluation_seeds(3, 7).reset


class Toward:
    """A deterministic actor that heads for the origin, with noise from its episode seed."""

    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        return np.clip(-3.0 * obs["pos"] + 0.1 * self.rng.standard_normal(2), -5, 5)  # beyond the bounds on purpose


def test_rollout_clips_to_the_bounds_keeps_t_plus_one_observations_and_is_reproducible():
    env = make_env("graph_reach", horizon=20)
    a = rollout(env, Toward(), 11, record_states=True)
    b = rollout(env, Toward(), 11, record_states=True)
    assert 1 <= a.length <= 20
    assert a.obs["pos"].shape == (a.length + 1, 2) and a.states.shape == (a.length + 1, 2)
    assert a.actions.dtype == np.float32 and np.abs(a.actions).max() <= 1.0
    assert a.dones[-1] and not a.dones[:-1].any()
    assert a.total_return == pytest.approx(float(a.rewards.sum()))
    np.testing.assert_array_equal(a.obs["pos"], b.obs["pos"])
    np.testing.assert_array_equal(a.actions, b.actions)


def test_rollout_stops_at_the_first_success_only_when_asked():
    class Success:
        def __init__(self, env):
            self.env = env

        def reset(self, seed=None):
            return self.env.reset(seed=seed)

        def __getattr__(self, name):
            return getattr(self.env, name)

        def step(self, action):
            r = self.env.step(action)
            r.success, r.done = True, self.env._t >= 5  # succeeds at once, done later
            return r

    env = Success(make_env("graph_reach", horizon=20))
    assert rollout(env, Toward(), 0).length == 1
    assert rollout(env, Toward(), 0, stop_on_success=False).length == 5


def _init_squares(offset: int) -> dict:
    if offset < 0:
        raise ConfigError("offset", "offset", f"expected a non-negative offset, got {offset}")
    return {"offset": offset}


def _square(state: dict, job: int) -> tuple[int, int]:
    if job == 13:
        raise ConfigError("job", "job", "13 is refused")
    return job, job * job + state["offset"]


@pytest.mark.parametrize("workers", [1, 2])
def test_run_jobs_keeps_job_order_whatever_the_number_of_workers(workers):
    out = list(run_jobs(range(9), workers, _init_squares, _square, init_args=(1,), chunksize=2))
    assert out == [(i, i * i + 1) for i in range(9)]


@pytest.mark.parametrize("workers", [1, 2])
def test_run_jobs_raises_a_workers_expected_error_in_the_parent(workers, capfd):
    """From a job or from a worker's start, the error arrives as one the CLI prints in one line as an
    expected error (not "internal error"), and no worker prints a traceback."""
    for jobs, offset, message in (([12, 13, 14], 0, "13 is refused"), ([1], -1, "non-negative offset")):
        with pytest.raises(Exception, match=message) as caught:
            list(run_jobs(jobs, workers, _init_squares, _square, init_args=(offset,)))
        line, code = error_line("x", caught.value)
        assert line.startswith("robolearn x: error:") and message in line and "\n" not in line and code == 2
    assert "Traceback" not in capfd.readouterr().err


def test_eval_gives_the_same_episodes_with_one_or_two_workers_and_a_pipelined_planner_runs_in_rollout(tmp_path):
    """The worker pool and the seeding rule make eval's per-episode results independent of the
    number of workers; and a pipelined planner is an actor like any other in the rollout."""
    import torch

    from robolearn.algos.base import algo_class
    from robolearn.models.encoders import ObsKey, unit_normalizers
    from robolearn.evaluate import evaluate_run
    from robolearn.hal.pipelined import PipelinedReplanPolicy
    from robolearn.policy import load_policy, save_checkpoint

    torch.manual_seed(0)
    algo = algo_class("hbc").build({"subgoal_horizon": 5, "goal_vae_hidden": [16], "low_hidden": 16, "low_layers": 1,
                                    "replan_every": 2}, {"pos": ObsKey((2,))}, unit_normalizers({"pos": ObsKey((2,))}), 2)
    save_checkpoint(tmp_path / "ckpt", algo, step=0,
                    meta={"task": "graph_reach"})
    runs = [evaluate_run(tmp_path / "ckpt", episodes=3, seed=1, workers=w, horizon=15, progress=False) for w in (1, 2)]
    one, two = ([(e["seed"], e["success"], e["length"], e["return"]) for e in r["per_episode"]] for r in runs)
    assert one == two and [s for s, *_ in one] == [episode_seed(1, i) for i in range(3)]

    policy = load_policy(tmp_path / "ckpt")
    pipe = PipelinedReplanPolicy(policy, hz=10, lead=1, adaptive=False)
    r = rollout(make_env("graph_reach", horizon=15), pipe, episode_seed(1, 0))
    pipe.close()
    assert pipe.adopted_at == list(range(0, r.length, 2))
