"""Can (robosuite PickPlaceCan) through the HAL: spec, success test and scripted operators.

One robosuite environment serves the whole module."""
from __future__ import annotations

import numpy as np
import pytest

import robolearn.sim_compat  # noqa: F401  (sets MUJOCO_GL=osmesa before MuJoCo is imported)

pytest.importorskip("robosuite")

from robolearn.tasks.base import make_env, make_operator  # noqa: E402
from robolearn.tasks.manip_operators import scripted_operator_for  # noqa: E402
from manip_helpers import rollout  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = make_env("can")
    e.reset(seed=0)
    yield e
    e.close()


def in_target_bin(env, pos):
    se = env.sim_env
    return not se.not_in_bin(np.asarray(pos, dtype=np.float64), se.object_id)


def test_spec_and_seeded_start(env):
    assert env.obs_spec["object"].shape == (14,) and env.action_spec.dim == 7 and env.control_hz == 20
    a = env.reset(seed=5)
    b = env.reset(seed=5)
    np.testing.assert_array_equal(a["object"], b["object"])
    # The can starts in the left bin, not in its target bin, and the episode is not a success.
    assert a["object"][1] < 0 and not in_target_bin(env, a["object"][:3])
    assert not env.success()
    assert env.arm.spec.name == "robosuite_panda_can"


def test_proficient_places_the_can(env):
    op = make_operator("can", env, "proficient", np.random.default_rng(0))
    traj, success = rollout(env, op, seed=31)
    assert success
    assert in_target_bin(env, traj["object"][-1, :3])
    assert len(traj["object"]) - 1 < 250


def test_suboptimal_partial_lift_then_success(env):
    op = scripted_operator_for(env, "suboptimal", np.random.default_rng(1), behaviours=["partial_lift"])
    traj, success = rollout(env, op, seed=32)
    assert success
    z = traj["object"][:, 2]
    final = max(s for s, n in op.events if n == "final_lift")
    rest = np.median(z[5:15])
    peak = int(np.argmax(z[:final]))
    assert z[peak] > rest + 0.02 and z[peak:final].min() < rest + 0.01


def test_multimodal_succeeds(env):
    op = make_operator("can", env, "multimodal", np.random.default_rng(3))
    _, success = rollout(env, op, seed=33)
    assert success, op.mode


def test_render(env):
    env.reset(seed=1)
    frame = env.render(64, 48)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5
