"""``robolearn teleop LAUNCH.yaml --device keyboard --out DIR``: drive an arm by hand and record demos.

The arm comes from the launch file's ``deploy`` section (``arm``, ``controller``, ``hz``;
overridable with --arm/--controller/--hz), built by the HAL's ``make_arm`` and therefore
always behind the SafetyShield its controller file describes. A launch file with
``deploy.cameras`` or ``deploy.perception`` gets the arm ``robolearn deploy`` would drive
(those cameras recorded, ``object`` from the perception camera). The loop runs at the task's
rate. Keys (keyboard device): Enter start, v save, x discard, y/n mark success/failure,
Q quit; w/s a/d e/q translate, j/l i/k u/o rotate, space toggles the gripper. An existing
--out folder is resumed (same task and spec, next episode index); a mismatch is refused, and
so is a folder another process is writing. Settings that differ from the folder's (another
launch file, arm or device) are recorded per episode in meta.json (``extra.appends``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "teleoperate an arm and record demos"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("launch", help="launch YAML (task, env, deploy: {arm, controller, hz})")
    p.add_argument("--device", choices=("keyboard", "spacemouse", "gamepad"), default="keyboard")
    p.add_argument("--out", required=True, help="demo folder to record into (created, or resumed)")
    p.add_argument("--device-config", default=None, help="YAML with keyboard: / spacemouse: sections (scales, deadzone, ...)")
    p.add_argument("--arm", default=None, help="arm backend (overrides deploy.arm; default noop)")
    p.add_argument("--controller", default=None, help="controller YAML (overrides deploy.controller)")
    p.add_argument("--hz", type=float, default=None, help="loop rate (default deploy.hz, else the arm's control rate)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode before asking to save or discard")
    p.add_argument("--max-episodes", type=int, default=None, help="stop after saving this many episodes")
    p.add_argument("--seed", type=int, default=None, help="seed of the task's reset distribution (simulated arms)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from robolearn.launch import load_launch
    from robolearn.tasks.task_arm import make_task_arm

    cfg = load_launch(args.launch)
    deploy = dataclasses.asdict(cfg.deploy) if cfg.deploy else {}
    backend = args.arm or deploy.get("arm") or "noop"
    controller = args.controller or deploy.get("controller")
    if cfg.deploy is not None and (cfg.deploy.cameras or cfg.deploy.perception):
        # The launch file's cameras and perception as deploy builds them: demos record what the policy will see.
        from robolearn.deploy import launch_arm, load_deploy

        launch = load_deploy(args.launch)
        own = dataclasses.replace(launch.deploy, arm=backend, controller=controller)
        arm = launch_arm(launch, own, task=cfg.task, env_overrides=cfg.env, seed=args.seed, hz=args.hz or deploy.get("hz")).arm
    else:
        arm = make_task_arm(backend, controller, task=cfg.task, env_overrides=cfg.env, seed=args.seed)
    try:
        summary = _session(args, cfg, arm, backend, controller, deploy)
    finally:
        arm.close()
    print("\n" + json.dumps(summary), flush=True)
    return 0


def _session(args: argparse.Namespace, cfg, arm, backend: str, controller, deploy: dict) -> dict:
    from robolearn.config import ConfigError, load_yaml
    from robolearn.data.format import META_NAME, DemoFormatError, DemoWriter, read_meta
    from robolearn.hal.factory import controller_file
    from robolearn.teleop.devices import HELP_LINE, make_device
    from robolearn.teleop.session import SessionConfig, TeleopSession, meta_for

    hz = args.hz or deploy.get("hz") or arm.spec.control_hz
    if not isinstance(hz, (int, float)) or not hz > 0:
        raise ConfigError(args.launch, "deploy.hz", f"expected a positive rate, got {hz!r}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError("--max-steps", "max_steps", f"expected >= 1, got {args.max_steps}")
    meta = meta_for(arm, cfg.task, hz, source=f"teleop:{args.device}", controller=str(controller_file(backend, controller)),
                    extra={"env": dict(cfg.env), "arm": backend, "launch": str(args.launch)})
    out = Path(args.out)
    if (out / META_NAME).exists():  # refuse a folder of another task or spec before anything moves
        why = read_meta(out).compatible_with(meta)
        if why:
            raise DemoFormatError(out / META_NAME, "meta", f"cannot append to this folder: {why}")
    settings = load_yaml(args.device_config) if args.device_config else None
    device = make_device(args.device, settings, source=args.device_config or "device config")
    try:
        # Created only once the device works; holds the folder's lock for the session, so a
        # second recorder into the same folder is refused before its arm moves.
        with DemoWriter(out, meta) as writer:
            arm.connect()
            print(f"teleop: {backend} arm, task {cfg.task}, {hz:g} Hz, recording into {args.out} "
                  f"(next episode {writer.next_index})\n{HELP_LINE}", flush=True)
            session = TeleopSession(arm, device, writer, SessionConfig(hz=float(hz), max_steps=args.max_steps,
                                                                       max_episodes=args.max_episodes))
            summary = session.run()
    finally:
        device.close()
    return summary
