"""``make quickstart``: the whole pipeline on suboptimal demos, in minutes on a 2-core CPU.

Collect deliberately suboptimal demos, train IRIS and BC-RNN on them, roll both out
closed-loop, and compare them. The point it makes: IRIS's value selector stitches the best
pieces of the demos together and beats both the imitation baseline and the demonstrator
itself (shorter episodes than the demos).

Two tasks:

* ``lift`` (default): robosuite Lift in MuJoCo (Panda, OSC_POSE); the demos pause, set the
  cube back down, push and drag it before the final lift.
* ``graph_reach``: the embedded corridor task, a minute or two; the fast teaching task.

Why every stage is a ``robolearn`` command in a child process: the report lists the exact
commands, so a reader can rerun or vary any one of them; and the two algorithms can train and
evaluate side by side (``--jobs 2``, the default), each on half the cores (on 2 cores: one torch
thread and one evaluation worker each). Small networks like these gain little from a second
thread, and on a shared machine a second thread mostly waits for a core (docs/decisions.md).
Each stage's CPU time (the child's and its workers', from ``wait4``) goes into the report
beside its wall time: on a busy machine the wall time grows several times over, the CPU time far
less, so the report still tells a slow machine from a shared one.

Everything lands under ``--out``: the demo folder, the run folders (checkpoints,
TensorBoard, loss plots), ``eval.json``/``eval.png`` and an mp4 per algorithm,
``comparison.png``, ``report.md``/``report.json`` and each stage's log under ``logs/``.
"""
from __future__ import annotations

import argparse
import ctypes.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robolearn.data.format import atomic_write_bytes
from robolearn.paths import LAUNCH_DIR

ALGOS = ("iris", "bc_rnn")
LABELS = {"iris": "IRIS", "bc_rnn": "BC-RNN"}


@dataclass(frozen=True)
class TaskPlan:
    """What the quickstart runs on one task by default (every number can be overridden)."""

    title: str
    episodes: int
    #: Gradient steps per algorithm; None keeps the launch files' ``train.steps``.
    steps: int | None
    eval_episodes: int
    #: Videos per algorithm: MuJoCo renders in software here (about 0.1 s a frame).
    video_episodes: int
    collect_workers: int
    #: Quickstart-only ``--set`` overrides per algorithm, on top of the launch file.
    overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)


PLANS: dict[str, TaskPlan] = {
    "lift": TaskPlan(title="Lift (robosuite, Panda, OSC_POSE)", episodes=200, steps=3000, eval_episodes=50,
                     video_episodes=1, collect_workers=2),
    "graph_reach": TaskPlan(title="Graph Reach", episodes=200, steps=None, eval_episodes=50, video_episodes=3,
                            collect_workers=1),
}


class QuickstartError(RuntimeError):
    """A stage that failed; the message names the stage, its exit status and its log."""


@dataclass
class Stage:
    """One ``robolearn`` command of the pipeline."""

    name: str
    #: Names the stage in the report ("iris_train"); its log, when quiet, is logs/<key>.log.
    key: str
    argv: list[str]
    log: Path | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def shell(self) -> str:
        return "robolearn " + " ".join(shlex.quote(a) for a in self.argv)


@dataclass
class Pipeline:
    """Stages run in order, one child process at a time."""

    label: str
    stages: list[Stage]
    run_dir: Path | None = None
    #: Gradient steps of its training stage (None: the launch file's), for the progress lines.
    total_steps: int | None = None
    next_index: int = 0
    proc: subprocess.Popen | None = None
    started: float = 0.0

    @property
    def current(self) -> Stage | None:
        return self.stages[self.next_index - 1] if self.proc is not None else None


def osmesa_available() -> bool:
    """MuJoCo renders offscreen through OSMesa here (``MUJOCO_GL=osmesa``); without the library
    a video cannot be rendered, so the quickstart skips the mp4s instead of failing."""
    return os.environ.get("MUJOCO_GL", "osmesa") != "osmesa" or ctypes.util.find_library("OSMesa") is not None


def start(p: Pipeline, logs: Path | None) -> None:
    stage = p.stages[p.next_index]
    p.next_index += 1
    print(f"[{p.label}] {stage.name}: {stage.shell()}", flush=True)
    out = None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        stage.log = logs / f"{stage.key}.log"
        out = stage.log.open("w")
    try:
        p.proc = subprocess.Popen([sys.executable, "-m", "robolearn", *stage.argv, *(["--quiet"] if logs else [])],
                                  stdout=out, stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()
    p.started = time.perf_counter()


def reap(p: Pipeline) -> bool:
    """True when the pipeline's running stage has ended (its wall and CPU time recorded)."""
    pid, status, usage = os.wait4(p.proc.pid, os.WNOHANG)
    if pid == 0:
        return False
    p.proc.returncode = os.waitstatus_to_exitcode(status)
    stage = p.current
    stage.wall_s = time.perf_counter() - p.started
    stage.cpu_s = usage.ru_utime + usage.ru_stime
    code, p.proc = p.proc.returncode, None
    if code != 0:
        tail = ""
        if stage.log is not None and stage.log.exists():
            lines = [ln for ln in stage.log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        where = f" (log: {stage.log})" if stage.log is not None else ""
        raise QuickstartError(f"{p.label} {stage.name} failed with exit status {code}{tail}{where}")
    print(f"[{p.label}] {stage.name} done in {stage.wall_s:.0f} s ({stage.cpu_s:.0f} CPU s)", flush=True)
    return True


def progress_of(p: Pipeline) -> str:
    stage = p.current
    if stage is None:
        return f"{p.label}: done" if p.next_index == len(p.stages) else f"{p.label}: waiting"
    text = f"{p.label}: {stage.name}"
    metrics = p.run_dir / "metrics.jsonl" if p.run_dir is not None else None
    if stage.name == "train" and metrics is not None and metrics.exists():
        lines = metrics.read_text().splitlines()
        if lines:
            try:
                row = json.loads(lines[-1])
                of = f"/{p.total_steps}" if p.total_steps else ""
                text += f" step {row['step']}{of}, {row['step'] / max(row['wall_s'], 1e-9):.1f} steps/s"
            except (ValueError, KeyError):
                pass  # a line being written; the next poll reads it whole
    return text + f" ({time.perf_counter() - p.started:.0f} s)"


def run_pipelines(pipelines: list[Pipeline], logs: Path | None = None, report_every_s: float = 15.0) -> None:
    """Run the pipelines side by side (each stage after the previous one of its pipeline);
    on any failure, stop the others and raise QuickstartError. With ``logs``, each stage runs
    ``--quiet`` with its output in ``logs/<key>.log`` and a progress line comes every
    ``report_every_s``; without, the stages' own progress bars show."""
    try:
        for p in pipelines:
            start(p, logs)
        last_report = time.perf_counter()
        while any(p.proc is not None for p in pipelines):
            time.sleep(0.2)
            for p in pipelines:
                if p.proc is not None and reap(p) and p.next_index < len(p.stages):
                    start(p, logs)
            if logs is not None and time.perf_counter() - last_report >= report_every_s:
                last_report = time.perf_counter()
                print("  ... " + " | ".join(progress_of(p) for p in pipelines), flush=True)
    finally:
        for p in pipelines:
            if p.proc is not None:
                p.proc.terminate()
                p.proc.wait()


# ------------------------------------------------------------------ the plan


@dataclass
class Settings:
    task: str
    out: Path
    episodes: int
    demo_seed: int
    seed: int
    eval_seed: int
    eval_episodes: int
    steps: int | None
    video_episodes: int
    horizon: int | None
    jobs: int
    overrides: dict[str, list[str]]


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter commands to read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def data_dir(s: Settings) -> Path:
    return s.out / "data" / f"{s.task}_suboptimal_seed{s.demo_seed}_{s.episodes}"


def collect_stage(s: Settings, workers: int) -> Stage:
    argv = ["collect", s.task, "--operator", "suboptimal", "--episodes", str(s.episodes), "--seed", str(s.demo_seed),
            "--workers", str(workers), "--out", str(data_dir(s))]
    return Stage("collect", "collect", argv)


def algo_stages(s: Settings, algo: str, threads: int | None, workers: int) -> list[Stage]:
    run = s.out / algo
    sets = [f"data.path={data_dir(s)}", *([f"train.steps={s.steps}"] if s.steps else []),
            *([f"train.threads={threads}"] if threads else []), *s.overrides.get(algo, [])]
    train = ["train", shown_path(LAUNCH_DIR / f"{s.task}_{algo}.yaml"), "--out", str(run), "--seed", str(s.seed)]
    for kv in sets:
        train += ["--set", kv]
    evaluate = ["eval", str(run), "--episodes", str(s.eval_episodes), "--seed", str(s.eval_seed), "--json",
                str(run / "eval.json"), "--workers", str(workers)]
    if s.video_episodes > 0:
        evaluate += ["--video", str(run / "videos"), "--video-episodes", str(s.video_episodes)]
    if s.horizon:
        evaluate += ["--horizon", str(s.horizon)]
    return [Stage("train", f"{algo}_train", train), Stage("eval", f"{algo}_eval", evaluate)]


def collect_demos(s: Settings) -> Stage | None:
    """Collect the demos unless this very collection finished before (its marker file says so);
    a folder a killed collection left half-written is collected again."""
    folder = data_dir(s)
    stage = collect_stage(s, PLANS[s.task].collect_workers)
    marker = folder.with_name(folder.name + ".done.json")
    recorded = json.loads(marker.read_text()) if marker.exists() else None
    if recorded is not None and recorded.get("argv") == stage.argv and (folder / "meta.json").exists():
        print(f"[demos] reusing {folder} (delete it to collect again)", flush=True)
        return None
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    run_pipelines([Pipeline("demos", [stage])])
    atomic_write_bytes(marker, (json.dumps({"argv": stage.argv}) + "\n").encode())
    return stage


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cores_each(s: Settings) -> int:
    """Cores per algorithm: half of them side by side (jobs 2), all of them one after the other."""
    return max(1, cores() // 2) if s.jobs >= 2 else cores()


def train_and_evaluate(s: Settings) -> list[Stage]:
    """Both algorithms: side by side on half the cores each (jobs 2), or one after the other with
    every core (jobs 1). Run folders are made afresh: an older run would report stale figures."""
    for algo in ALGOS:
        shutil.rmtree(s.out / algo, ignore_errors=True)
    n = cores_each(s)
    if s.jobs >= 2:
        pipelines = [Pipeline(LABELS[a], algo_stages(s, a, threads=n, workers=n), run_dir=s.out / a,
                              total_steps=s.steps)
                     for a in ALGOS]
        print(f"[train+eval] {' and '.join(LABELS[a] for a in ALGOS)} side by side, {n} core(s) each; "
              f"logs in {s.out / 'logs'}", flush=True)
        run_pipelines(pipelines, logs=s.out / "logs")
        return [st for p in pipelines for st in p.stages]
    stages: list[Stage] = []
    for algo in ALGOS:
        p = Pipeline(LABELS[algo], algo_stages(s, algo, threads=None, workers=n), run_dir=s.out / algo,
                     total_steps=s.steps)
        print(f"[train+eval] {LABELS[algo]} on {n} core(s); log in {s.out / 'logs'}", flush=True)
        run_pipelines([p], logs=s.out / "logs")
        stages += p.stages
    return stages


# ------------------------------------------------------------------ results


def algo_result(s: Settings, algo: str) -> dict[str, Any]:
    run = s.out / algo
    ev = json.loads((run / "eval.json").read_text())
    train = json.loads((run / "train_summary.json").read_text())
    videos = sorted((run / "videos").glob("*.mp4")) if (run / "videos").exists() else []
    return {**{k: v for k, v in ev.items() if k != "per_episode"}, "train_wall_s": train["wall_s"],
            "train_steps": train["steps"], "steps_per_s": train["steps_per_s"], "threads": train["threads"],
            "videos": [str(v) for v in videos]}


def plot_comparison(results: dict[str, dict[str, Any]], demo_median: float | None, path: Path, title: str) -> None:
    """Success rate and episode lengths side by side, the demos' median length as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [LABELS[a] for a in results]
    colours = ["tab:blue" if a == "iris" else "tab:orange" for a in results]
    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(9, 3.8))
    rates = [100 * r["success_rate"] for r in results.values()]
    ax_s.bar(names, rates, color=colours)
    for i, v in enumerate(rates):
        ax_s.text(i, v + 1, f"{v:.0f} %", ha="center", va="bottom")
    ax_s.set(ylim=(0, 112), ylabel="success (%)", title=f"success, {next(iter(results.values()))['episodes']} episodes")
    x = range(len(names))
    mean = [r["mean_length"] for r in results.values()]
    ok = [r["successful_mean_length"] or 0.0 for r in results.values()]
    ax_l.bar([i - 0.2 for i in x], mean, width=0.4, color=colours, alpha=0.45, label="all episodes")
    ax_l.bar([i + 0.2 for i in x], ok, width=0.4, color=colours, label="successful episodes")
    if demo_median:
        ax_l.axhline(demo_median, color="k", ls="--", lw=1, label=f"demos' median ({demo_median:.0f})")
    ax_l.set_xticks(list(x), names)
    top = max([*mean, *ok, demo_median or 0.0, 1.0])
    # Head room above the tallest bar for the legend, which would otherwise cover it.
    ax_l.set(ylim=(0, 1.4 * top), ylabel="episode length (steps)", title="mean episode length")
    ax_l.legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def report_text(s: Settings, results: dict[str, dict[str, Any]], stages: list[Stage], demo_median: float | None,
                wall_s: float, loads: tuple[float, float]) -> str:
    plan = PLANS[s.task]
    lines = [f"# robolearn quickstart: {plan.title}, suboptimal demos", "",
             f"{s.episodes} suboptimal demos (collect seed {s.demo_seed}, median length "
             f"{demo_median:.0f} steps) in `{data_dir(s)}`; training seed {s.seed}; {s.eval_episodes} evaluation "
             f"episodes (eval seed {s.eval_seed}) per algorithm.", "",
             "| algo | success | mean length | successful length | vs demo median | train steps | train s | steps/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for algo, r in results.items():
        ok = r["successful_mean_length"]
        vs = f"{ok / demo_median:.2f}x" if ok and demo_median else "-"
        lines.append(f"| {LABELS[algo]} | {r['success_rate']:.0%} | {r['mean_length']:.1f} | "
                     f"{f'{ok:.1f}' if ok else '-'} | {vs} | {r['train_steps']} | {r['train_wall_s']:.0f} | "
                     f"{r['steps_per_s']:.1f} |")
    lines += ["", "![comparison](comparison.png)", "", "## What was run", "", "```"]
    lines += [st.shell() for st in stages] + ["```", ""]
    mode = f"side by side, {cores_each(s)} core(s) each" if s.jobs >= 2 else "one after the other, every core each"
    lines += [f"Training and evaluation ran {mode}.", "", "| stage | wall s | CPU s |", "|---|---:|---:|"]
    lines += [f"| {st.key} | {st.wall_s:.0f} | {st.cpu_s:.0f} |" for st in stages]
    cpu = sum(st.cpu_s for st in stages)
    lines += ["", f"Total: {wall_s:.0f} s wall, {cpu:.0f} CPU s (load average {loads[0]:.1f} at the start, "
                  f"{loads[1]:.1f} at the end; on a shared machine the wall time grows far more than the CPU "
                  "time).", "",
              "## Artefacts", ""]
    for algo, r in results.items():
        run = s.out / algo
        vids = ", ".join(f"`{v}`" for v in r["videos"]) or "none (no OSMesa)"
        lines.append(f"- {LABELS[algo]}: `{run}` (checkpoints, `tb/`, `losses.png`), `{run / 'eval.json'}`, "
                     f"`{run / 'eval.png'}`, videos: {vids}")
    lines += [f"- demos: `{data_dir(s)}` (`robolearn inspect` it)", f"- comparison: `{s.out / 'comparison.png'}`",
              f"- this report: `{s.out / 'report.md'}`, figures in `{s.out / 'report.json'}`, "
              f"logs in `{s.out / 'logs'}`"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ entry point


def parse_overrides(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        algo, sep, kv = pair.partition(":")
        if not sep or algo not in ALGOS or "=" not in kv:
            parser.error(f"--set {pair!r}: expected ALGO:KEY=VALUE with ALGO one of {', '.join(ALGOS)}")
        out.setdefault(algo, []).append(kv)
    return out


def positive(parser: argparse.ArgumentParser, name: str, value: int | None, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        parser.error(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} integer, got {value}")


def stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robolearn.quickstart", description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(PLANS), default="lift",
                   help="lift (MuJoCo, about 10 minutes on 2 cores) or graph_reach (the fast teaching task)")
    p.add_argument("--out", default=None, help="output folder (default runs/quickstart/TASK)")
    p.add_argument("--episodes", type=int, default=None, help="demos to collect (lift 200, graph_reach 200)")
    p.add_argument("--demo-seed", type=int, default=0, help="collection seed of the demos (default 0)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--eval-seed", type=int, default=None, help="base seed of the evaluation episodes (default: --seed)")
    p.add_argument("--eval-episodes", type=int, default=None, help="closed-loop episodes per algorithm (default 50)")
    p.add_argument("--steps", type=int, default=None,
                   help="gradient steps per algorithm (lift 3000; graph_reach: the launch files')")
    p.add_argument("--video-episodes", type=int, default=None, help="mp4s per algorithm (lift 1, graph_reach 3)")
    p.add_argument("--horizon", type=int, default=None, help="evaluation episode horizon (default: the task's)")
    p.add_argument("--jobs", type=int, choices=(1, 2), default=2,
                   help="2: train and evaluate both algorithms side by side, half the cores each (default); "
                        "1: one after the other with every core")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="ALGO:KEY=VALUE",
                   help="launch-file override for one algorithm, e.g. --set iris:algo.lr=3e-4")
    args = p.parse_args(argv)
    plan = PLANS[args.task]
    for name in ("--episodes", "--eval-episodes", "--steps", "--horizon"):
        positive(p, name, getattr(args, name[2:].replace("-", "_")))
    for name in ("--demo-seed", "--seed", "--eval-seed", "--video-episodes"):
        positive(p, name, getattr(args, name[2:].replace("-", "_")), allow_zero=True)
    overrides = {a: list(plan.overrides.get(a, ())) for a in ALGOS}
    for algo, kvs in parse_overrides(args.overrides, p).items():
        overrides[algo] += kvs
    video_episodes = plan.video_episodes if args.video_episodes is None else args.video_episodes
    if video_episodes and not osmesa_available():
        print("note: OSMesa not found (apt-get install libosmesa6); skipping the videos", flush=True)
        video_episodes = 0
    s = Settings(task=args.task, out=Path(args.out or f"runs/quickstart/{args.task}"),
                 episodes=args.episodes or plan.episodes, demo_seed=args.demo_seed,
                 seed=args.seed, eval_seed=args.seed if args.eval_seed is None else args.eval_seed,
                 eval_episodes=args.eval_episodes or plan.eval_episodes,
                 steps=args.steps if args.steps is not None else plan.steps, video_episodes=video_episodes,
                 horizon=args.horizon, jobs=args.jobs, overrides=overrides)
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    s.out.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    print(f"quickstart: {plan.title}; {s.episodes} suboptimal demos, IRIS and BC-RNN, {s.eval_episodes} "
          f"evaluation episodes each -> {s.out}", flush=True)
    # A terminated quickstart stops its running stages too (run_pipelines' cleanup), as Ctrl-C does.
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm) if on_main_thread else None
    try:
        collected = collect_demos(s)
        stages = ([collected] if collected else []) + train_and_evaluate(s)
    except QuickstartError as exc:
        print(f"quickstart: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("quickstart: interrupted", file=sys.stderr)
        return 130
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    results = {a: algo_result(s, a) for a in ALGOS}
    demo_median = results["iris"]["demo_median_length"]
    plot_comparison(results, demo_median, s.out / "comparison.png",
                    f"{plan.title}: {s.episodes} suboptimal demos, {s.eval_episodes} episodes each")
    report = report_text(s, results, stages, demo_median, time.perf_counter() - t0, (load0, os.getloadavg()[0]))
    atomic_write_bytes(s.out / "report.md", report.encode())
    summary = {"task": s.task, "episodes": s.episodes, "demo_seed": s.demo_seed, "seed": s.seed,
               "eval_seed": s.eval_seed, "jobs": s.jobs, "wall_s": round(time.perf_counter() - t0, 1),
               "stages": [{"stage": st.key, "command": st.shell(),
                           "wall_s": round(st.wall_s, 1), "cpu_s": round(st.cpu_s, 1)} for st in stages],
               "results": results}
    atomic_write_bytes(s.out / "report.json", (json.dumps(summary, indent=2) + "\n").encode())
    print("\n" + report, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
