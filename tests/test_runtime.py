"""The runtime: one seeding rule, one episode loop, one worker pool."""
from __future__ import annotations

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.errors import error_line
from robolearn.runtime.rollout import rollout
from robolearn.runtime.seeds import (DEMONSTRATION_STREAM, EVALUATION_STREAM, demonstration_seeds, episode_seeds,
                                     evaluation_seeds)
from robolearn.runtime.workers import run_jobs
from robolearn.tasks.base import make_env


def test_one_rule_seeds_every_stream_from_base_stream_and_index_only():
    a, b = episode_seeds(3, EVALUATION_STREAM, 7), episode_seeds(3, EVALUATION_STREAM, 7)
    assert a.reset == b.reset and (a.index, a.stream) == (7, EVALUATION_STREAM)
    assert np.random.default_rng(a.actor).random() == np.random.default_rng(b.actor).random()
    resets = {episode_seeds(base, stream, i).reset for base in (3, 4) for stream in (0, 1) for i in (7, 8)}
    assert len(resets) == 8  # base, stream and index each change the draw
    # collect --seed 3 and eval --seed 3 never replay each other's reset states.
    assert {demonstration_seeds(3, i).reset for i in range(50)}.isdisjoint(evaluation_seeds(3, i).reset for i in range(50))
    # The actor's seed is a draw of its own, not the reset seed again.
    assert a.with_int_actor().actor != a.reset


def test_policies_get_an_int_actor_seed_and_operators_a_seed_sequence():
    ev, demo = evaluation_seeds(2, 5), demonstration_seeds(2, 5)
    assert isinstance(ev.actor, int) and ev.stream == EVALUATION_STREAM and ev.index == 5
    assert isinstance(demo.actor, np.random.SeedSequence) and demo.stream == DEMONSTRATION_STREAM
    assert ev.actor == episode_seeds(2, EVALUATION_STREAM, 5).with_int_actor().actor
    assert ev.with_int_actor() == ev


def test_demonstration_stream_rebuilds_the_recorded_demo_folders():
    """Stream 0 is the rule the recorded demo folders were collected with (the index-th child of
    ``SeedSequence(seed)``), so a folder's meta seed still rebuilds its episodes."""
    for base, i in ((0, 0), (3, 7), (2**33, 5)):
        env_ss, actor_ss = np.random.SeedSequence(base).spawn(i + 1)[i].spawn(2)
        s = demonstration_seeds(base, i)
        assert s.reset == int(env_ss.generate_state(1, np.uint32)[0])
        assert np.random.default_rng(s.actor).random() == np.random.default_rng(actor_ss).random()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_a_seed_that_is_not_a_non_negative_integer_is_refused_in_one_line(bad):
    with pytest.raises(ConfigError, match="--seed: field 'seed': expected a non-negative integer"):
        evaluation_seeds(bad, 0)


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
    assert one == two and [s for s, *_ in one] == [evaluation_seeds(1, i).reset for i in range(3)]

    policy = load_policy(tmp_path / "ckpt")
    pipe = PipelinedReplanPolicy(policy, hz=10, lead=1, adaptive=False)
    r = rollout(make_env("graph_reach", horizon=15), pipe, evaluation_seeds(1, 0))
    pipe.close()
    assert pipe.adopted_at == list(range(0, r.length, 2))


class Counter:
    """A plant whose state is a step counter; ends (done) at ``done_at`` and succeeds at ``success_at``."""

    timestamp = None

    def __init__(self, done_at=None, success_at=None):
        self.t, self.done_at, self.success_at, self.sent = 0, done_at, success_at, []

    def begin(self):
        self.t = 0
        return {"t": np.array([0.0])}

    def observe(self):
        return {"t": np.array([float(self.t)])}

    def state(self):
        return np.array([self.t])

    def send(self, action):
        from robolearn.runtime.episode import Sent

        self.sent.append(action)
        self.t += 1
        return Sent(applied=np.asarray(action), reward=1.0, done=self.t == self.done_at, success=self.t == self.success_at)


class Ticks:
    def __init__(self):
        self.starts, self.ticks = 0, 0

    def start(self):
        self.starts += 1

    def tick(self):
        self.ticks += 1


class Primed:
    def __init__(self):
        self.log = []

    def reset(self, seed=None):
        self.log.append(("reset", seed))

    def prime(self, obs):
        self.log.append(("prime", float(obs["t"][0])))

    def act(self, obs):
        self.log.append(("act", float(obs["t"][0])))
        return np.array([float(obs["t"][0])])


@pytest.mark.parametrize("kwargs, ended_by, steps", [
    ({"done_at": 3}, "done", 3),
    ({"success_at": 2}, "success", 2),
    ({"success_at": 2, "stop_on_success": False, "max_steps": 4}, "max_steps", 4),
    ({"stop_when": lambda obs: obs["t"][0] >= 5, "max_steps": 9}, "stop_when", 5),
    ({"done_at": 1, "max_steps": 0}, "max_steps", 0),
])
def test_run_episode_applies_the_end_rules_in_order_and_paces_every_step(kwargs, ended_by, steps):
    from robolearn.runtime.episode import run_episode

    plant = Counter(done_at=kwargs.pop("done_at", None), success_at=kwargs.pop("success_at", None))
    actor, pacer, rows = Primed(), Ticks(), []

    class Rows:
        def record(self, obs, action, reward=0.0, done=False, timestamp=None, state=None):
            rows.append((float(obs["t"][0]), float(action[0]), int(state[0]), done))

    end = run_episode(plant, actor, seed=7, pacer=pacer, recorder=Rows(), **kwargs)
    assert (end.ended_by, end.steps, pacer.starts, pacer.ticks) == (ended_by, steps, 1, steps)
    assert actor.log[:2] == [("reset", 7), ("prime", 0.0)]  # reset, then primed, before the first action
    # Row k: the observation the action was chosen from, the command, the state before it.
    assert [r[:3] for r in rows] == [(float(k), float(k), k) for k in range(steps)]
    assert float(end.obs["t"][0]) == steps and end.total_return == steps


def test_run_episode_keeps_its_progress_when_the_actor_raises():
    from robolearn.runtime.episode import EpisodeProgress, run_episode

    class Fails(Primed):
        def act(self, obs):
            if obs["t"][0] == 3:
                raise KeyboardInterrupt
            return super().act(obs)

    progress = EpisodeProgress()
    with pytest.raises(KeyboardInterrupt):
        run_episode(Counter(), Fails(), max_steps=10, progress=progress)
    assert progress.steps == 3 and float(progress.obs["t"][0]) == 3 and progress.ended_by == ""


WORKER_PIDS_SCRIPT = '''
import os, sys, time
from robolearn.runtime.workers import run_jobs

def init():
    return {}

def work(state, job):
    open(os.path.join(sys.argv[1], f"worker{job}.pid"), "w").write(str(os.getpid()))
    time.sleep(120)  # a long job: its worker outlives a killed parent unless it dies with it
    return job

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import long_jobs
    list(run_jobs([0, 1], 2, long_jobs.init, long_jobs.work))
'''


def test_pool_workers_die_when_their_parent_is_killed(tmp_path):
    """A parent killed outright cannot terminate its pool: its workers end with it (Linux
    ``PR_SET_PDEATHSIG``) instead of finishing jobs nobody will read."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    (tmp_path / "long_jobs.py").write_text(WORKER_PIDS_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, str(tmp_path / "long_jobs.py"), str(tmp_path)], env=env)
    pid_files = [tmp_path / f"worker{i}.pid" for i in (0, 1)]
    deadline = time.monotonic() + 60
    while not all(f.exists() and f.read_text() for f in pid_files):
        assert time.monotonic() < deadline and parent.poll() is None, "the workers never started"
        time.sleep(0.1)
    workers = [int(f.read_text()) for f in pid_files]
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie (dead, not yet reaped by init) counts as gone.
        try:
            return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    still = [p for p in workers if alive(p)]
    for p in still:
        os.kill(p, signal.SIGKILL)
    assert not still, f"workers {still} outlived their killed parent"
