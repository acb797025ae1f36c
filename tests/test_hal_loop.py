"""ControlLoop and EpisodeRecorder against the NoopArm (no timing thresholds: the machine is shared)."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robolearn.data.format import ActionSpec, DemoFormatError, DemoMeta, DemoReader, DemoWriter
from robolearn.data.recorder import EpisodeRecorder
from robolearn.hal.arm import ArmError
from robolearn.hal.loop import ControlLoop
from robolearn.hal.noop_arm import NoopArm


class Scripted:
    def __init__(self, fail_at=None, exc=KeyboardInterrupt):
        self.n, self.resets, self.fail_at, self.exc = 0, 0, fail_at, exc

    def reset(self):
        self.resets += 1

    def act(self, obs):
        self.n += 1
        if self.fail_at is not None and self.n == self.fail_at:
            raise self.exc()
        return np.array([0.1, 0, 0, 0, 0, 0, 1.0], np.float32)


def recorder_for(tmp_path, arm):
    meta = DemoMeta(task="noop", control_hz=arm.spec.control_hz, obs_spec=arm.spec.obs_spec, action_spec=ActionSpec(7))
    return EpisodeRecorder(DemoWriter(tmp_path / "demos", meta))


def connected(hz=200.0):
    arm = NoopArm(control_hz=hz)
    arm.connect()
    return arm


def test_loop_runs_records_and_stops_arm(tmp_path):
    arm = connected()
    src = Scripted()
    loop = ControlLoop(arm, src, hz=200, recorder=recorder_for(tmp_path, arm))
    stats = loop.run(max_steps=25)
    assert stats.steps == 25 and stats.stopped_by == "max_steps" and src.resets == 1
    assert arm.stop_count == 1 and stats.episode_path
    reader = DemoReader(tmp_path / "demos")
    assert reader.validate() == 1
    ep = reader.load(0)
    assert ep.length == 25 and ep.obs["robot0_eef_pos"].shape == (26, 3)
    assert bool(ep.dones[-1]) and not ep.dones[:-1].any()
    assert np.all(np.diff(ep.timestamps) > 0)
    # The recorded observation is the one the action was chosen from: x grows by 0.005 per step.
    np.testing.assert_allclose(np.diff(ep.obs["robot0_eef_pos"][:, 0]), 0.005, atol=1e-6)
    assert len(stats.to_dict()) > 5 and "jitter" in stats.summary()


def test_stop_when_and_request_stop(tmp_path):
    arm = connected()
    stats = ControlLoop(arm, Scripted(), hz=200).run(stop_when=lambda o: o["robot0_eef_pos"][0] > 0.02)
    assert stats.stopped_by == "stop_when" and stats.steps == 5
    loop = ControlLoop(arm, Scripted(), hz=200, on_step=lambda i, obs, a: i == 6 and loop.request_stop())
    stats = loop.run(max_steps=1000)
    assert stats.stopped_by == "request_stop" and stats.steps == 7


def test_request_stop_from_another_thread(tmp_path):
    arm = connected(hz=100)
    loop = ControlLoop(arm, Scripted(), hz=100, recorder=recorder_for(tmp_path, arm))
    threading.Timer(0.15, loop.request_stop).start()
    stats = loop.run()
    assert stats.stopped_by == "request_stop" and stats.steps > 0
    assert DemoReader(tmp_path / "demos").validate() == 1


def test_ctrl_c_keeps_partial_episode(tmp_path):
    arm = connected()
    stats = ControlLoop(arm, Scripted(fail_at=8), hz=200, recorder=recorder_for(tmp_path, arm)).run(max_steps=100)
    assert stats.stopped_by == "interrupt" and stats.steps == 7 and arm.stop_count == 1
    assert DemoReader(tmp_path / "demos").load(0).length == 7


def test_sigint_stops_a_library_loop_in_a_process_started_with_sigint_ignored():
    """A script that runs ``ControlLoop.run`` itself, started the way a shell starts a background
    job (``cmd &``, SIGINT ignored): SIGINT still stops the arm and ends the run as an interrupt."""
    script = textwrap.dedent("""
        import numpy as np
        from robolearn.hal.loop import ControlLoop
        from robolearn.hal.noop_arm import NoopArm

        class Still:
            def reset(self):
                pass

            def act(self, obs):
                return np.zeros(7, np.float32)

        arm = NoopArm(control_hz=100.0)
        arm.connect()
        print("running", flush=True)
        stats = ControlLoop(arm, Still(), hz=100).run(max_steps=100_000)
        print("stopped by", stats.stopped_by, "after", stats.steps, "steps; arm stops", arm.stop_count, flush=True)
    """)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout.readline().strip() == "running"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        out = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the loop went on running after SIGINT")
    assert proc.returncode == 0, out
    assert "stopped by interrupt" in out and "arm stops 1" in out, out


def test_ctrl_c_discard_when_configured(tmp_path):
    arm = connected()
    rec = recorder_for(tmp_path, arm)
    ControlLoop(arm, Scripted(fail_at=8), hz=200, recorder=rec, keep_on_interrupt=False).run(max_steps=100)
    assert not rec.recording
    with pytest.raises(DemoFormatError, match="empty demo folder"):
        DemoReader(tmp_path / "demos")


def test_arm_error_stops_loop_and_reraises(tmp_path):
    arm = connected()
    boom = Scripted(fail_at=4, exc=lambda: ArmError("connection lost"))
    loop = ControlLoop(arm, boom, hz=200, recorder=recorder_for(tmp_path, arm))
    with pytest.raises(ArmError, match="connection lost"):
        loop.run(max_steps=50)
    assert arm.stop_count == 1
    assert DemoReader(tmp_path / "demos").load(0).length == 3


def test_recorder_errors_are_clear(tmp_path):
    arm = connected()
    rec = recorder_for(tmp_path, arm)
    rec.start()
    with pytest.raises(DemoFormatError, match="actions.*no steps"):
        rec.finish(arm.observe().data, success=False)
    with pytest.raises(DemoFormatError, match="obs/robot0_eef_quat"):
        rec.record({"robot0_eef_pos": np.zeros(3), "robot0_gripper_qpos": np.zeros(2)}, np.zeros(7))
    # Buffers are copies: mutating the source array after record() does not change the episode.
    o = {k: v.copy() for k, v in arm.observe().data.items()}
    rec.record(o, np.zeros(7))
    o["robot0_eef_pos"][:] = 99
    path = rec.finish(arm.observe().data, success=True)
    assert path.name == "episode_000000.npz"
    ep = DemoReader(tmp_path / "demos").load(0)
    assert ep.success and ep.obs["robot0_eef_pos"].max() < 99
    rec.start()
    rec.record(o, np.zeros(7))
    rec.discard()
    assert rec.steps == 0 and not rec.recording


def test_bad_rate_rejected():
    with pytest.raises(ValueError, match="hz"):
        ControlLoop(connected(), Scripted(), hz=0)


def test_realtime_priority_is_restored_after_run():
    import os

    arm = connected()
    before = os.sched_getscheduler(0)
    seen = {}
    loop = ControlLoop(arm, Scripted(), hz=200, realtime_priority=10,
                       on_step=lambda i, o, a: seen.setdefault("policy", os.sched_getscheduler(0)))
    stats = loop.run(max_steps=5)
    assert stats.steps == 5
    assert os.sched_getscheduler(0) == before  # restored, whether or not SCHED_FIFO was permitted
    assert seen["policy"] in (os.SCHED_FIFO, before)  # FIFO inside the loop where permitted
    assert not loop.realtime_active


class SimArm:
    """Graph Reach behind the Arm interface, as a task arm is: observe, send (clipped), reward, state."""

    def __init__(self, reset_seed):
        from robolearn.tasks.base import make_env

        self.env = make_env("graph_reach", horizon=50)
        self.obs = self.env.reset(seed=reset_seed)
        self.low, self.high = self.env.action_spec.bounds()
        self.last_reward, self.stop_count = 0.0, 0

    def observe(self):
        import time

        from robolearn.hal.arm import Observation

        return Observation(time.monotonic(), {k: np.array(v) for k, v in self.obs.items()})

    def send(self, action):
        applied = np.clip(np.asarray(action, np.float32).reshape(-1), self.low, self.high)
        r = self.env.step(applied)
        self.obs, self.last_reward = r.obs, r.reward
        return applied

    def reward(self):
        return self.last_reward

    def get_state(self):
        return self.env.get_state()

    def stop(self):
        self.stop_count += 1


class Heading:
    """Deterministic: a slow move toward the origin (no success within a few steps)."""

    def reset(self, seed=None):
        pass

    def act(self, obs):
        return -0.05 * obs["pos"]


def test_the_loop_takes_the_same_steps_as_a_rollout_of_the_task(tmp_path):
    """Deployment runs the step body evaluation and collection run: on a task behind the Arm
    interface, the loop's recorded rows are the rollout's, observation for observation."""
    from robolearn.runtime.rollout import rollout
    from robolearn.runtime.seeds import EpisodeSeeds
    from robolearn.tasks.base import make_env

    arm = SimArm(reset_seed=5)
    meta = DemoMeta(task="graph_reach", control_hz=1000.0, obs_spec=arm.env.obs_spec, action_spec=arm.env.action_spec)
    stats = ControlLoop(arm, Heading(), hz=1000, recorder=EpisodeRecorder(DemoWriter(tmp_path / "d", meta))).run(max_steps=6)
    ep = DemoReader(tmp_path / "d").load(0)
    r = rollout(make_env("graph_reach", horizon=6), Heading(), EpisodeSeeds(index=0, reset=5, actor=None), record_states=True)
    assert stats.steps == r.length == 6 and arm.stop_count == 1
    np.testing.assert_array_equal(ep.obs["pos"], r.obs["pos"])
    np.testing.assert_array_equal(ep.actions, r.actions)
    np.testing.assert_array_equal(ep.states, r.states)
    np.testing.assert_array_equal(ep.rewards, r.rewards)
