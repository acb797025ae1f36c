"""``robolearn deploy LAUNCH.yaml --checkpoint CKPT [--yes] [--max-steps N] [--out DIR]``.

Runs a trained policy on the arm the launch file names, through the SafetyShield and the
fixed-rate ControlLoop, and records the run as a demo folder (so every deployment can be
inspected, replayed or trained on later). The launch file's ``deploy`` section::

    deploy:
      arm: pybullet              # noop | pybullet | robosuite | remote | ur | franka
      controller: controllers/pybullet_panda.yaml   # default: the arm's file
      hz: 20                     # default: the controller's control_hz
      max_steps: 400
      episodes: 1
      host: 127.0.0.1            # remote only (default: the controller's params)
      port: 5555
      seed: 0                    # simulated scenes: reset seed of the first episode
      stop_on_success: true      # when the arm or task can tell success
      rt_priority: 0             # SCHED_FIFO priority of the loop (needs root/CAP_SYS_NICE)
      pipelined_replan: false    # IRIS/HBC: re-plan in the background, a few steps early

The operator confirms on stdin before anything moves (``--yes`` skips it). While it runs:
Ctrl-C stops the loop cleanly (arm stopped, the partial episode written, exit 130);
Ctrl-\\ (SIGQUIT) latches the shield's e-stop (every further command refused).

``--checkpoint scripted:KIND`` drives the arm with the task's scripted operator instead of a
policy: a dry run of the arm, shield and recording path before a policy touches it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

HELP = "run a trained policy on an arm through the safety shield (records a demo folder)"


@dataclass
class DeployConfig:
    arm: str = ""
    controller: str | None = None
    hz: float | None = None
    max_steps: int = 400
    episodes: int = 1
    host: str | None = None
    port: int | None = None
    seed: int = 0
    stop_on_success: bool = True
    #: SCHED_FIFO priority of the control loop (0: normal scheduling). Real arms: e.g. 50.
    rt_priority: int = 0
    #: IRIS/HBC: plan subgoals in a background thread a few steps early (no overruns at
    #: re-plans; the goal comes from a slightly older observation). See robolearn/hal/pipelined.py.
    pipelined_replan: bool = False


def add_arguments(p) -> None:
    p.add_argument("launch", help="launch YAML with a deploy: section")
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint folder (or scripted:KIND for a dry run)")
    p.add_argument("--yes", action="store_true", help="skip the operator confirmation")
    p.add_argument("--max-steps", type=int, default=None, help="override deploy.max_steps")
    p.add_argument("--episodes", type=int, default=None, help="override deploy.episodes")
    p.add_argument("--out", default=None, help="demo folder for the recording (default runs/deploy/<launch>-<time>)")
    p.add_argument("--log-level", default="WARNING")


def load_deploy(path: str) -> tuple[DeployConfig, dict]:
    from robolearn.config import ConfigError, from_dict, load_yaml

    raw = load_yaml(path)
    section = raw.get("deploy")
    if not isinstance(section, dict) or not section:
        raise ConfigError(path, "deploy", "missing: the launch file needs a deploy: {arm: ..., ...} section")
    cfg = from_dict(DeployConfig, section, f"{path}: deploy")
    from robolearn.hal.factory import BACKENDS

    if cfg.arm not in BACKENDS:
        raise ConfigError(path, "deploy.arm", f"expected one of {', '.join(BACKENDS)}, got {cfg.arm!r}")
    if cfg.max_steps <= 0 or cfg.episodes <= 0:
        raise ConfigError(path, "deploy.max_steps", "max_steps and episodes must be positive")
    if cfg.hz is not None and not cfg.hz > 0:
        raise ConfigError(path, "deploy.hz", f"expected a positive rate, got {cfg.hz}")
    return cfg, raw


class _ScriptedPolicy:
    """The task's scripted operator behind the Policy interface (for dry runs)."""

    def __init__(self, task: str, kind: str, env, seed: int):
        import numpy as np

        from robolearn.tasks.base import make_operator

        self._op = make_operator(task, env, kind, np.random.default_rng(seed))
        self.meta = {"task": task, "obs_keys": list(env.obs_spec), "action_dim": 7, "control_hz": float(env.control_hz), "env": {}}
        self.current_goal = None

    def reset(self) -> None:
        self._op.reset()

    def act(self, obs):
        return self._op.act(obs)


def _confirm(text: str) -> bool:
    print(text, flush=True)
    try:
        answer = input("Type 'yes' to start the arm: ")
    except EOFError:
        return False
    return answer.strip().lower() in ("yes", "y")


def run(args) -> int:
    import json
    import logging
    import signal
    import time
    from pathlib import Path

    from robolearn.config import ConfigError
    from robolearn.data.format import DemoMeta, DemoWriter
    from robolearn.data.recorder import EpisodeRecorder
    from robolearn.hal.arm import ArmError
    from robolearn.hal.factory import controller_file, load_controller
    from robolearn.hal.loop import ControlLoop
    from robolearn.hal.shield import SafetyShield, ShieldError
    from robolearn.tasks.task_arm import make_task_arm

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    cfg, raw = load_deploy(args.launch)
    max_steps = args.max_steps or cfg.max_steps
    episodes = args.episodes or cfg.episodes
    ctl_path = controller_file(cfg.arm, cfg.controller)
    ctl = load_controller(ctl_path)

    scripted = str(args.checkpoint).startswith("scripted:")
    policy = None
    if not scripted:
        from robolearn.policy import load_policy

        policy = load_policy(args.checkpoint)
    meta = dict(getattr(policy, "meta", None) or {})
    task = raw.get("task") or meta.get("task")
    env_overrides = dict(meta.get("env") or {})
    env_overrides.update(raw.get("env") or {})
    params = {}
    if cfg.arm == "remote":
        params = {"host": cfg.host, "port": cfg.port}
    arm = make_task_arm(cfg.arm, ctl_path, task=task, env_overrides=env_overrides, seed=cfg.seed, **params)
    if scripted:
        if not hasattr(arm, "env"):
            raise ConfigError(args.launch, "--checkpoint", "scripted:KIND needs a simulated task arm (pybullet or robosuite with a task)")
        policy = _ScriptedPolicy(task, str(args.checkpoint).split(":", 1)[1], arm.env, cfg.seed)
        meta = policy.meta
    hz = float(cfg.hz or ctl.get("control_hz") or ctl.get("control_freq") or meta.get("control_hz") or 20.0)
    if meta.get("control_hz") and abs(float(meta["control_hz"]) - hz) > 1e-6:
        logging.getLogger("robolearn.deploy").warning(
            "policy was trained at %s Hz but the loop runs at %s Hz: its actions will mean different motions", meta["control_hz"], hz)

    spec = arm.spec
    missing = [k for k in meta.get("obs_keys", []) if k not in spec.obs_spec]
    if missing:
        raise ConfigError(args.launch, "deploy.arm", f"the policy needs observation keys {missing} that arm {spec.name!r} does not provide "
                          f"(it has {sorted(spec.obs_spec)})")
    if int(meta.get("action_dim", spec.action_spec.dim)) != spec.action_spec.dim:
        raise ConfigError(args.launch, "deploy.arm", f"policy action_dim {meta.get('action_dim')} != arm's {spec.action_spec.dim}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / "deploy" / f"{Path(args.launch).stem}-{stamp}"
    shield = arm if isinstance(arm, SafetyShield) else None
    box = (f"box {shield.config.workspace_low} .. {shield.config.workspace_high} m, step <= {shield.config.max_step_pos} m / "
           f"{shield.config.max_step_rot} rad, watchdog {shield.config.watchdog_ms:g} ms") if shield and shield.config.enabled else "OFF"
    plan = (f"deploy {args.checkpoint} ({meta.get('algo', 'policy') if not scripted else 'scripted operator'}) on arm {spec.name} "
            f"[{cfg.arm}, {ctl_path}]\n  {episodes} episode(s) x <= {max_steps} steps at {hz:g} Hz; shield: {box}\n  recording to {out}")
    if not args.yes and not _confirm(plan):
        print("robolearn deploy: not confirmed; nothing was moved")
        return 1
    if args.yes:
        print(plan, flush=True)

    pipe = None
    if cfg.pipelined_replan and not scripted:
        from robolearn.hal.pipelined import PipelinedReplanPolicy

        pipe = PipelinedReplanPolicy(policy, hz)
        if not pipe.supported:
            print("robolearn deploy: pipelined_replan ignored: this policy does not re-plan subgoals", flush=True)
        policy = pipe
    demo_meta = DemoMeta(
        task=str(task or cfg.arm), control_hz=hz, obs_spec=dict(spec.obs_spec), action_spec=spec.action_spec,
        robot=spec.name, controller=str(ctl_path), source=f"deploy:{args.checkpoint}",
        extra={"launch": str(args.launch), "deploy": asdict(cfg), "checkpoint": str(args.checkpoint)},
    )
    loop = None

    def _sigterm(signum, frame):
        raise KeyboardInterrupt

    def _estop(signum, frame):
        # Latch and stop the arm now; the loop's next send is refused (EStopError), which ends
        # the run through the same path as any shield stop: partial episode kept, exit code 3.
        if shield is not None:
            shield.estop()
        elif loop is not None:
            loop.request_stop()

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGQUIT)}
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGQUIT, _estop)
    results = []
    code = 0
    try:
        arm.connect()
        # The recording folder is created once the arm answered: a busy or absent arm leaves none.
        recorder = EpisodeRecorder(DemoWriter(out, demo_meta))
        loop = ControlLoop(arm, policy, hz, recorder=recorder, realtime_priority=cfg.rt_priority or None)
        success_fn = getattr(arm, "success", None) if cfg.stop_on_success else None
        for ep in range(episodes):
            arm.home()
            print(f"episode {ep}: running (Ctrl-C stops, Ctrl-\\ e-stops)", flush=True)
            try:
                stats = loop.run(max_steps=max_steps, stop_when=(lambda o: success_fn()) if callable(success_fn) else None)
            except ShieldError as exc:
                print(f"robolearn deploy: shield stopped the run: {exc}", flush=True)
                stats = None
                code = 3
            except ArmError as exc:
                print(f"robolearn deploy: arm error: {exc}", flush=True)
                stats = None
                code = 4
            if stats is not None:
                results.append(stats)
                print(f"episode {ep}: {stats.summary()}; success {stats.success}; recorded {stats.episode_path}", flush=True)
            if stats is None or stats.stopped_by in ("interrupt", "request_stop"):
                if stats is not None and stats.stopped_by == "interrupt":
                    code = 130
                break
    finally:
        if pipe is not None:
            pipe.close()
        for s, h in old.items():
            signal.signal(s, h)
        try:
            arm.close()
        except ArmError as exc:
            print(f"robolearn deploy: closing the arm failed: {exc}")
    shield_stats = shield.stats.to_dict() if shield is not None else {}
    summary = {
        "checkpoint": str(args.checkpoint), "arm": spec.name, "backend": cfg.arm, "hz": hz, "out": str(out),
        "episodes": [s.to_dict() for s in results],
        "steps": sum(s.steps for s in results),
        "successes": [s.success for s in results],
        "shield": shield_stats,
        "exit_code": code,
    }
    if out.exists():
        (out / "deploy_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    jit = [s.jitter_p99_ms for s in results]
    print(f"deploy summary: {summary['steps']} steps in {len(results)} episode(s); "
          f"shield interventions {shield_stats.get('interventions', 'n/a')}; "
          + (f"jitter p50 {max(s.jitter_p50_ms for s in results):.3f} ms p99 {max(jit):.3f} ms (worst episode); " if jit else "")
          + f"success {[s.success for s in results]}; demo folder {out}", flush=True)
    return code
