"""``robolearn deploy``: a trained policy on the arm a launch file names.

The policy drives the arm through the SafetyShield and the fixed-rate ControlLoop, and the run
is recorded as a demo folder (so every deployment can be inspected, replayed or trained on
later). The launch file's ``deploy:`` section is ``robolearn.launch.DeployConfig``; a launch file
that names a task takes the task's own arm and controller from ``envs/<task>.yaml`` unless it
names another arm.

One control rate: the task's ``control_hz`` (``deploy.hz`` follows it; without a task, the
controller's rate). The arm must run at it and the policy must have been trained at it: a
policy's actions are motions per step, so at another rate they mean other motions. Either
mismatch is refused before anything moves.

While it runs: Ctrl-C stops the loop cleanly (arm stopped, the partial episode written, exit
130); Ctrl-\\ (SIGQUIT) latches the shield's e-stop (every further command refused, exit 3).
``checkpoint="scripted:KIND"`` drives the arm with the task's scripted operator instead of a
policy: a dry run of the arm, shield and recording path before a policy touches it.
"""
from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from robolearn.config import ConfigError, from_dict, load_yaml
from robolearn.launch import DeployConfig, load_launch

log = logging.getLogger("robolearn.deploy")

#: What a shield stop and an arm failure end the run with (the command's exit codes).
EXIT_SHIELD, EXIT_ARM, EXIT_INTERRUPT = 3, 4, 130


@dataclass
class DeployLaunch:
    """A launch file as deploy reads it: the task is optional (else the policy's meta names it)."""

    source: str
    deploy: DeployConfig
    task: str | None = None
    env: dict[str, Any] = field(default_factory=dict)


def load_deploy(path: str) -> DeployLaunch:
    """The launch file's typed deploy section (over the task's defaults when it names a task);
    an unknown arm is a ConfigError naming ``deploy.arm`` and the backends there are."""
    from robolearn.hal.factory import BACKENDS

    raw = load_yaml(path)
    if "task" in raw:
        cfg = load_launch(path)
        launch = DeployLaunch(str(path), cfg.deploy, cfg.task, dict(cfg.env)) if cfg.deploy else None
    else:
        section = raw.get("deploy")
        launch = DeployLaunch(str(path), from_dict(DeployConfig, section, str(path), field_prefix="deploy."),
                              env=dict(raw.get("env") or {})) if isinstance(section, dict) and section else None
    if launch is None:
        raise ConfigError(path, "deploy", "missing: the launch file needs a deploy: {arm: ..., ...} section")
    if launch.deploy.arm not in BACKENDS:
        raise ConfigError(path, "deploy.arm", f"expected one of {', '.join(BACKENDS)}, got {launch.deploy.arm!r}")
    return launch


def with_command_line(cfg: DeployConfig, max_steps: int | None, episodes: int | None) -> DeployConfig:
    """``--max-steps`` / ``--episodes`` over the file's values, held to the same declarations."""
    for flag, key, value in (("--max-steps", "max_steps", max_steps), ("--episodes", "episodes", episodes)):
        if value is not None:
            cfg = replace(cfg, **{key: getattr(from_dict(DeployConfig, {key: value}, flag), key)})
    return cfg


class ScriptedPolicy:
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


def confirm_on_stdin(text: str) -> bool:
    print(text, flush=True)
    try:
        answer = input("Type 'yes' to start the arm: ")
    except EOFError:
        return False
    return answer.strip().lower() in ("yes", "y")


def loop_rate(cfg: DeployConfig, controller: dict, meta: dict) -> float:
    """The task's rate (filled into ``deploy.hz`` by load_launch), else the controller's, else the policy's."""
    return float(cfg.hz or controller.get("control_hz") or controller.get("control_freq") or meta.get("control_hz") or 20.0)


def check_arm_rate(source: str, hz: float, spec, ctl_path: Path) -> None:
    """The arm runs at the loop's rate (a driver paces and watches its commands at its own)."""
    if abs(float(spec.control_hz) - hz) > 1e-6:
        raise ConfigError(source, "deploy.hz", f"the loop runs at {hz:g} Hz but arm {spec.name!r} at {float(spec.control_hz):g} Hz "
                          f"({ctl_path}); the task's control_hz and the arm's rate must agree")


def check_policy_rate(source: str, checkpoint: str, hz: float, meta: dict) -> None:
    """The policy was trained at the loop's rate: its actions are motions per step."""
    trained = meta.get("control_hz")
    if trained and abs(float(trained) - hz) > 1e-6:
        raise ConfigError(checkpoint, "control_hz", f"the policy was trained at {float(trained):g} Hz but the loop runs at {hz:g} Hz "
                          f"({source}): its actions would mean different motions")


def check_policy_fits_arm(source: str, spec, meta: dict) -> None:
    missing = [k for k in meta.get("obs_keys", []) if k not in spec.obs_spec]
    if missing:
        raise ConfigError(source, "deploy.arm", f"the policy needs observation keys {missing} that arm {spec.name!r} does not provide "
                          f"(it has {sorted(spec.obs_spec)})")
    if int(meta.get("action_dim", spec.action_spec.dim)) != spec.action_spec.dim:
        raise ConfigError(source, "deploy.arm", f"policy action_dim {meta.get('action_dim')} != arm's {spec.action_spec.dim}")


def shield_words(shield) -> str:
    if shield is None or not shield.config.enabled:
        return "OFF"
    c = shield.config
    return (f"box {c.workspace_low} .. {c.workspace_high} m, step <= {c.max_step_pos} m / "
            f"{c.max_step_rot} rad, watchdog {c.watchdog_ms:g} ms")


def run_episodes(arm, loop, cfg: DeployConfig) -> tuple[list, int]:
    """Episode after episode until done, a stop, or an error; the stats kept and the exit code."""
    from robolearn.hal.arm import ArmError
    from robolearn.hal.shield import ShieldError

    results, code = [], 0
    success_fn = getattr(arm, "success", None) if cfg.stop_on_success else None
    for ep in range(cfg.episodes):
        arm.home()
        print(f"episode {ep}: running (Ctrl-C stops, Ctrl-\\ e-stops)", flush=True)
        try:
            stats = loop.run(max_steps=cfg.max_steps, stop_when=(lambda o: success_fn()) if callable(success_fn) else None)
        except ShieldError as exc:
            print(f"robolearn deploy: shield stopped the run: {exc}", flush=True)
            stats, code = None, EXIT_SHIELD
        except ArmError as exc:
            print(f"robolearn deploy: arm error: {exc}", flush=True)
            stats, code = None, EXIT_ARM
        if stats is not None:
            results.append(stats)
            print(f"episode {ep}: {stats.summary()}; success {stats.success}; recorded {stats.episode_path}", flush=True)
        if stats is None or stats.stopped_by in ("interrupt", "request_stop"):
            if stats is not None and stats.stopped_by == "interrupt":
                code = EXIT_INTERRUPT
            break
    return results, code


def report(summary: dict, results: list, out: Path) -> None:
    if out.exists():
        (out / "deploy_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    jit = [s.jitter_p99_ms for s in results]
    print(f"deploy summary: {summary['steps']} steps in {len(results)} episode(s); "
          f"shield interventions {summary['shield'].get('interventions', 'n/a')}; "
          + (f"jitter p50 {max(s.jitter_p50_ms for s in results):.3f} ms p99 {max(jit):.3f} ms (worst episode); " if jit else "")
          + f"success {[s.success for s in results]}; demo folder {out}", flush=True)


def deploy(launch_path: str, checkpoint: str, *, max_steps: int | None = None, episodes: int | None = None,
           out: str | None = None, confirm: Callable[[str], bool] | None = confirm_on_stdin) -> int:
    """Run ``checkpoint`` on the launch file's arm; the exit code (0, 1 not confirmed, 3 shield,
    4 arm, 130 interrupted). ``confirm=None`` starts without asking (``--yes``)."""
    from robolearn.data.format import DemoMeta, DemoWriter
    from robolearn.data.recorder import EpisodeRecorder
    from robolearn.hal.arm import ArmError
    from robolearn.hal.factory import controller_file, load_controller
    from robolearn.hal.loop import ControlLoop
    from robolearn.hal.shield import SafetyShield
    from robolearn.tasks.task_arm import make_task_arm

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    launch = load_deploy(launch_path)
    cfg = with_command_line(launch.deploy, max_steps, episodes)
    ctl_path = controller_file(cfg.arm, cfg.controller)
    ctl = load_controller(ctl_path)

    scripted = str(checkpoint).startswith("scripted:")
    policy = None
    if not scripted:
        from robolearn.policy import load_policy

        policy = load_policy(checkpoint)
    meta = dict(getattr(policy, "meta", None) or {})
    task = launch.task or meta.get("task")
    env_overrides = {**dict(meta.get("env") or {}), **launch.env}
    params = {"host": cfg.host, "port": cfg.port} if cfg.arm == "remote" else {}
    arm = make_task_arm(cfg.arm, ctl_path, task=task, env_overrides=env_overrides, seed=cfg.seed, **params)
    hz = loop_rate(cfg, ctl, meta)
    spec = arm.spec
    check_arm_rate(launch_path, hz, spec, ctl_path)
    if scripted:
        if not hasattr(arm, "env"):
            raise ConfigError(launch_path, "--checkpoint", "scripted:KIND needs a simulated task arm (pybullet or robosuite with a task)")
        policy = ScriptedPolicy(task, str(checkpoint).split(":", 1)[1], arm.env, cfg.seed)
        meta = policy.meta
    check_policy_rate(launch_path, str(checkpoint), hz, meta)
    check_policy_fits_arm(launch_path, spec, meta)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out) if out else Path("runs") / "deploy" / f"{Path(launch_path).stem}-{stamp}"
    shield = arm if isinstance(arm, SafetyShield) else None
    plan = (f"deploy {checkpoint} ({meta.get('algo', 'policy') if not scripted else 'scripted operator'}) on arm {spec.name} "
            f"[{cfg.arm}, {ctl_path}]\n  {cfg.episodes} episode(s) x <= {cfg.max_steps} steps at {hz:g} Hz; "
            f"shield: {shield_words(shield)}\n  recording to {out_dir}")
    if confirm is not None and not confirm(plan):
        print("robolearn deploy: not confirmed; nothing was moved")
        return 1
    if confirm is None:
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
        robot=spec.name, controller=str(ctl_path), source=f"deploy:{checkpoint}",
        extra={"launch": str(launch_path), "deploy": asdict(cfg), "checkpoint": str(checkpoint)},
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
    results, code = [], 0
    try:
        arm.connect()
        # The recording folder is created once the arm answered: a busy or absent arm leaves none.
        recorder = EpisodeRecorder(DemoWriter(out_dir, demo_meta))
        loop = ControlLoop(arm, policy, hz, recorder=recorder, realtime_priority=cfg.rt_priority or None)
        results, code = run_episodes(arm, loop, cfg)
    finally:
        if pipe is not None:
            pipe.close()
        for s, h in old.items():
            signal.signal(s, h)
        try:
            arm.close()
        except ArmError as exc:
            print(f"robolearn deploy: closing the arm failed: {exc}")
    summary = {
        "checkpoint": str(checkpoint), "arm": spec.name, "backend": cfg.arm, "hz": hz, "out": str(out_dir),
        "episodes": [s.to_dict() for s in results],
        "steps": sum(s.steps for s in results),
        "successes": [s.success for s in results],
        "shield": shield.stats.to_dict() if shield is not None else {},
        "exit_code": code,
    }
    report(summary, results, out_dir)
    return code
