"""Commanded against achieved path, and tick jitter, of the Franka adapter on franky-sim.

    .venv/bin/python bench/interpolation.py [--seconds 4] [--rates 100,250] [--json bench/results/interpolation.json]

A 20 Hz policy traces a 4 cm circle through the SafetyShield (franka.yaml's box and limits):
each step it commands the delta from the measured end effector to where the circle is one
period ahead. Cases: ``direct`` (one franky CartesianMotion per policy step, no follower)
and the TargetFollower at each ``--rates`` value streaming CartesianMotions that franky's
motion generator plans between at 1 kHz. A sampler at 200 Hz records the setpoint last
handed to franky (commanded) and the measured pose (achieved); reported: their distance
(rms, max), the achieved path's distance from the circle, the follower's tick period and
franky-sim's speed against the wall clock (``sim_rtf``: below 1 the simulated robot lags
every wall-clock target, on a loaded machine too). franky-sim runs in its own process;
it is the only simulated arm here that speaks a real robot's protocol (the UR has no
protocol simulator; its follower is tested against ur_rtde stand-ins).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robolearn.hal.factory import make_arm  # noqa: E402
from robolearn.hal.interpolation import path_summary  # noqa: E402
from robolearn.tempfiles import new_temp_file  # noqa: E402

RADIUS, CIRCLE_S, POLICY_HZ = 0.02, 4.0, 20.0


def start_sim() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "franky_sim.run_server", "--simulator", "mujoco"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        m = re.search(r"using '([^']+)' as the robot IP", line)
        if m:
            return proc, m.group(1)
    raise SystemExit(f"franky-sim did not start (exit {proc.wait()})")


def controller(host: str, rate_hz: float | None, folder: Path) -> Path:
    cfg = yaml.safe_load((REPO / "controllers/franka.yaml").read_text())
    cfg["params"].update(host=host, realtime=False, relative_dynamics_factor=0.5)
    if rate_hz is not None:
        cfg["params"]["follower"] = {"rate_hz": rate_hz, "max_target_age_ms": 150}
    path = folder / f"franka_bench_{rate_hz or 'direct'}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_case(host: str, rate_hz: float | None, seconds: float, folder: Path) -> dict:
    arm = make_arm("franka", controller(host, rate_hz, folder))
    arm.connect()
    raw = arm.arm
    centre = raw.eef_position() - [RADIUS, 0, 0]
    commanded: list[np.ndarray] = []
    rows: list[tuple[float, np.ndarray, np.ndarray]] = []
    done = threading.Event()

    def circle(t: float) -> np.ndarray:
        a = 2 * np.pi * t / CIRCLE_S
        return centre + RADIUS * np.array([np.cos(a), np.sin(a), 0.0])

    def sample() -> None:  # commanded = what franky was last given; achieved = measured now
        while not done.wait(0.005):
            sp = raw.follower.setpoint() if raw.follower is not None else None
            cmd = sp[0] if sp is not None else (commanded[-1] if commanded else None)
            if cmd is not None:
                rows.append((time.monotonic(), np.array(cmd), raw.eef_position()))

    sampler = threading.Thread(target=sample, daemon=True)
    sim_t0, wall_t0 = raw._robot.state.time.to_sec(), time.monotonic()
    sampler.start()
    t0 = time.monotonic()
    for k in range(int(seconds * POLICY_HZ)):
        want = circle((k + 1) / POLICY_HZ)
        cmd = np.zeros(7, np.float32)
        cmd[:3] = (want - raw.eef_position()) / raw.pos_scale
        cmd[6] = -1
        applied = arm.send(cmd)
        commanded.append(raw.eef_position() + applied[:3] * raw.pos_scale if raw.follower is None else want)
        time.sleep(max(0.0, t0 + (k + 1) / POLICY_HZ - time.monotonic()))
    done.set()
    sampler.join()
    sim_rtf = (raw._robot.state.time.to_sec() - sim_t0) / (time.monotonic() - wall_t0)
    periods = raw.follower.periods.values() if raw.follower is not None else np.zeros(0)
    nominal = raw.follower.period if raw.follower is not None else 1 / POLICY_HZ
    arm.close()
    t = np.array([r[0] for r in rows])
    path = {"t": t, "commanded": np.hstack([np.array([r[1] for r in rows]), np.tile([0, 0, 0, 1.0], (len(rows), 1))]),
            "achieved": np.hstack([np.array([r[2] for r in rows]), np.tile([0, 0, 0, 1.0], (len(rows), 1))])}
    out = path_summary(path, periods, nominal)
    off_circle = np.abs(np.linalg.norm(path["achieved"][:, :2] - centre[:2], axis=1) - RADIUS)
    out.update(case="direct" if rate_hz is None else f"follower {rate_hz:g} Hz", sim_rtf=sim_rtf,
               off_circle_rms_mm=1e3 * float(np.sqrt(np.mean(off_circle ** 2))), shield=arm.stats.to_dict())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="policy run per case")
    ap.add_argument("--rates", default="100,250", help="follower rates (Hz) to compare with direct motions")
    ap.add_argument("--json", default=str(REPO / "bench/results/interpolation.json"))
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    proc, host = start_sim()
    results = []
    try:
        folder = Path(args.json).resolve().parent
        folder.mkdir(parents=True, exist_ok=True)
        for rate in [None, *rates]:
            results.append(run_case(host, rate, args.seconds, folder))
            (folder / f"franka_bench_{rate or 'direct'}.yaml").unlink()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print("| case | cmd vs achieved rms mm | max mm | off circle rms mm | tick mean ms | tick std ms | tick p99 ms | sim_rtf |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['case']} | {r.get('pos_err_rms_mm', float('nan')):.2f} | {r.get('pos_err_max_mm', float('nan')):.2f} | "
              f"{r['off_circle_rms_mm']:.2f} | {r.get('period_mean_ms', float('nan')):.2f} | "
              f"{r.get('period_std_ms', float('nan')):.3f} | {r.get('period_p99_ms', float('nan')):.2f} | {r['sim_rtf']:.2f} |")
    doc = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "seconds": args.seconds, "policy_hz": POLICY_HZ, "radius_m": RADIUS, "results": results}
    out = Path(args.json)
    fd, tmp = new_temp_file(out.parent, f".{out.name}.", ".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
