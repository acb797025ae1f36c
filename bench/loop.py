"""Control-loop benchmark: period jitter and overruns of the ControlLoop, policy step and
replan times with a trained IRIS policy on the MuJoCo (robosuite) arm, and RemoteArm round
trips to a no-op arm served from a separate process on loopback.

    .venv/bin/python bench/loop.py --json bench/results/loop.json [--checkpoint runs/lift_iris]

Every loop drives the arm through the SafetyShield, as deployment does. Jitter is the
actual start-to-start period minus the nominal one (ms); an overrun is a step that ended
after its next deadline. Prints a table and writes JSON with keys such as
``jitter_ms.100hz.p99``, ``overruns.100hz``, ``policy_ms.p99``, ``remote_ms.p99``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "osmesa")


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


class ZeroSource:
    def reset(self) -> None:
        pass

    def act(self, obs):
        return np.zeros(7, np.float32)


def noop_rows(rates: list[tuple[int, int]], rt: int | None) -> dict:
    from robolearn.hal.loop import ControlLoop
    from robolearn.hal.noop_arm import NoopArm
    from robolearn.hal.shield import SafetyShield, ShieldConfig

    out = {}
    for hz, steps in rates:
        arm = SafetyShield(NoopArm(control_hz=hz), ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 2], watchdog_ms=500))
        arm.connect()
        stats = ControlLoop(arm, ZeroSource(), hz, realtime_priority=rt).run(max_steps=steps)
        arm.close()
        out[f"{hz}hz" + ("" if rt else "_nort")] = stats
    return out


class TimedPolicy:
    """Times every act(); a step where the subgoal changed is a replan step (IRIS re-plans
    every T steps: goal sampling, value scoring and the new LSTM segment)."""

    def __init__(self, policy):
        self.policy = policy
        self.meta = getattr(policy, "meta", {})
        self.step_ms: list[float] = []
        self.replan_ms: list[float] = []
        self._goal = None

    def reset(self) -> None:
        self.policy.reset()
        self._goal = None

    def prime(self, obs) -> None:
        fn = getattr(self.policy, "prime", None)
        if callable(fn):
            fn(obs)

    def act(self, obs):
        t = time.perf_counter()
        a = self.policy.act(obs)
        dt = (time.perf_counter() - t) * 1e3
        g = getattr(self.policy, "current_goal", None)
        gv = None if g is None else np.concatenate([np.ravel(v) for v in g.values()])
        if gv is not None and (self._goal is None or not np.array_equal(gv, self._goal)):
            self.replan_ms.append(dt)
        else:
            self.step_ms.append(dt)
        self._goal = gv
        return a


def iris_row(checkpoint: str, steps: int, rt: int | None, pipelined: bool) -> dict:
    import torch

    torch.set_num_threads(1)
    from robolearn.hal.loop import ControlLoop
    from robolearn.policy import load_policy
    from robolearn.tasks.task_arm import make_task_arm

    policy = load_policy(checkpoint)
    meta = policy.meta
    arm = make_task_arm("robosuite", None, task=meta.get("task", "lift"), env_overrides=dict(meta.get("env") or {}), seed=0)
    arm.connect()
    arm.home()
    hz = float(meta.get("control_hz", 20.0))
    pipe = None
    if pipelined:
        from robolearn.hal.pipelined import PipelinedReplanPolicy

        pipe = PipelinedReplanPolicy(policy, hz)
    timed = TimedPolicy(pipe or policy)
    stats = ControlLoop(arm, timed, hz, realtime_priority=rt).run(max_steps=steps)
    arm.close()
    all_ms = timed.step_ms + timed.replan_ms
    replan = pipe.replan_ms if pipe is not None else timed.replan_ms
    out = {"stats": stats, "algo": getattr(policy.algo, "name", "?"), "hz": hz, "pipelined": pipelined,
           "policy_ms": {"p50": pct(all_ms, 50), "p99": pct(all_ms, 99), "max": max(all_ms)},
           "step_ms": {"p50": pct(timed.step_ms, 50), "p99": pct(timed.step_ms, 99)},
           "replan_ms": {"p50": pct(replan, 50), "p99": pct(replan, 99), "count": len(replan)}}
    if pipe is not None:
        out["lead_steps"] = pipe.lead
        out["replan_wait_ms"] = {"max": max(pipe.late_waits_ms) if pipe.late_waits_ms else 0.0}
        pipe.close()
    return out


def camera_row(steps: int, rt: int | None, size: int = 84) -> dict:
    """Lift at 20 Hz with robosuite's agentview and robot0_eye_in_hand cameras rendered at
    size x size by their capture threads, a zero command through the shield
    (``SafetyShield(CameraArm(task arm))``, the order deployment uses). A frame not rendered
    within 100 ms of its state is dropped and counted; the row keeps going (a zero command
    needs no image) so it measures both overruns and drops."""
    from robolearn.hal.cameras import CameraArm, StaleFrameError, make_cameras
    from robolearn.hal.loop import ControlLoop
    from robolearn.hal.shield import SafetyShield
    from robolearn.tasks.task_arm import make_task_arm

    shielded = make_task_arm("robosuite", task="lift", seed=0)
    views = {"agentview": {"width": size, "height": size}, "robot0_eye_in_hand": {"width": size, "height": size}}
    rig, cfg = make_cameras({"max_frame_age_ms": 100, "views": views}, "bench", sim=shielded)
    arm = SafetyShield(CameraArm(shielded.arm, rig, cfg.max_frame_age_s, max_stale_in_row=steps + 1), shielded.config, shielded.pos_scale, shielded.rot_scale)
    arm.connect()
    arm.home()
    hz = float(arm.spec.control_hz)
    loop = ControlLoop(arm, ZeroSource(), hz, realtime_priority=rt)
    error = None
    try:
        stats = loop.run(max_steps=steps)
    except StaleFrameError as exc:
        stats, error = None, str(exc)
    cam_stats = arm.camera_stats
    renders = {name: s.frames for name, s in rig.stats().items()}
    arm.close()
    return {"stats": stats, "hz": hz, "error": error, "served": dict(cam_stats.served), "dropped": dict(cam_stats.dropped),
            "renders": renders}


def remote_row(n: int, rt: int | None) -> dict:
    from robolearn.hal.remote import RemoteArm

    from robolearn.hal.loop import enter_realtime, leave_realtime

    proc = subprocess.Popen([sys.executable, "-m", "robolearn", "serve-arm", "controllers/noop.yaml", "--port", "0",
                             "--log-level", "ERROR", "--rt-priority", str(rt or 0)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        arm = RemoteArm(port=port)
        arm.connect()
        cmd = np.zeros(7, np.float32)
        send, obs = [], []
        prev = enter_realtime(rt)
        for i in range(n + 200):
            t0 = time.perf_counter()
            arm.send(cmd)
            t1 = time.perf_counter()
            arm.observe()
            t2 = time.perf_counter()
            if i >= 200:  # warm-up
                send.append((t1 - t0) * 1e3)
                obs.append((t2 - t1) * 1e3)
        leave_realtime(prev)
        arm.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"send": send, "observe": obs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True, help="JSON file to write")
    ap.add_argument("--checkpoint", default=None, help="IRIS run/checkpoint for the MuJoCo row (skipped when absent)")
    ap.add_argument("--iris-steps", type=int, default=300)
    ap.add_argument("--remote-n", type=int, default=2000)
    ap.add_argument("--camera-steps", type=int, default=400, help="steps of the Lift row with two 84x84 MuJoCo cameras (0: skip)")
    ap.add_argument("--rt-priority", type=int, default=50, help="SCHED_FIFO priority of the loop thread (0: normal scheduling)")
    ap.add_argument("--also-no-rt", action="store_true", help="also run the no-op rows under normal scheduling")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                 "jitter_ms": {}, "overruns": {}, "steps": {}, "notes": []}
    rows = []
    rt = args.rt_priority or None
    res["rt_priority"] = rt
    noop = noop_rows([(20, 400), (100, 1000), (500, 1000)], rt)
    if args.also_no_rt and rt:
        noop.update(noop_rows([(20, 400), (100, 1000), (500, 1000)], None))
    for key, s in noop.items():
        res["jitter_ms"][key] = {"p50": s.jitter_p50_ms, "p99": s.jitter_p99_ms, "max": s.jitter_max_ms}
        res["overruns"][key] = s.overruns
        res["steps"][key] = s.steps
        rows.append((f"noop arm (shielded) {key}", s.steps, s.jitter_p50_ms, s.jitter_p99_ms, s.jitter_max_ms, s.overruns,
                     f"work p99 {s.work_p99_ms:.3f} ms"))
    if args.checkpoint:
        res["checkpoint"] = args.checkpoint
        for pipelined in (False, True):
            r = iris_row(args.checkpoint, args.iris_steps, rt, pipelined)
            s = r["stats"]
            key = f"{r['algo']}_{int(r['hz'])}hz" + ("_pipelined" if pipelined else "")
            res["jitter_ms"][key] = {"p50": s.jitter_p50_ms, "p99": s.jitter_p99_ms, "max": s.jitter_max_ms}
            res["overruns"][key] = s.overruns
            res["steps"][key] = s.steps
            suffix = "_pipelined" if pipelined else ""
            res["policy_ms" + suffix] = r["policy_ms"]
            res["policy_step_ms" + suffix] = r["step_ms"]
            res["replan_ms" + suffix] = r["replan_ms"]
            if pipelined:
                res["pipelined_lead_steps"] = r["lead_steps"]
                res["pipelined_replan_wait_ms"] = r["replan_wait_ms"]
            rows.append((f"{r['algo']} policy, robosuite arm {int(r['hz'])}hz" + (" pipelined" if pipelined else ""), s.steps,
                         s.jitter_p50_ms, s.jitter_p99_ms, s.jitter_max_ms, s.overruns,
                         f"act p50 {r['policy_ms']['p50']:.1f} p99 {r['policy_ms']['p99']:.1f} ms; replan p50 "
                         f"{r['replan_ms']['p50']:.1f} p99 {r['replan_ms']['p99']:.1f} ms ({r['replan_ms']['count']})"
                         + (f"; lead {r['lead_steps']} steps" if pipelined else "")))
    else:
        res["notes"].append("IRIS/MuJoCo row skipped: no --checkpoint given")
    if args.camera_steps:
        r = camera_row(args.camera_steps, rt)
        s, key = r["stats"], "lift_20hz_cameras_2x84"
        res["cameras"] = {"served": r["served"], "dropped": r["dropped"], "renders": r["renders"], "error": r["error"]}
        if s is None:
            res["notes"].append(f"camera row stopped: {r['error']}")
        else:
            res["jitter_ms"][key] = {"p50": s.jitter_p50_ms, "p99": s.jitter_p99_ms, "max": s.jitter_max_ms}
            res["overruns"][key] = s.overruns
            res["steps"][key] = s.steps
            res["cameras"]["work_ms"] = {"p50": s.work_p50_ms, "p99": s.work_p99_ms}
            rows.append(("Lift 20 Hz with two MuJoCo cameras at 84x84", s.steps, s.jitter_p50_ms, s.jitter_p99_ms,
                         s.jitter_max_ms, s.overruns, f"step p50 {s.work_p50_ms:.1f} p99 {s.work_p99_ms:.1f} ms; "
                         f"frames dropped {sum(r['dropped'].values())}"))
    rr = remote_row(args.remote_n, rt)
    res["remote_ms"] = {"p50": pct(rr["send"], 50), "p99": pct(rr["send"], 99), "max": max(rr["send"]), "n": len(rr["send"])}
    res["remote_observe_ms"] = {"p50": pct(rr["observe"], 50), "p99": pct(rr["observe"], 99), "max": max(rr["observe"])}

    print(f"{'loop':44s} {'steps':>6s} {'jit p50':>8s} {'jit p99':>8s} {'jit max':>8s} {'overruns':>8s}  notes")
    for name, steps, p50, p99, mx, ov, note in rows:
        print(f"{name:44s} {steps:6d} {p50:8.3f} {p99:8.3f} {mx:8.3f} {ov:8d}  {note}")
    rm, ro = res["remote_ms"], res["remote_observe_ms"]
    print(f"RemoteArm round trip (loopback, noop server process): send p50 {rm['p50']:.3f} ms p99 {rm['p99']:.3f} ms "
          f"max {rm['max']:.3f} ms; observe p50 {ro['p50']:.3f} p99 {ro['p99']:.3f} ms (n={rm['n']})")
    for n in res["notes"]:
        print("note:", n)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
