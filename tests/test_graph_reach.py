"""Graph Reach: walls, reward, operators, and the wall-averaging property IRIS relies on."""
from __future__ import annotations

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.tasks import make_env, make_operator
from robolearn.tasks.graph_reach import GraphReachEnv
from robolearn.tasks.graph_reach_operators import RouteOperator


@pytest.fixture(scope="module")
def env() -> GraphReachEnv:
    return make_env("graph_reach")


def run_episode(env, kind: str, seed: int):
    op = make_operator("graph_reach", env, kind, np.random.default_rng(seed))
    obs = env.reset(seed=seed)
    op.reset()
    path = [obs["pos"]]
    for _ in range(env.horizon):
        res = env.step(op.act(obs))
        obs = res.obs
        path.append(obs["pos"])
        if res.done:
            break
    return res, np.array(path), op


def test_spec_and_obs(env):
    obs = env.reset(seed=0)
    assert set(obs) == {"pos"} and obs["pos"].dtype == np.float32 and obs["pos"].shape == (2,)
    assert env.action_spec.dim == 2 and env.control_hz > 0
    assert np.linalg.norm(obs["pos"] - env.start_xy) <= env.config.start_noise + 1e-6
    # Same seed, same start; different seeds, different starts.
    assert np.array_equal(env.reset(seed=3)["pos"], env.reset(seed=3)["pos"])
    assert not np.array_equal(env.reset(seed=3)["pos"], env.reset(seed=4)["pos"])


def test_wall_stops_the_point(env):
    env.reset(seed=0)
    env.set_state(env.start_xy)
    # Straight right from S is a wall: the point moves at most to the corridor edge and no further.
    for _ in range(5):
        res = env.step(np.array([1.0, 0.0], np.float32))
    assert res.info["blocked"]
    x = float(res.obs["pos"][0])
    assert env.start_xy[0] < x <= env.start_xy[0] + env.config.corridor_half_width + 1e-6
    assert env.map.is_free(env.get_state())
    # Near a corridor edge a full step is clipped to the edge; the other coordinate is untouched.
    env.set_state(np.array([2.2, 5.0]))
    res = env.step(np.array([1.0, 0.0], np.float32))
    assert res.info["blocked"]
    assert res.obs["pos"][0] == pytest.approx(2.0 + env.config.corridor_half_width, abs=1e-5)
    assert res.obs["pos"][1] == pytest.approx(5.0)
    # A motion whose END is free (the right corridor) but which crosses the solid block stops at
    # the first wall: whole-path checking, no tunnelling.
    end, blocked = env.map.move(np.array([2.0, 5.0]), np.array([6.5, 0.0]))
    assert env.map.is_free(np.array([8.5, 5.0])) and blocked
    assert end[0] == pytest.approx(2.0 + env.config.corridor_half_width, abs=1e-6)


def test_set_state_rejects_walls_and_bad_actions(env):
    with pytest.raises(ValueError, match="inside a wall"):
        env.set_state(np.array([5.0, 5.0]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="2 numbers"):
        env.step(np.zeros(3))


def test_reward_success_and_horizon(env):
    env.reset(seed=0)
    towards_l2 = env.map.nodes["L2"] - env.goal_xy
    towards_l2 /= np.linalg.norm(towards_l2)
    env.set_state(env.goal_xy + 0.5 * towards_l2)
    res = env.step(np.zeros(2, np.float32))
    assert not res.success and res.reward == 0.0 and not res.done
    res = env.step((-towards_l2).astype(np.float32))
    assert res.success and res.done and res.reward == 1.0
    env.reset(seed=0)
    for t in range(env.horizon):
        res = env.step(np.zeros(2, np.float32))
        assert res.reward == 0.0 and not res.success
        assert res.done == (t == env.horizon - 1)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="edges\\[0\\].*unknown node 'Q'"):
        make_env("graph_reach", edges=[["S", "Q"]])
    with pytest.raises(ConfigError, match="horizon"):
        make_env("graph_reach", horizon="long")
    with pytest.raises(ConfigError, match="bogus"):
        make_env("graph_reach", bogus=1)
    with pytest.raises(ConfigError, match="edges.*not reachable"):
        make_env("graph_reach", edges=[["S", "F"], ["L2", "G"]])
    with pytest.raises(ConfigError, match="--operator.*'walk'"):
        make_operator("graph_reach", make_env("graph_reach"), "walk", np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["proficient", "suboptimal", "multimodal"])
def test_operators_reach_the_goal(env, kind):
    for seed in range(8):
        res, path, _ = run_episode(env, kind, seed)
        assert res.success, f"{kind} seed {seed} failed after {len(path) - 1} steps"
        assert env.map.is_free(path.astype(np.float64)).all()


def test_operators_are_deterministic_given_rng(env):
    for kind in ("proficient", "suboptimal", "multimodal"):
        _, a, _ = run_episode(env, kind, 5)
        _, b, _ = run_episode(env, kind, 5)
        assert np.array_equal(a, b)


def test_suboptimal_clearly_longer_than_proficient(env):
    prof = [len(run_episode(env, "proficient", s)[1]) - 1 for s in range(12)]
    sub = [len(run_episode(env, "suboptimal", s)[1]) - 1 for s in range(12)]
    assert 30 <= np.median(prof) <= 60
    assert np.median(sub) >= 1.7 * np.median(prof), (prof, sub)
    assert max(sub) < env.horizon


def test_suboptimal_contains_shortest_route_pieces_but_rarely_all_of_it(env):
    """The IRIS premise: every edge of the shortest route appears in the data, few demos take it end to end."""
    shortest = env.map.shortest_path(env.config.start, env.config.goal)
    edges_seen: set[tuple[str, str]] = set()
    clean = 0
    for s in range(12):
        res, path, op = run_episode(env, "suboptimal", s)
        route = op.route
        edges_seen |= set(zip(route[:-1], route[1:]))
        prof_len = env.map.path_length(shortest) / env.config.max_speed
        clean += int(route == shortest and len(path) - 1 <= 1.15 * prof_len)
    assert set(zip(shortest[:-1], shortest[1:])) <= edges_seen
    assert clean <= 3


def test_multimodal_uses_several_routes(env):
    routes = {tuple(run_episode(env, "multimodal", s)[2].route) for s in range(12)}
    assert len(routes) >= 2
    lengths = {round(env.map.path_length(r), 3) for r in routes}
    assert len(lengths) >= 2  # routes of different lengths


def test_averaging_two_routes_at_the_fork_drives_into_the_wall(env):
    """Mean-averaging the first actions of the left and right routes at the fork F gives an
    action pointing into the solid block between them: the point stops at the wall and
    makes no progress along either route, while each route's own action does progress."""
    routes = make_operator("graph_reach", env, "multimodal", np.random.default_rng(0)).routes
    left, right = routes[0], routes[1]
    assert left[:2] == right[:2] == ["S", "F"] and left[2] != right[2]
    fork = env.map.nodes["F"]
    nxt = {r[2]: env.map.nodes[r[2]] for r in (left, right)}
    obs = {"pos": fork.astype(np.float32)}
    acts = []
    for r in (left, right):
        op = RouteOperator(env, np.random.default_rng(0), r, noise=0.0)
        op.reset()
        acts.append(op.act(obs))
    # Each route alone makes progress towards its next node.
    for r, a in zip((left, right), acts):
        env.reset(seed=0)
        env.set_state(fork)
        for _ in range(5):
            res = env.step(a)
        assert not res.info["blocked"]
        assert np.linalg.norm(res.obs["pos"] - nxt[r[2]]) < np.linalg.norm(fork - nxt[r[2]]) - 1.0
    # Their average goes into the wall and stays there.
    avg = 0.5 * (acts[0] + acts[1])
    env.reset(seed=0)
    env.set_state(fork)
    blocked = []
    for _ in range(30):
        res = env.step(avg)
        blocked.append(res.info["blocked"])
    pos = res.obs["pos"].astype(np.float64)
    assert any(blocked) and all(blocked[-10:])
    assert np.linalg.norm(pos - fork) < 2 * env.config.corridor_half_width
    for name, p in nxt.items():
        assert np.linalg.norm(pos - p) > np.linalg.norm(fork - p) - 0.5, f"made progress towards {name}"
    assert not res.success


def test_render_and_plot(env, tmp_path):
    env.reset(seed=0)
    frame = env.render(64, 48)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    with_goal = env.render(64, 48, goal={"pos": env.map.nodes["L1"].astype(np.float32)})
    assert (with_goal != frame).any()  # the subgoal marker is drawn
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 4  # walls, floor, goal, point
    res, path, _ = run_episode(env, "proficient", 0)
    out = tmp_path / "rollouts.png"
    env.plot_rollouts([{"pos": path}, {"pos": path[:10]}], [True, False], str(out), title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
