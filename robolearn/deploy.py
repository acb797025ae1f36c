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

Cameras and perception: ``deploy.cameras`` adds camera views to the controller file's (one
``CameraArm`` inside the shield); ``deploy.perception`` (``robolearn.launch.DeployPerception``)
has the policy's ``object`` estimated from one view's frames (``robolearn.perceived``), never
read from the arm. With ``arm: remote`` the view may instead be a camera on the robot host that
the arm server serves (its frames arrive in the RemoteArm's observations). Before the arm takes
control, deploy refuses in one line a perception view that is neither configured nor served and
a calibration file that is missing, unreadable, stale, of another camera or resolution (for a
local view before the arm is built; for a remote arm once it is built, which takes no control,
from the served arm's spec: INFO, which needs none); once the arm is built (not connected), a policy
whose observation keys the arm, its cameras and perception do not all produce, naming what
produces each key there is.

Seeds: episode ``i`` of a run with ``deploy.seed`` S follows the runtime's one rule,
``deployment_seeds(S, i)``: a simulated task's reset and the policy's own sampling.

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

from robolearn.collect import OperatorActor
from robolearn.config import ConfigError, from_dict, load_yaml
from robolearn.hal.cameras.config import CamerasConfig
from robolearn.hal.loop import interrupts_raise
from robolearn.launch import DeployConfig, load_launch, resolve_path

log = logging.getLogger("robolearn.deploy")

#: What a shield stop and an arm failure end the run with (the command's exit codes).
EXIT_SHIELD, EXIT_ARM, EXIT_INTERRUPT = 3, 4, 130


@dataclass
class DeployLaunch:
    """A launch file as deploy reads it: the task is optional (else the policy's meta names it).
    ``cameras``: its ``deploy.cameras`` section, typed (None when it names none)."""

    source: str
    deploy: DeployConfig
    task: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    cameras: CamerasConfig | None = None


def load_deploy(path: str) -> DeployLaunch:
    """The launch file's typed deploy section (over the task's defaults when it names a task);
    an unknown arm is a ConfigError naming ``deploy.arm`` and the backends there are, a bad
    ``deploy.cameras`` setting names its field under ``deploy.``."""
    from robolearn.hal.cameras.config import cameras_config
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
    if launch.deploy.cameras is not None:
        try:
            launch.cameras = cameras_config(launch.deploy.cameras, str(path))
        except ConfigError as exc:
            raise ConfigError(exc.source, f"deploy.{exc.field}", exc.problem) from None
    return launch


def _absolute_calibration(view: Any, base: Path | None) -> Any:
    """``view`` with its calibration path made absolute: relative to ``base`` (a controller
    file's folder), or by the launch file rule (working directory, then repository root)."""
    if view.calibration is None:
        return view
    path = Path(view.calibration).expanduser()
    if not path.is_absolute():
        path = base / path if base is not None else resolve_path(path)
    return replace(view, calibration=str(path.absolute()))


def deployment_cameras(launch: DeployLaunch, controller: dict, ctl_path: Path) -> CamerasConfig | None:
    """The controller file's camera views and the launch file's as one section (the launch
    file's frame-age settings win), each view's calibration path resolved by its own file's
    rule; a view named in both files is refused. None when neither names a camera."""
    from robolearn.hal.cameras.config import cameras_config

    section = controller.get("cameras")
    base = cameras_config(section, str(ctl_path)) if section else None
    if launch.cameras is None and base is None:
        return None
    views = {name: _absolute_calibration(v, Path(ctl_path).parent) for name, v in (base.views if base else {}).items()}
    for name, view in (launch.cameras.views if launch.cameras else {}).items():
        if name in views:
            raise ConfigError(launch.source, f"deploy.cameras.views.{name}", f"is also a view of {ctl_path}; name each camera once")
        views[name] = _absolute_calibration(view, None)
    return replace(launch.cameras or base, views=views)


def with_command_line(cfg: DeployConfig, max_steps: int | None, episodes: int | None) -> DeployConfig:
    """``--max-steps`` / ``--episodes`` over the file's values, held to the same declarations."""
    for flag, key, value in (("--max-steps", "max_steps", max_steps), ("--episodes", "episodes", episodes)):
        if value is not None:
            cfg = replace(cfg, **{key: getattr(from_dict(DeployConfig, {key: value}, flag), key)})
    return cfg


class ScriptedPolicy(OperatorActor):
    """The task's scripted operator behind the Policy interface (for dry runs): each episode's
    operator is seeded with the episode's actor seed, as a policy's sampling is."""

    def __init__(self, task: str, kind: str, env):
        super().__init__(task, kind, env)
        self.reset(0)  # an unknown kind is refused here, before anything moves
        self.meta = {"task": task, "obs_keys": list(env.obs_spec), "action_dim": 7, "control_hz": float(env.control_hz), "env": {}}
        self.current_goal = None


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


def producers(spec, cameras: CamerasConfig | None, perception: Any = None) -> dict[str, str]:
    """Each observation key the configured arm, cameras and perception produce -> what produces it."""
    camera_keys = {}
    for name, view in (cameras.views.items() if cameras is not None else ()):
        for key in (f"{name}_image", f"{name}_image_age_s") + ((f"{name}_depth",) if view.depth else ()):
            camera_keys[key] = f"camera {name}"
    out = {k: camera_keys.get(k, f"arm {spec.name}") for k in spec.obs_spec}
    if perception is not None:  # on a remote arm's served view: "perception (marker on served camera front)"
        out["object"] = f"perception ({perception.estimator} on {perception.camera} {perception.view})"
    return out


def _missing_field(key: str) -> str:
    if key.endswith(("_image", "_depth", "_image_age_s")):
        return "deploy.cameras"
    return "deploy.perception" if key == "object" else "deploy.arm"


def check_policy_fits_arm(source: str, spec, meta: dict, made: dict[str, str] | None = None,
                          shapes: dict[str, tuple] | None = None) -> None:
    """Every observation key the policy reads is produced by the arm, a camera or perception
    (``made``: ``producers``), in the shape it was trained on (``shapes``: the checkpoint's own
    keys and shapes; else the keys of ``meta``); the action sizes agree."""
    made = made if made is not None else {k: f"arm {spec.name}" for k in spec.obs_spec}
    missing = [k for k in (list(shapes) if shapes else meta.get("obs_keys", [])) if k not in made]
    if missing:
        by = {}
        for key, who in made.items():
            by.setdefault(who, []).append(key)
        have = "; ".join(f"{who}: {', '.join(sorted(keys))}" for who, keys in by.items())
        raise ConfigError(source, _missing_field(missing[0]), f"the policy needs observation keys {missing} that nothing "
                          f"configured produces (available: {have})")
    for key, want in (shapes or {}).items():
        got = tuple(spec.obs_spec[key].shape) if key in spec.obs_spec else None
        if got is not None and tuple(want) != got:
            raise ConfigError(source, _missing_field(key), f"the policy reads {key!r} as shape {tuple(want)}, but {made[key]} "
                              f"gives {got}")
    if int(meta.get("action_dim", spec.action_spec.dim)) != spec.action_spec.dim:
        raise ConfigError(source, "deploy.arm", f"policy action_dim {meta.get('action_dim')} != arm's {spec.action_spec.dim}")


def recorded_spec(spec, record_images: bool) -> dict:
    """The observation keys a deployment records: all of them, or all but the camera frames."""
    return {k: v for k, v in spec.obs_spec.items() if record_images or not (v.is_image or k.endswith("_depth"))}


def shield_words(shield) -> str:
    if shield is None or not shield.config.enabled:
        return "OFF"
    c = shield.config
    return (f"box {c.workspace_low} .. {c.workspace_high} m, step <= {c.max_step_pos} m / "
            f"{c.max_step_rot} rad, watchdog {c.watchdog_ms:g} ms")


def run_episodes(arm, loop, cfg: DeployConfig, policy: Any = None) -> tuple[list, int]:
    """Episode after episode until done, a stop, or an error; the stats kept and the exit code.

    Episode ``i``'s policy is reset with ``deployment_seeds(cfg.seed, i).actor`` (the loop is
    built with ``reset_source=False``): the seeding rule that resets a simulated task arm's
    episode ``i``. An arm with perception also ends an episode once its object is lost."""
    from robolearn.hal.arm import ArmError
    from robolearn.hal.shield import ShieldError
    from robolearn.perceived import PerceivedArm
    from robolearn.runtime.seeds import deployment_seeds

    results, code = [], 0
    success_fn = getattr(arm, "success", None) if cfg.stop_on_success else None
    lost = arm.lost if isinstance(arm, PerceivedArm) else None
    ends = [f for f in (success_fn if callable(success_fn) else None,
                        (lambda: lost.lost) if lost is not None else None) if f is not None]
    stop_when = (lambda o: any(f() for f in ends)) if ends else None
    for ep in range(cfg.episodes):
        arm.home()
        if policy is not None:
            policy.reset(deployment_seeds(cfg.seed, ep).actor)
        print(f"episode {ep}: running (Ctrl-C stops, Ctrl-\\ e-stops)", flush=True)
        try:
            stats = loop.run(max_steps=cfg.max_steps, stop_when=stop_when)
        except ShieldError as exc:
            print(f"robolearn deploy: shield stopped the run: {exc}", flush=True)
            stats, code = None, EXIT_SHIELD
        except ArmError as exc:
            print(f"robolearn deploy: arm error: {exc}", flush=True)
            stats, code = None, EXIT_ARM
        if stats is not None:
            results.append(stats)
            seen = getattr(arm, "perception_stats", None)
            words = "" if seen is None else (f"; perception {seen.frames} frames, {seen.lost_frames} without a fresh estimate"
                                             + (f", {seen.lost_reason}" if seen.lost_reason else ""))
            print(f"episode {ep}: {stats.summary()}; success {stats.success}{words}; recorded {stats.episode_path}", flush=True)
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


@dataclass
class LaunchArm:
    """The arm a launch file names, built (not connected): ``arm`` is what a loop drives (a
    ``PerceivedArm`` over the shield when the file has ``deploy.perception``), ``made`` what
    produces each of its observation keys (``producers``)."""

    arm: Any
    shield: Any
    cameras: CamerasConfig | None
    perception: Any
    made: dict[str, str]


def launch_arm(launch: DeployLaunch, cfg: DeployConfig, *, task: str | None, env_overrides: dict[str, Any],
               seed: int | None, hz: float | None = None, controller: tuple[Path, dict] | None = None) -> LaunchArm:
    """The launch file's arm with the controller file's and ``deploy.cameras``' views inside its
    shield and, with ``deploy.perception``, ``object`` estimated from a camera: what deploy and
    teleop drive. The perception view and calibration file are checked before the arm takes
    control: before anything is built, except on a remote arm, which is built first (building
    it takes no control) so that a view its server serves is found in its spec (INFO, no control).
    ``seed``: a simulated task's first reset (None: each episode draws its own); ``hz``: the loop's
    rate (the arm's when None), which the lost-marker bound counts frames at."""
    from robolearn.hal.factory import BACKENDS, controller_file, load_controller
    from robolearn.hal.shield import SafetyShield
    from robolearn.tasks.task_arm import make_task_arm

    ctl_path, ctl = controller if controller is not None else (controller_file(cfg.arm, cfg.controller), None)
    ctl = ctl if ctl is not None else load_controller(ctl_path)
    cameras = deployment_cameras(launch, ctl, ctl_path)
    remote = cfg.arm == "remote"

    def build():
        params = {"host": cfg.host, "port": cfg.port} if remote else {}
        return make_task_arm(cfg.arm, ctl_path, task=task, env_overrides=env_overrides, seed=seed,
                             cameras=(cameras, launch.source) if cameras is not None else None, **params)

    arm = build() if remote else None
    perception = None
    if cfg.perception is not None:  # every file it names is checked before the arm takes control
        from robolearn.perceived import plan_perception

        simulated = bool(task) and BACKENDS[cfg.arm].task_scene
        served = (lambda: arm.spec) if remote else None
        perception = plan_perception(cfg.perception, cameras, launch.source, task, simulated=simulated, served=served)
    arm = arm if arm is not None else build()
    shield = arm if isinstance(arm, SafetyShield) else None
    hz = float(hz or arm.spec.control_hz)
    check_arm_rate(launch.source, hz, arm.spec, ctl_path)
    made = producers(arm.spec, cameras, perception)
    if perception is not None:
        from robolearn.perceived import make_perceived_arm

        arm = make_perceived_arm(arm, perception, hz, launch.source)
    return LaunchArm(arm=arm, shield=shield, cameras=cameras, perception=perception, made=made)


def deploy(launch_path: str, checkpoint: str, *, max_steps: int | None = None, episodes: int | None = None,
           out: str | None = None, confirm: Callable[[str], bool] | None = confirm_on_stdin) -> int:
    """Run ``checkpoint`` on the launch file's arm; the exit code (0, 1 not confirmed, 3 shield,
    4 arm, 130 interrupted). ``confirm=None`` starts without asking (``--yes``)."""
    from robolearn.data.format import DemoMeta, DemoWriter
    from robolearn.data.recorder import EpisodeRecorder
    from robolearn.hal.arm import ArmError
    from robolearn.hal.factory import controller_file, load_controller
    from robolearn.hal.loop import ControlLoop

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
    hz = loop_rate(cfg, ctl, meta)
    built = launch_arm(launch, cfg, task=task, env_overrides=env_overrides, seed=cfg.seed, hz=hz, controller=(ctl_path, ctl))
    arm, shield, perception = built.arm, built.shield, built.perception
    spec = arm.spec
    if scripted:
        if not hasattr(arm, "env"):
            raise ConfigError(launch_path, "--checkpoint", "scripted:KIND needs a simulated task arm (pybullet or robosuite with a task)")
        policy = ScriptedPolicy(task, str(checkpoint).split(":", 1)[1], arm.env)
        meta = policy.meta
    check_policy_rate(launch_path, str(checkpoint), hz, meta)
    check_policy_fits_arm(launch_path, spec, meta, built.made, getattr(policy, "obs_shapes", None))

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out) if out else Path("runs") / "deploy" / f"{Path(launch_path).stem}-{stamp}"
    plan = (f"deploy {checkpoint} ({meta.get('algo', 'policy') if not scripted else 'scripted operator'}) on arm {spec.name} "
            f"[{cfg.arm}, {ctl_path}]\n  {cfg.episodes} episode(s) x <= {cfg.max_steps} steps at {hz:g} Hz; "
            f"shield: {shield_words(shield)}\n"
            + (f"  perception: {perception.words()}\n" if perception is not None else "")
            + f"  recording to {out_dir}")
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
        task=str(task or cfg.arm), control_hz=hz, obs_spec=recorded_spec(spec, cfg.record_images), action_spec=spec.action_spec,
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
    with interrupts_raise():  # Ctrl-C stops the arm even where the shell started us with SIGINT ignored
        try:
            arm.connect()
            # The recording folder is created once the arm answered: a busy or absent arm leaves none.
            recorder = EpisodeRecorder(DemoWriter(out_dir, demo_meta))
            loop = ControlLoop(arm, policy, hz, recorder=recorder, realtime_priority=cfg.rt_priority or None, reset_source=False)
            results, code = run_episodes(arm, loop, cfg, policy)
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
    if perception is not None:
        summary["perception"] = {"estimator": perception.estimator, "view": perception.view, "hold_s": perception.hold_s,
                                 "calibration": str(perception.calibration_path) if perception.calibration_path else None,
                                 "episodes": [e.as_dict() for e in arm.episode_stats]}
    report(summary, results, out_dir)
    return code
