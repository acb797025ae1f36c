"""Single-process speed: gradient steps per second, peak memory and the share of the machine's
fp32 matmul roofline of every algorithm (its launch files, and robomimic's paper networks), policy
step and re-plan latency, ``RemoteArm`` round trips on loopback, and closed-loop evaluation rates
with 1 and 2 workers.

    .venv/bin/python bench/throughput.py [--json bench/results/throughput.json] [--quick] [--threads 2]

What each figure is:

- ``steps/s``: gradient steps per second of ``algo.train_step`` (the sampler, the encoder, every
  learner's forward, backward and optimiser step) after a warm-up, the median over a few windows;
  ``cpu ms/step`` is the process's CPU time per step (all threads). Each configuration runs in a
  process of its own, so its peak resident memory (``VmHWM``) is its own. The data are synthetic
  episodes with the task's observation keys and shapes (random walks; the step cost does not
  depend on the values).
- ``paper``: robomimic's paper networks on Lift's shapes, batch 100, as ``--set`` overrides of the
  Lift launch file: BC-RNN an LSTM 2 x 400 over sequences of 10; IRIS a goal cVAE 1024 x 1024,
  BCQ critics 300 x 400 with an action cVAE 300 x 400, a low-level LSTM 2 x 400, subgoal
  horizon 10.
- ``GFLOP/step``: one step's floating-point operations. LSTMs are counted analytically (forward
  2 B T sum_l 4 H (in_l + H), backward twice that: 11.70 GFLOP for the paper BC-RNN); everything
  else by ``torch.utils.flop_counter.FlopCounterMode`` on one real step (it does not see the LSTM
  kernels). ``roofline %`` is GFLOP/step x steps/s over the roofline: large square float32
  ``torch.matmul`` at the same thread count, the best of several products, measured in the same run.
- ``step p50/p99 ms``, ``re-plan p50/p99 ms``: ``Policy.act`` on a checkpoint saved and loaded
  through ``robolearn.policy`` (one thread, as evaluation workers run), on dataset observations;
  a step where ``needs_plan`` was due is a re-plan. ``load s``: ``load_policy`` in that process
  (which has trained, so has imported what a first optimiser imports).
- ``RemoteArm``: ``send`` and ``observe`` round trips to an in-process ``ArmServer`` over the
  shielded noop arm on 127.0.0.1.
- evaluation: ``robolearn.evaluate.evaluate_run`` of a briefly trained policy with 1 and 2
  workers (horizon 100, which the briefly trained policy runs out): env-steps and episodes per second over the
  whole call (worker start-up included), and "without start-up", from the difference between a
  call of w episodes and one of 6 w. ``fresh_process_load_s``: ``load_policy`` in a new process.

robomimic is not measured here: its networks import torchvision at import time
(``robomimic/models/base_nets.py``, ``obs_core.py``), which does not import beside this CPU
torch. ``bench/robomimic_side_by_side.py`` measures it in a virtual environment of its own
against these configurations; the speed issue's figures are in the JSON's ``robomimic_reference``.

The machine is usually shared: the JSON records the load average before and after each run, and
a 2-thread figure under load is mostly OpenMP threads spinning while they wait for a core (``cpu
ms/step`` grows with the load as the wall rate falls). ``OMP_WAIT_POLICY=PASSIVE`` in the
environment (recorded in the JSON's ``machine``) makes them sleep instead.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "osmesa")

#: Observation keys and sizes, and action sizes, of the tasks (the recorded demo folders' spec).
TASK_SHAPES: dict[str, tuple[dict[str, int], int]] = {
    "graph_reach": ({"pos": 2}, 2),
    "lift": ({"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}, 7),
}
ALGOS = ("bc", "bc_rnn", "bcq", "hbc", "iris")

#: robomimic's paper networks, as ``--set`` overrides of the Lift launch files.
PAPER: dict[str, list[str]] = {
    "bc_rnn": ["algo.batch_size=100", "algo.hidden=400", "algo.layers=2", "algo.seq_len=10"],
    "iris": ["algo.batch_size=100", "algo.goal_vae_hidden=[1024, 1024]", "algo.low_hidden=400", "algo.low_layers=2",
             "algo.subgoal_horizon=10", "algo.value.critic_hidden=[300, 400]", "algo.value.action_vae_hidden=[300, 400]"],
}

#: Launch files with a measured option that is not their default: (task, algo, overrides). The
#: in-sample goal selector re-plans without sampling actions (docs/decisions.md: not adopted).
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "lift_iris_expectile": ("lift", "iris", ["algo.value.kind=expectile"]),
}

#: robomimic 0.3.0 and robolearn on this machine with the paper networks, batch 100, 2 threads
#: (the speed issue's measurements; robomimic does not import here, see the module docstring).
ROBOMIMIC_REFERENCE = {
    "bc_rnn": {"robomimic_steps_per_s": [9.6, 17.5], "robolearn_steps_per_s": 10.6},
    "iris": {"robomimic_steps_per_s": [5.9, 9.1], "robolearn_steps_per_s": 4.6, "robomimic_peak_mib": [730, 800]},
    "source": "speed-and-scale issue: robomimic on this machine, paper networks, 2 threads",
}

#: Sizes per mode: the timed steps, the roofline's matrix and the latency and evaluation samples.
SIZES = {
    "full": {"warmup": 5, "windows": 5, "window_steps": 10, "episodes": 50, "length": 150, "matmul": 2048,
             "matmul_reps": 10, "act_steps": 2000, "remote_n": 2000, "eval_episodes": 5, "eval_horizon": 100,
             "eval_train_steps": 20},
    "quick": {"warmup": 1, "windows": 3, "window_steps": 2, "episodes": 8, "length": 40, "matmul": 512,
              "matmul_reps": 5, "act_steps": 60, "remote_n": 100, "eval_episodes": 1, "eval_horizon": 20,
              "eval_train_steps": 2},
}


def pct(values: list[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 4) if values else None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; ``ru_maxrss`` where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- data, configurations -------------------------------------------------------------------

def synthetic_episodes(task: str, episodes: int, length: int, seed: int = 0):
    """Episodes with the task's keys and shapes: random-walk observations, actions in [-1, 1],
    a success reward on the last step."""
    import numpy as np

    from robolearn.data.format import Episode

    keys, action_dim = TASK_SHAPES[task]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        obs = {k: np.cumsum(rng.normal(0, 0.05, (length + 1, n)), 0).astype(np.float32) for k, n in keys.items()}
        dones = np.zeros(length, bool)
        dones[-1] = True
        out.append(Episode(obs=obs, actions=rng.uniform(-1, 1, (length, action_dim)).astype(np.float32),
                           rewards=dones.astype(np.float32), dones=dones, success=True))
    return out


def configurations() -> list[dict[str, Any]]:
    """Every launch file's algorithm on its task, then the paper networks on Lift."""
    out = []
    for task in ("graph_reach", "lift"):
        for algo in ALGOS:
            out.append({"name": f"{task}_{algo}", "task": task, "algo": algo, "networks": "launch",
                        "launch": f"launch/{task}_{algo}.yaml", "overrides": []})
    for algo, overrides in PAPER.items():
        out.append({"name": f"paper_{algo}", "task": "lift", "algo": algo, "networks": "paper",
                    "launch": f"launch/lift_{algo}.yaml", "overrides": overrides})
    for name, (task, algo, overrides) in VARIANTS.items():
        out.append({"name": name, "task": task, "algo": algo, "networks": "launch",
                    "launch": f"launch/{task}_{algo}.yaml", "overrides": overrides})
    return out


def build(config: dict[str, Any], data):
    import torch

    from robolearn.algos.base import algo_class
    from robolearn.launch import load_launch

    cfg = load_launch(REPO / config["launch"], config["overrides"])
    torch.manual_seed(0)
    algo = algo_class(cfg.algo_name).build(cfg.algo_params, data.obs_spec, data.normalizers, data.action_dim,
                                           config["launch"])
    return cfg, algo


# --- FLOPs ----------------------------------------------------------------------------------

def lstm_flops(batch: int, steps: int, in_dim: int, hidden: int, layers: int) -> float:
    """One training step's FLOPs in an LSTM: forward 2 B T sum_l 4 H (in_l + H), backward twice that."""
    macs = sum(4 * hidden * ((in_dim if layer == 0 else hidden) + hidden) for layer in range(layers))
    return 3.0 * 2.0 * batch * steps * macs


def step_flops(algo, data, gen) -> float:
    """FLOPs of one real training step: the LSTMs analytically (hooked on their inputs' shapes),
    everything else counted by ``FlopCounterMode``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lstm_total = [0.0]
    hooks = []
    for module in algo.modules():
        if isinstance(module, torch.nn.LSTM):
            def hook(mod, args, _total=lstm_total):
                x = args[0]
                b, t = (x.shape[0], x.shape[1]) if mod.batch_first else (x.shape[1], x.shape[0])
                if torch.is_grad_enabled():  # training forward; no_grad calls (acting) have no backward
                    _total[0] += lstm_flops(b, t, mod.input_size, mod.hidden_size, mod.num_layers)
            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with FlopCounterMode(display=False) as counter:
            algo.train_step(data, gen)
    finally:
        for h in hooks:
            h.remove()
    return float(counter.get_total_flops()) + lstm_total[0]


def roofline_gflops(threads: int, size: int, reps: int) -> dict[str, Any]:
    """fp32 ``torch.matmul`` of two size x size matrices at ``threads`` threads, after two warm-up
    products: the best GFLOP/s over ``reps`` products (a roofline is what the machine can reach;
    on a shared machine the median mostly measures the other jobs), and the median."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.matmul(a, b)
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2.0 * size ** 3 / (time.perf_counter() - t0) / 1e9)
    return {"threads": threads, "size": size, "reps": reps, "gflops": round(max(rates), 2), "median_gflops": round(statistics.median(rates), 2)}


# --- one configuration, in its own process ----------------------------------------------------

def policy_latency(algo, cfg, data, folder: Path, steps: int) -> dict[str, Any]:
    """``Policy.act`` on a checkpoint of ``algo`` saved and loaded through ``robolearn.policy``, on one
    thread: per-step and re-plan latencies (ms), and how long the load took."""
    import torch

    from robolearn.policy import load_policy, save_checkpoint

    save_checkpoint(folder, algo, step=0, meta={"task": cfg.task})
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    policy = load_policy(folder)
    load_s = time.perf_counter() - t0
    rows = torch.arange(steps) % data.obs[next(iter(data.obs))].shape[0]
    observations = [{k: v[int(r)].numpy() for k, v in data.obs.items()} for r in rows]
    step_ms, replan_ms = [], []
    policy.reset(0)
    for obs in observations[:5]:  # warm-up: first calls allocate
        policy.act(obs)
    policy.reset(0)
    for obs in observations:
        replans = policy.plans and policy.needs_plan(policy.steps)
        t = time.perf_counter()
        policy.act(obs)
        (replan_ms if replans else step_ms).append((time.perf_counter() - t) * 1e3)
    out = {"load_s": round(load_s, 3), "threads": 1, "steps": len(step_ms),
           "step_ms": {"p50": pct(step_ms, 50), "p99": pct(step_ms, 99)}}
    if policy.plans:
        out["replans"] = len(replan_ms)
        out["replan_ms"] = {"p50": pct(replan_ms, 50), "p99": pct(replan_ms, 99)}
    return out


def measure_config(config: dict[str, Any], threads: int, mode: str) -> dict[str, Any]:
    """Build ``config``'s algorithm on synthetic data of its task's shapes and time its steps."""
    import torch

    from robolearn.data.dataset import DemoDataset

    size = SIZES[mode]
    torch.set_num_threads(threads)
    keys, _ = TASK_SHAPES[config["task"]]
    data = DemoDataset(synthetic_episodes(config["task"], size["episodes"], size["length"]), list(keys))
    cfg, algo = build(config, data)
    algo.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(size["warmup"]):
        algo.train_step(data, gen)
    flops = step_flops(algo, data, gen)
    rates, cpu = [], []
    for _ in range(size["windows"]):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(size["window_steps"]):
            algo.train_step(data, gen)
        rates.append(size["window_steps"] / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / size["window_steps"])
    rate = statistics.median(rates)
    params = sum(p.numel() for p in algo.parameters())
    out = {**config, "threads": threads, "batch_size": int(algo.cfg.batch_size), "params": int(params),
           "steps_per_s": round(rate, 3), "window_steps_per_s": [round(r, 3) for r in rates],
           "cpu_ms_per_step": round(1e3 * statistics.median(cpu), 2), "gflop_per_step": round(flops / 1e9, 3),
           "achieved_gflops": round(flops / 1e9 * rate, 2)}
    algo.eval()
    with tempfile.TemporaryDirectory() as tmp:
        out["policy"] = policy_latency(algo, cfg, data, Path(tmp) / "ckpt", size["act_steps"])
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def run_config(config: dict[str, Any], threads: int, mode: str) -> dict[str, Any]:
    """``measure_config`` in a process of its own, so peak memory is this configuration's alone."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(config), "--threads", str(threads)]
    if mode == "quick":
        cmd.append("--quick")
    before = load_average()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(f"{config['name']}: {lines[-1] if lines else f'exit {proc.returncode}'}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_average"] = {"before": before, "after": load_average()}
    return result


# --- RemoteArm, evaluation ----------------------------------------------------------------------

def remote_round_trips(n: int, warmup: int = 50) -> dict[str, Any]:
    """``send`` and ``observe`` round trips (ms) to an in-process ``ArmServer`` over the shielded
    noop arm on loopback (the server in a thread of this process)."""
    import threading

    import numpy as np

    from robolearn.hal.factory import make_arm
    from robolearn.hal.remote import RemoteArm
    from robolearn.hal.server import ArmServer

    server = ArmServer(make_arm("noop"), port=0, heartbeat_ms=5000).start()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    arm = RemoteArm(port=server.port)
    send, observe = [], []
    try:
        arm.connect()
        cmd = np.zeros(arm.spec.action_spec.dim, np.float32)
        for i in range(n + warmup):
            t0 = time.perf_counter()
            arm.send(cmd)
            t1 = time.perf_counter()
            arm.observe()
            t2 = time.perf_counter()
            if i >= warmup:
                send.append((t1 - t0) * 1e3)
                observe.append((t2 - t1) * 1e3)
    finally:
        arm.close()
        server.shutdown()
    both = send + observe
    return {"n": n, "server": "in-process thread, 127.0.0.1", "round_trip_ms": {"p50": pct(both, 50), "p99": pct(both, 99)},
            "send_ms": {"p50": pct(send, 50), "p99": pct(send, 99)},
            "observe_ms": {"p50": pct(observe, 50), "p99": pct(observe, 99)}}


def fresh_process_load_s(run: Path) -> float:
    """``load_policy`` in a new process that has imported robolearn and torch and built no optimiser
    yet: what each evaluation worker pays to get its policy."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from robolearn.policy import load_policy; "
            "t = time.perf_counter(); load_policy(sys.argv[1]); print(time.perf_counter() - t)")
    proc = subprocess.run([sys.executable, "-c", code, str(run), str(REPO)], capture_output=True, text=True, check=True)
    return round(float(proc.stdout.strip().splitlines()[-1]), 3)


def evaluation_rates(task: str, algo_name: str, workers: list[int], mode: str, folder: Path) -> dict[str, Any]:
    """A policy trained briefly on synthetic data of ``task``'s shapes (its launch file's networks),
    rolled out closed-loop by ``evaluate_run`` with each worker count."""
    import torch

    from robolearn.data.dataset import DemoDataset
    from robolearn.evaluate import evaluate_run
    from robolearn.policy import save_checkpoint
    from robolearn.tasks.base import env_spec

    size = SIZES[mode]
    keys, _ = TASK_SHAPES[task]
    data = DemoDataset(synthetic_episodes(task, size["episodes"], size["length"]), list(keys))
    config = {"launch": f"launch/{task}_{algo_name}.yaml", "overrides": []}
    cfg, algo = build(config, data)
    gen = torch.Generator().manual_seed(0)
    for _ in range(size["eval_train_steps"]):
        algo.train_step(data, gen)
    hz = float(env_spec(task).get("control_hz", 20.0))
    run = folder / "run"
    save_checkpoint(run / "checkpoints" / "step_0000000", algo.eval(), step=0,
                    meta={"task": task, "control_hz": hz, "env": {}, "eval_horizon": size["eval_horizon"]})
    # Untimed: this process's first episode imports the simulator, which a call with one worker pays once.
    evaluate_run(run, episodes=1, seed=0, workers=1, horizon=size["eval_horizon"], progress=False)
    rows = {}
    for w in workers:
        # Two calls: w episodes, then w (1 + k): the difference is the rate without the workers' start-up.
        calls = []
        for episodes in (w, w * (1 + size["eval_episodes"])):
            before = load_average()
            t0 = time.perf_counter()
            summary = evaluate_run(run, episodes=episodes, seed=0, workers=w, horizon=size["eval_horizon"], progress=False)
            calls.append({"episodes": episodes, "env_steps": sum(e["length"] for e in summary["per_episode"]),
                          "wall_s": round(time.perf_counter() - t0, 3), "load_average": {"before": before, "after": load_average()}})
        small, large = calls
        extra_s = large["wall_s"] - small["wall_s"]
        # None when the longer call was not measurably longer (a shared machine's noise).
        steady = extra_s > 0.1 * large["wall_s"]
        rows[str(w)] = {"workers": w, "calls": calls,
                        "env_steps_per_s": round(large["env_steps"] / large["wall_s"], 2),
                        "episodes_per_s": round(large["episodes"] / large["wall_s"], 4),
                        "steady_env_steps_per_s": round((large["env_steps"] - small["env_steps"]) / extra_s, 2) if steady else None,
                        "steady_episodes_per_s": round((large["episodes"] - small["episodes"]) / extra_s, 4) if steady else None}
    out: dict[str, Any] = {"task": task, "algo": algo_name, "horizon": size["eval_horizon"],
                           "fresh_process_load_s": fresh_process_load_s(run), "by_workers": rows}
    if "1" in rows and "2" in rows:
        out["speedup_2_over_1"] = round(rows["2"]["episodes_per_s"] / rows["1"]["episodes_per_s"], 3)
        one, two = rows["1"]["steady_episodes_per_s"], rows["2"]["steady_episodes_per_s"]
        out["steady_speedup_2_over_1"] = round(two / one, 3) if one and two else None
    return out


# --- the table ----------------------------------------------------------------------------------

def fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(result: dict[str, Any]) -> str:
    roof = result["roofline"]["gflops"]
    lines = ["| config | algo | networks | threads | steps/s | cpu ms/step | GFLOP/step | roofline % | peak MiB | "
             "step p50/p99 ms | re-plan p50/p99 ms | load s |", "|" + "---|" * 12]
    for r in result["training"]:
        pol = r["policy"]
        replan = pol.get("replan_ms")
        lines.append(
            f"| {r['name']} | {r['algo']} | {r['networks']} | {r['threads']} | {r['steps_per_s']:.2f} | {r['cpu_ms_per_step']:.0f} | "
            f"{r['gflop_per_step']:.2f} | {100 * r['roofline_fraction']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{fmt(pol['step_ms']['p50'], '.3f')} / {fmt(pol['step_ms']['p99'], '.3f')} | "
            f"{'-' if replan is None else fmt(replan['p50'], '.2f') + ' / ' + fmt(replan['p99'], '.2f')} | {pol['load_s']:.2f} |")
    lines.append("")
    lines.append(f"fp32 matmul roofline: {roof:.1f} GFLOP/s ({result['roofline']['threads']} threads, "
                 f"{result['roofline']['size']}^2, best of {result['roofline']['reps']}; median {result['roofline']['median_gflops']:.1f})")
    rem = result.get("remote")
    if rem:
        lines.append(f"RemoteArm round trip ({rem['server']}): p50 {rem['round_trip_ms']['p50']:.3f} ms, "
                     f"p99 {rem['round_trip_ms']['p99']:.3f} ms over {rem['n']} sends + observes")
    ev = result.get("evaluation")
    if ev:
        for w, row in ev["by_workers"].items():
            last = row["calls"][-1]
            lines.append(f"eval {ev['task']} {ev['algo']}, {w} worker(s): {row['env_steps_per_s']:.1f} env-steps/s, "
                         f"{row['episodes_per_s']:.3f} episodes/s ({last['episodes']} episodes, {last['wall_s']:.1f} s); "
                         f"without start-up {fmt(row['steady_env_steps_per_s'], '.1f')} env-steps/s, "
                         f"{fmt(row['steady_episodes_per_s'], '.3f')} episodes/s")
        if "speedup_2_over_1" in ev:
            lines.append(f"eval 2 workers / 1 worker: {ev['speedup_2_over_1']:.2f}x episodes/s, "
                         f"{fmt(ev['steady_speedup_2_over_1'])}x without start-up")
        lines.append(f"load_policy in a fresh process: {ev['fresh_process_load_s']:.2f} s")
    lines.append(f"load average: {result['load_average']['before']} before, {result['load_average']['after']} after")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "throughput.json"), help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="a few steps and samples of everything: checks the bench, not the speed")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and the roofline (default 2)")
    ap.add_argument("--configs", nargs="*", help="configuration names (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="print the configuration names and exit")
    ap.add_argument("--eval-task", default="lift", choices=sorted(TASK_SHAPES), help="task of the evaluation rows")
    ap.add_argument("--eval-algo", default="iris", choices=ALGOS, help="algorithm of the evaluation rows")
    ap.add_argument("--eval-workers", type=int, nargs="*", default=[1, 2], help="worker counts to evaluate with (none: skip)")
    ap.add_argument("--no-remote", action="store_true", help="skip the RemoteArm rows")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    if args.threads < 1:
        ap.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.one:
        print(json.dumps(measure_config(json.loads(args.one), args.threads, mode)))
        return 0
    configs = configurations()
    if args.list:
        print("\n".join(c["name"] for c in configs))
        return 0
    if args.configs:
        unknown = sorted(set(args.configs) - {c["name"] for c in configs})
        if unknown:
            ap.error(f"--configs: unknown {unknown}; known: {[c['name'] for c in configs]}")
        configs = [c for c in configs if c["name"] in args.configs]
    import torch

    size = SIZES[mode]
    result: dict[str, Any] = {
        "mode": mode, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                                  "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "load_average": {"before": load_average()}, "robomimic_reference": ROBOMIMIC_REFERENCE,
        "roofline": roofline_gflops(args.threads, size["matmul"], size["matmul_reps"]),
    }
    rows = []
    for config in configs:
        row = run_config(config, args.threads, mode)
        row["roofline_fraction"] = round(row["achieved_gflops"] / result["roofline"]["gflops"], 4)
        rows.append(row)
    result["training"] = rows
    if not args.no_remote:
        result["remote"] = remote_round_trips(size["remote_n"])
    if args.eval_workers:
        with tempfile.TemporaryDirectory() as tmp:
            result["evaluation"] = evaluation_rates(args.eval_task, args.eval_algo, args.eval_workers, mode, Path(tmp))
    result["load_average"]["after"] = load_average()
    print(table(result))
    from bench.protocol_cells import write_json

    write_json(Path(args.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
