"""Why does a Lift policy fail? Three probes that turned guesses about the benchmark into figures.

    python bench/lift_probe.py trace   RUN [--episodes 20] [--json OUT]
    python bench/lift_probe.py pauses  RUN --data runs/data/lift_suboptimal [--demos 60]
    python bench/lift_probe.py replans RUN --episode-index 26 [--episodes 1]
    python bench/lift_probe.py heights DATA
    python bench/lift_probe.py rescore RUN --set num_goal_samples=30 [--episodes 50]

* ``trace``: closed-loop episodes (the benchmark's seeds), each summarised from the recorded
  states: how often the cube went up (crossing 4 mm above its rest height), how far it was
  pushed or dragged on the table, and where the hand and fingers ended. Loops (many lifts, or
  a cube dragged far without a lift) and stalls (hand away from the cube at the horizon) are
  the failure modes the BENCHMARKS Lift section describes.
* ``pauses``: teacher-forced on the suboptimal demos' own observations. After each lift's
  pause (where partial lifts turn back and the final lift goes on), what does the policy
  command along z? The policy is reset 0-9 steps before that step, as BC-RNN's LSTM resets
  every 10 steps at run time, and the ten answers are averaged. It needs the operator's event
  log (``extra/event_steps``, ``extra/event_names``) that ``robolearn collect`` records.
* ``replans`` (IRIS): every re-plan of the chosen episodes, with how many candidate subgoals
  raise or lower the cube, their best scores and the chosen one, and how high the cube is
  when it is chosen and T steps later (does the low level reach the goal's height?). Scores
  above the largest achievable return (1.0 on Lift) are the critic over-estimating.
* ``rescore``: the benchmark's evaluation episodes with acting-time settings changed
  (IRIS's candidate count, its action samples per candidate, its latent clips, its stall
  tolerance), weights untouched: a paired comparison of the selector alone, without retraining.
  Any task's run: the environment comes from the checkpoint.
* ``heights``: from a suboptimal demo folder alone, where its partial lifts turn back and its
  final lifts pause (the figures that tell the v5 and v12 operators apart).

Everything here reads the observation layout from the checkpoint (``obs_keys``/``obs_shapes``),
so it works for any Lift run; it is a probe, not a benchmark: no pass/fail, no timings.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "osmesa")

LIFT_MM = 4.0  # a "lift": the cube more than this above its rest height


def _setup(run: str):
    import torch

    torch.set_num_threads(1)
    from robolearn.evaluate import make_eval_env
    from robolearn.policy import load_policy

    policy = load_policy(run)
    return policy, make_eval_env(policy.meta)


#: robosuite drops the cube from about 1 cm at reset: it has settled by this step.
SETTLED_STEP = 15


def settled_from(z: np.ndarray) -> int:
    """The first step at which the cube rests (0 for an episode too short to tell)."""
    return SETTLED_STEP if len(z) > SETTLED_STEP + 5 else 0


def rest_height(z: np.ndarray) -> float:
    """The cube's resting height: the median over the ten steps after it settles."""
    start = settled_from(z)
    return float(np.median(z[start : start + 10]))


def summarise_episode(obs: dict[str, np.ndarray], success: bool, length: int) -> dict:
    cube = obs["object"][:, :3]
    hand = obs["robot0_eef_pos"]
    q = obs["robot0_gripper_qpos"]
    gap = q[:, 0] - q[:, 1]
    rest = rest_height(cube[:, 2])
    settled = settled_from(cube[:, 2])
    cube, hand, gap = cube[settled:], hand[settled:], gap[settled:]
    up_mm = (cube[:, 2] - rest) * 1e3
    lifts = int(np.sum((up_mm[1:] > LIFT_MM) & (up_mm[:-1] <= LIFT_MM)))
    on_table = up_mm < LIFT_MM
    slid = np.linalg.norm(np.diff(cube[:, :2], axis=0), axis=1) * on_table[1:]
    return {
        "success": bool(success), "length": int(length), "lifts": lifts,
        "max_up_mm": float(up_mm.max()), "slid_on_table_cm": float(slid.sum() * 100),
        "end_hand_to_cube_cm": float(np.linalg.norm(hand[-1] - cube[-1]) * 100),
        "end_cube_up_cm": float(up_mm[-1] / 10),  # far below 0: the cube fell off the table
        "end_finger_gap_cm": float(gap[-1] * 100),
        # The fingers' opening while the cube is up: about the cube's width when grasped square,
        # up to width x sqrt(2) when grasped across its diagonal (a yaw-misaligned grasp).
        "held_gap_cm": float(np.median(gap[up_mm > LIFT_MM]) * 100) if np.any(up_mm > LIFT_MM) else None,
    }


def cmd_trace(args) -> dict:
    from robolearn.runtime.rollout import evaluation_rollout

    policy, env = _setup(args.run)
    rows = []
    print(f"{'ep':>3} {'ok':>3} {'len':>4} {'lifts':>5} {'max up mm':>9} {'slid cm':>7} {'hand-cube cm':>12} {'gap cm':>6} {'cube end z cm':>13} {'held gap cm':>11}")
    for i in range(args.episodes):
        r = evaluation_rollout(env, policy, args.eval_seed, i)
        row = {"episode": i, **summarise_episode(r.obs, r.success, r.length)}
        rows.append(row)
        print(f"{i:3d} {'yes' if row['success'] else 'no':>3} {row['length']:4d} {row['lifts']:5d} {row['max_up_mm']:9.1f} "
              f"{row['slid_on_table_cm']:7.1f} {row['end_hand_to_cube_cm']:12.1f} {row['end_finger_gap_cm']:6.1f} {row['end_cube_up_cm']:13.1f} "
              f"{'-' if row['held_gap_cm'] is None else format(row['held_gap_cm'], '.1f'):>11}", flush=True)
    env.close()
    fails = [r for r in rows if not r["success"]]
    print(f"\n{len(rows) - len(fails)}/{len(rows)} succeeded; failures: "
          f"{sum(r['lifts'] >= 3 for r in fails)} looped on lifts (3+), {sum(r['lifts'] == 0 for r in fails)} never lifted the cube, "
          f"{sum(r['lifts'] < 3 and r['slid_on_table_cm'] > 5 for r in fails)} dragged or pushed the cube > 5 cm, "
          f"{sum(r['end_hand_to_cube_cm'] > 5 for r in fails)} ended with the hand > 5 cm from the cube, "
          f"{sum(r['end_cube_up_cm'] < -5 for r in fails)} with the cube off the table")
    return {"probe": "trace", "run": args.run, "episodes": rows}


def decision_step(actions_z: np.ndarray, start: int) -> int | None:
    """The first step after a lift's rise and pause: rise (|a_z| >= 0.03), then pause (< 0.03)."""
    seg = actions_z[start:start + 50]
    j = 0
    while j < len(seg) and abs(seg[j]) >= 0.03:
        j += 1
    while j < len(seg) and abs(seg[j]) < 0.03:
        j += 1
    return start + j if j < len(seg) - 1 else None


def cmd_pauses(args) -> dict:
    from robolearn.data.format import DemoReader

    policy, env = _setup(args.run)
    env.close()
    reader = DemoReader(args.data)
    kinds = {"final_lift": "final lift (goes on up)", "partial_lift_up": "partial lift (goes back down)"}
    out: dict[str, dict[str, list[float]]] = {k: {"policy": [], "demo": []} for k in kinds}
    for idx in reader.indices[: args.demos]:
        ep = reader.load(idx)
        if "event_steps" not in ep.extra:
            raise SystemExit(f"lift_probe: {reader.path(idx)} has no extra/event_steps: record it with robolearn collect")
        az = ep.actions[:, 2]
        for step, name in zip(ep.extra["event_steps"].tolist(), ep.extra["event_names"].tolist()):
            d = decision_step(az, step) if name in kinds else None
            if d is None:
                continue
            answers = []
            for k in range(10):
                policy.reset(0)
                for t in range(max(d - k, 0), d + 1):
                    a = policy.act({key: ep.obs[key][t] for key in policy.obs_keys})
                answers.append(float(a[2]))
            out[name]["policy"].append(float(np.mean(answers)))
            out[name]["demo"].append(float(az[d]))
    print(f"{'after the pause of a':32} {'count':>5} {'demo z':>7} {'policy z':>8} {'policy z < 0':>12}")
    for name, label in kinds.items():
        p, dm = np.array(out[name]["policy"]), np.array(out[name]["demo"])
        if len(p):
            print(f"{label:32} {len(p):5d} {dm.mean():7.2f} {p.mean():8.2f} {np.mean(p < 0):12.0%}")
    return {"probe": "pauses", "run": args.run, "data": args.data, "per_pause": out}


def cmd_heights(args) -> dict:
    """Where the demos' partial lifts turn back and where their final lifts pause, in mm of
    the cube above its resting height (median of steps 5-14)."""
    from robolearn.data.format import DemoReader

    reader = DemoReader(args.data)
    tops, pauses = [], []
    for idx in reader.indices:
        ep = reader.load(idx)
        if "event_steps" not in ep.extra:
            raise SystemExit(f"lift_probe: {reader.path(idx)} has no extra/event_steps: record it with robolearn collect")
        z = ep.obs["object"][:, 2]
        rest = float(np.median(z[5:15]))
        events = list(zip(ep.extra["event_steps"].tolist(), [str(n) for n in ep.extra["event_names"].tolist()]))
        ups = [s for s, n in events if n == "partial_lift_up"]
        downs = [s for s, n in events if n == "partial_lift_down"]
        tops += [(float(z[u : d + 1].max()) - rest) * 1e3 for u, d in zip(ups, downs)]
        finals = [s for s, n in events if n == "final_lift"]
        if finals:  # the final lift's pause: held up, moving < 1 mm per step, before success
            after = z[max(finals):]
            held = after[: int(np.argmax(after > rest + 0.02))]
            still = (held[1:] > rest + 0.004) & (np.abs(np.diff(held)) < 0.001)
            if still.any():
                pauses.append((float(held[1:][still].max()) - rest) * 1e3)
    t, p = np.array(tops), np.array(pauses)
    if not len(t) or not len(p):
        raise SystemExit(f"lift_probe: {args.data} has {len(t)} partial lifts and {len(p)} final-lift pauses; need both")
    q = lambda a: "  ".join(f"{v:.1f}" for v in np.percentile(a, [0, 10, 50, 90, 100]))
    print(f"{'':24} {'count':>5}   min / p10 / median / p90 / max (mm above rest)")
    print(f"{'partial lifts turn back':24} {len(t):5d}   {q(t)}")
    print(f"{'final lifts pause':24} {len(p):5d}   {q(p)}")
    print(f"partial lifts turning back above the highest final-lift pause: {np.mean(t > p.max()):.0%}")
    return {"probe": "heights", "data": args.data, "partial_tops_mm": t.tolist(), "final_pauses_mm": p.tolist()}


class LoggedPlans:
    """The policy acting through its planning interface, as its ``act`` does (plan when
    ``needs_plan`` says, adopt, act on the plan), logging each IRIS plan's candidates and scores."""

    def __init__(self, policy):
        self.policy = policy
        self.log: list[dict] = []

    def reset(self, seed: int) -> None:
        self.policy.reset(seed)

    @property
    def current_goal(self):
        return self.policy.current_goal

    def act(self, obs):
        step = self.policy.steps
        if self.policy.needs_plan(step):
            plan = self.policy.plan(obs)
            self.log.append(self.describe(step, obs, plan))
            self.policy.adopt(plan)
        return self.policy.act_on_plan(obs)

    def describe(self, step: int, obs, plan) -> dict:
        p = self.policy
        scores = plan.scores.numpy()
        rise = (p.to_observation(plan.candidates)["object"][:, 2] - p.to_observation(p.features(obs))["object"][2]) * 1e3
        best = int(scores.argmax())
        up, down = rise > LIFT_MM, rise < -3.0
        return {"t": step, "candidates_up": int(up.sum()), "candidates_down": int(down.sum()),
                "best_score_up": float(scores[up].max()) if up.any() else None,
                "best_score": float(scores.max()), "chosen_rise_mm": float(rise[best])}


def cmd_replans(args) -> dict:
    from robolearn.runtime.rollout import evaluation_rollout

    policy, env = _setup(args.run)
    algo = policy.algo
    if not hasattr(algo, "score_goals"):
        raise SystemExit(f"lift_probe: {args.run} is {type(algo).__name__}, not IRIS: it has no subgoal scores")
    actor = LoggedPlans(policy)
    log = actor.log
    result = []
    for i in range(args.episode_index, args.episode_index + args.episodes):
        log.clear()
        r = evaluation_rollout(env, actor, args.eval_seed, i)
        success, t = r.success, r.length
        # Heights above the cube's rest, so a goal's height can be set against where the low level got to.
        z = r.obs["object"][:, 2]
        rest = rest_height(z)
        for plan in log:
            plan["cube_mm"] = (float(z[plan["t"]]) - rest) * 1e3
            plan["goal_cube_mm"] = plan["cube_mm"] + plan["chosen_rise_mm"]
            plan["cube_after_mm"] = (float(z[min(plan["t"] + algo.cfg.subgoal_horizon, len(z) - 1)]) - rest) * 1e3
        print(f"episode {i}: {'success' if success else 'failure'} after {t} steps; re-plans (cube heights in mm above its rest):")
        for plan in log:
            up = "-" if plan["best_score_up"] is None else f"{plan['best_score_up']:.3f}"
            print(f"  t={plan['t']:3d} cube {plan['cube_mm']:5.1f} | candidates up {plan['candidates_up']:2d} down {plan['candidates_down']:2d}"
                  f" | best score {plan['best_score']:.3f} (best going up {up}) | chosen goal {plan['goal_cube_mm']:5.1f}"
                  f" | cube {algo.cfg.subgoal_horizon} steps later {plan['cube_after_mm']:5.1f}")
        result.append({"episode": i, "success": success, "length": t, "replans": list(log)})
    env.close()
    return {"probe": "replans", "run": args.run, "episodes": result}


#: settings that only act when the policy picks goals or actions; anything else would change
#: what the weights mean, so ``rescore`` refuses it.
ACTING_SETTINGS = ("num_goal_samples", "replan_every", "num_value_action_samples", "goal_latent_clip", "policy_action_samples",
                   "value.target_lambda", "value.latent_clip", "latent_clip", "target_lambda", "stall_tolerance")


def apply_acting_settings(cfg, settings: list[str]) -> dict:
    """Set ``key=value`` pairs (dotted for nested configs) on an algorithm's config in memory."""
    applied = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or key not in ACTING_SETTINGS:
            raise SystemExit(f"lift_probe: --set {item!r}: expected KEY=VALUE with KEY one of {', '.join(ACTING_SETTINGS)}")
        *parents, leaf = key.split(".")
        target = cfg
        for name in parents:
            target = getattr(target, name)
        if not hasattr(target, leaf):
            raise SystemExit(f"lift_probe: --set {item!r}: {type(target).__name__} has no setting {leaf!r}")
        old = getattr(target, leaf)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise SystemExit(f"lift_probe: --set {item!r}: {text!r} is not a number, null or true/false") from None
        if value is not None and (isinstance(value, bool) != isinstance(old, bool) or not isinstance(value, (int, float))):
            raise SystemExit(f"lift_probe: --set {item!r}: expected a number or null, got {text!r}")
        if old is not None and value is not None and not isinstance(value, type(old)) and not (isinstance(old, float) and isinstance(value, int)):
            raise SystemExit(f"lift_probe: --set {item!r}: expected a {type(old).__name__} like {old!r}")
        setattr(target, leaf, value)
        applied[key] = value
    return applied


def cmd_rescore(args) -> dict:
    from robolearn.runtime.rollout import evaluation_rollout

    policy, env = _setup(args.run)
    applied = apply_acting_settings(policy.algo.cfg, args.set)
    results = [evaluation_rollout(env, policy, args.eval_seed, i) for i in range(args.episodes)]
    env.close()
    wins = [r.length for r in results if r.success]
    rate = len(wins) / len(results)
    mean_len = float(np.mean(wins)) if wins else None
    print(f"{args.run} with {applied or 'its own settings'}: success {rate:.0%} over {len(results)} episodes; "
          f"successful length {'-' if mean_len is None else format(mean_len, '.1f')}")
    return {"probe": "rescore", "run": args.run, "settings": applied, "episodes": len(results), "success_rate": rate,
            "successful_mean_length": mean_len, "per_episode": [{"success": r.success, "length": r.length} for r in results]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="probe", required=True)
    h = sub.add_parser("heights")
    h.add_argument("data", help="suboptimal Lift demo folder with operator event logs")
    h.add_argument("--json", help="write the probe's figures here")
    for name in ("trace", "pauses", "replans", "rescore"):
        s = sub.add_parser(name)
        s.add_argument("run", help="run folder or checkpoint")
        s.add_argument("--eval-seed", type=int, default=0, help="the benchmark's evaluation seed")
        s.add_argument("--json", help="write the probe's figures here")
        if name == "trace":
            s.add_argument("--episodes", type=int, default=20)
        if name == "pauses":
            s.add_argument("--data", required=True, help="suboptimal demo folder with operator event logs")
            s.add_argument("--demos", type=int, default=60)
        if name == "rescore":
            s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help=f"an acting-time setting ({', '.join(ACTING_SETTINGS)}); repeatable")
            s.add_argument("--episodes", type=int, default=50)
        if name == "replans":
            s.add_argument("--episode-index", type=int, default=0, help="first benchmark episode to replay")
            s.add_argument("--episodes", type=int, default=1)
    args = p.parse_args(argv)
    os.chdir(REPO)
    out = {"trace": cmd_trace, "pauses": cmd_pauses, "replans": cmd_replans, "heights": cmd_heights, "rescore": cmd_rescore}[args.probe](args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
