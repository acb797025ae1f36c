"""PyBullet Panda + pybullet_lift: the scripted operator lifts the cube, and a policy-like
command source drives the shielded arm through the ControlLoop with recording."""
import numpy as np
import pytest

pytest.importorskip("pybullet")

from robolearn.data.format import ActionSpec, DemoMeta, DemoReader, DemoWriter  # noqa: E402
from robolearn.data.recorder import EpisodeRecorder  # noqa: E402
from robolearn.tasks.task_arm import make_task_arm  # noqa: E402
from robolearn.hal.loop import ControlLoop  # noqa: E402
from robolearn.hal.shield import SafetyShield  # noqa: E402
from robolearn.tasks.base import make_env, make_operator  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = make_env("pybullet_lift")
    yield e
    e.close()


def test_spec_and_reset_distribution(env):
    obs = env.reset(seed=1)
    assert set(obs) == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"}
    assert obs["object"].shape == (10,) and obs["object"].dtype == np.float32
    np.testing.assert_allclose(obs["object"][7:], obs["object"][:3] - obs["robot0_eef_pos"], atol=1e-5)
    np.testing.assert_allclose(obs["robot0_gripper_qpos"], [0.04, -0.04], atol=2e-3)  # robosuite signs, open
    a = env.reset(seed=3)["object"][:3]
    b = env.reset(seed=3)["object"][:3]
    c = env.reset(seed=4)["object"][:3]
    np.testing.assert_allclose(a, b)
    assert np.abs(a - c).max() > 1e-3
    assert 0.45 <= a[0] <= 0.60 and -0.12 <= a[1] <= 0.12
    assert not env.success()


def test_delta_command_moves_eef(env):
    obs = env.reset(seed=0)
    p0 = obs["robot0_eef_pos"].copy()
    for _ in range(5):
        obs = env.step(np.array([0, 0, -1, 0, 0, 0, -1], np.float32)).obs
    dz = obs["robot0_eef_pos"][2] - p0[2]
    assert -0.09 < dz < -0.05  # 5 steps x 0.015 m per unit
    assert abs(obs["robot0_eef_pos"][0] - p0[0]) < 0.005


def test_proficient_operator_lifts_cube(env):
    for seed in (0, 1):
        obs = env.reset(seed=seed)
        op = make_operator("pybullet_lift", env, "proficient", np.random.default_rng(seed))
        op.reset()
        for _ in range(env.horizon):
            res = env.step(op.act(obs))
            obs = res.obs
            if res.done:
                break
        assert res.success and res.reward == 1.0 and obs["object"][2] > 0.04


def test_state_roundtrip(env):
    env.reset(seed=2)
    for _ in range(3):
        env.step(np.array([0.3, 0, -0.5, 0, 0, 0.2, 0.5], np.float32))
    s = env.get_state()
    o1 = env.step(np.array([0, 0.5, 0, 0, 0, 0, 1], np.float32)).obs
    env.set_state(s)
    o2 = env.step(np.array([0, 0.5, 0, 0, 0, 0, 1], np.float32)).obs
    np.testing.assert_allclose(o1["robot0_eef_pos"], o2["robot0_eef_pos"], atol=2e-3)


def test_render_frame(env):
    env.reset(seed=0)
    frame = env.render(64, 48, goal={"robot0_eef_pos": np.array([0.5, 0.0, 0.1])})
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0


class OperatorPolicy:
    """A policy object as ``load_policy`` returns one (reset/act/meta/current_goal), backed by
    the scripted operator so the test needs no training."""

    def __init__(self, env):
        self._op = make_operator("pybullet_lift", env, "proficient", np.random.default_rng(0))
        self.meta = {"task": "pybullet_lift", "obs_keys": list(env.obs_spec), "action_dim": 7, "control_hz": 20.0, "env": {}}
        self.current_goal = None

    def reset(self):
        self._op.reset()

    def act(self, obs):
        return self._op.act(obs)


def test_policy_drives_shielded_pybullet_arm_through_control_loop(tmp_path):
    arm = make_task_arm("pybullet", task="pybullet_lift", seed=5)
    assert isinstance(arm, SafetyShield)
    arm.connect()
    try:
        arm.home()
        policy = OperatorPolicy(arm.env)
        meta = DemoMeta(task="pybullet_lift", control_hz=20.0, obs_spec=arm.spec.obs_spec, action_spec=ActionSpec(7))
        rec = EpisodeRecorder(DemoWriter(tmp_path / "deploy", meta))
        loop = ControlLoop(arm, policy, hz=200, recorder=rec)  # faster than real time: it is a simulator
        stats = loop.run(max_steps=150, stop_when=lambda o: arm.success())
        assert stats.stopped_by == "stop_when" and stats.success is True
        ep = DemoReader(tmp_path / "deploy").load(0)
        assert ep.success and ep.length == stats.steps
        assert ep.rewards[-1] == 1.0 and ep.rewards[0] == 0.0  # sparse task reward recorded
        assert ep.states is not None and ep.states.shape[0] == ep.length + 1  # exact-replay states
        assert arm.stats.commands == stats.steps
    finally:
        arm.close()
