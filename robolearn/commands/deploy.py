"""``robolearn deploy LAUNCH.yaml --checkpoint CKPT [--yes] [--max-steps N] [--out DIR]``.

Runs a trained policy on the arm the launch file names, through the SafetyShield and the
fixed-rate ControlLoop, and records the run as a demo folder. The logic lives in
``robolearn.deploy``; this module only parses arguments. The launch file's ``deploy`` section
(``robolearn.launch.DeployConfig``; a task's own arm and controller come from ``envs/<task>.yaml``)::

    deploy:
      arm: pybullet              # noop | pybullet | robosuite | remote | ur | franka
      controller: controllers/pybullet_panda.yaml   # default: the arm's file
      hz: 20                     # default: the task's control_hz (without a task: the controller's)
      max_steps: 400
      episodes: 1
      host: 127.0.0.1            # remote only (default: the controller's params)
      port: 5555
      seed: 0                    # simulated scenes: reset seed of the first episode
      stop_on_success: true      # when the arm or task can tell success
      rt_priority: 0             # SCHED_FIFO priority of the loop (needs root/CAP_SYS_NICE)
      pipelined_replan: false    # IRIS/HBC: re-plan in the background, a few steps early
      record_images: true        # keep camera frames in the recording
      cameras:                   # views beside the controller file's (robolearn/hal/cameras/config.py)
        views:
          front: {type: realsense, width: 640, height: 480, fps: 30}
      perception:                # the policy's object from a camera (robolearn/perceived.py)
        estimator: marker        # or ground_truth (simulated tasks: the control)
        view: front
        marker: {size_m: 0.03, markers: [{id: 0, position: [0, 0, 0.02]}]}   # default: the simulated task's own
        calibration: controllers/calibration/ur5e_front.yaml   # intrinsics + extrinsic (frame: base)
        hold_s: 0.5              # an unseen marker's last pose stands in this long; then hold and fail
        max_calibration_age_days: 30

Before anything moves, a policy that reads a key the arm, its cameras and perception do not
produce is refused (naming what produces each one), and so is a perception view that is not
configured or a calibration file that is missing, unreadable, stale, or for another camera or
resolution. Examples: ``launch/deploy_robosuite_lift_camera.yaml`` (simulated),
``launch/deploy_ur5e_realsense.yaml`` (a real cell).

The operator confirms on stdin before anything moves (``--yes`` skips it). While it runs:
Ctrl-C stops the loop cleanly (arm stopped, the partial episode written, exit 130);
Ctrl-\\ (SIGQUIT) latches the shield's e-stop (every further command refused).

``--checkpoint scripted:KIND`` drives the arm with the task's scripted operator instead of a
policy: a dry run of the arm, shield and recording path before a policy touches it.
"""
from __future__ import annotations

HELP = "run a trained policy on an arm through the safety shield (records a demo folder)"


def add_arguments(p) -> None:
    p.add_argument("launch", help="launch YAML with a deploy: section (or a task whose envs/<task>.yaml has one)")
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint folder (or scripted:KIND for a dry run)")
    p.add_argument("--yes", action="store_true", help="skip the operator confirmation")
    p.add_argument("--max-steps", type=int, default=None, help="override deploy.max_steps")
    p.add_argument("--episodes", type=int, default=None, help="override deploy.episodes")
    p.add_argument("--out", default=None, help="demo folder for the recording (default runs/deploy/<launch>-<time>)")
    p.add_argument("--log-level", default="WARNING")


def run(args) -> int:
    import logging

    from robolearn.deploy import confirm_on_stdin, deploy

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return deploy(args.launch, args.checkpoint, max_steps=args.max_steps, episodes=args.episodes, out=args.out,
                  confirm=None if args.yes else confirm_on_stdin)
