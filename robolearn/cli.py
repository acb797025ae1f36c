"""The ``robolearn`` command. Each subcommand lives in ``robolearn/commands/<name>.py`` and
exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported
only when their subcommand runs, so ``robolearn --help`` stays fast and a missing optional
dependency only affects the command that needs it.

Every failure ends the same way (robolearn/errors.py): one stderr line
``robolearn <command>: error: <message>`` naming the file, field, host or port, and a
non-zero exit (2 bad input, 3 shield stop, 4 arm or connection, 1 anything else).
``--debug`` (before or after the command) or ``ROBOLEARN_DEBUG=1`` re-raises instead,
with the traceback."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Callable

COMMANDS: dict[str, str] = {
    "collect": "robolearn.commands.collect",
    "train": "robolearn.commands.train",
    "eval": "robolearn.commands.evaluate",
    "convert": "robolearn.commands.convert",
    "inspect": "robolearn.commands.inspect",
    "replay": "robolearn.commands.replay",
    "merge": "robolearn.commands.merge",
    "split": "robolearn.commands.split",
    "import-lerobot": "robolearn.commands.import_lerobot",
    "teleop": "robolearn.commands.teleop",
    "serve-arm": "robolearn.commands.serve_arm",
    "deploy": "robolearn.commands.deploy",
    "select": "robolearn.commands.select",
    "calibrate": "robolearn.commands.calibrate",
}

DESCRIPTION = ("Learn robot-manipulation policies from teleoperation demos (IRIS and baselines), evaluate them "
               "closed-loop in simulation, and deploy them to an arm through the safety shield.")

HELP = {
    "collect": "record scripted-operator demos into a demo folder",
    "train": "train a policy from a launch file",
    "eval": "roll a trained policy out closed-loop",
    "convert": "convert between demo folders and robomimic, robosuite raw and LeRobot datasets",
    "inspect": "summarise a demo folder (report + plots)",
    "replay": "replay a recorded episode in simulation",
    "merge": "merge demo folders of the same task",
    "split": "write a train/valid split into meta.json",
    "import-lerobot": "the older name of `convert` for LeRobot datasets",
    "teleop": "teleoperate an arm and record demos",
    "serve-arm": "serve an arm over TCP beside the robot",
    "deploy": "run a trained policy on an arm through the safety shield",
    "select": "score a run's checkpoints on held-out demos, without rollouts",
    "calibrate": "calibrate a camera: intrinsics (ChArUco) and hand-eye extrinsics",
}


DEBUG_FLAG = "--debug"
DEBUG_ENV = "ROBOLEARN_DEBUG"


def split_debug_flag(argv: list[str]) -> tuple[bool, list[str]]:
    """(debug requested, argv without ``--debug``): the flag is global, so it may stand before
    or after the command; tokens after a ``--`` separator are left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != DEBUG_FLAG] + argv[end:]
    from_env = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    return from_env or len(rest) != len(argv), rest


def close_progress_bars() -> None:
    """Finish any progress bar the failed command left open, so that the error is the last
    line on stderr instead of being followed by the bar's final redraw at exit."""
    tqdm_module = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ())):
        bar.close()


#: Arguments naming where a command writes, in the order they are worth naming.
OUTPUT_ARGS = ("out", "json_out", "dst", "video_dir", "json", "video")


def output_of(args: argparse.Namespace | None) -> str | None:
    for name in OUTPUT_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            return value
    return None


#: The exception the main thread reported, so a background thread that died of the very same
#: one (a library re-raising its writer thread's error) does not repeat it after the error line.
REPORTED: list[BaseException] = []


def report_thread_failures(name: str) -> Callable[[], None]:
    """A background thread that dies (a library's writer thread meeting a full disk) prints one
    warning line instead of a traceback. Returns the function restoring the previous hook."""
    import threading

    from robolearn.errors import classify

    previous = threading.excepthook

    def hook(hook_args: threading.ExceptHookArgs) -> None:
        exc = hook_args.exc_value
        if hook_args.exc_type is SystemExit or exc is None or any(exc is r for r in REPORTED):
            return
        f = classify(exc)
        thread = hook_args.thread.name if hook_args.thread is not None else "?"
        print(f"robolearn {name}: warning: background thread {thread} failed: {f.type_name}: {f.message}",
              file=sys.stderr, flush=True)

    threading.excepthook = hook

    def restore() -> None:
        threading.excepthook = previous

    return restore


def report_failure(name: str, exc: BaseException, args: argparse.Namespace | None = None) -> int:
    from robolearn.errors import error_line

    REPORTED.append(exc)
    close_progress_bars()
    line, code = error_line(name, exc, output_of(args))
    print(line, file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    argv_given = argv is not None  # called in process (tests, scripts): leave threading as it was
    debug, argv = split_debug_flag(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="robolearn", description=DESCRIPTION,
                                     epilog="`robolearn COMMAND --help` documents each command; --debug shows tracebacks.")
    parser.add_argument(DEBUG_FLAG, action="store_true", help=f"show tracebacks instead of one-line errors (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        sub.add_parser(name, help=HELP.get(name, ""), add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    try:
        module = importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as exc:
        if debug:
            raise
        print(f"robolearn {name}: not available ({exc})", file=sys.stderr)
        return 2
    cmd_parser = argparse.ArgumentParser(prog=f"robolearn {name}", description=getattr(module, "HELP", HELP.get(name)))
    cmd_parser.add_argument(DEBUG_FLAG, action="store_true", help=f"show tracebacks instead of one-line errors (also {DEBUG_ENV}=1)")
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    restore_thread_hook = (lambda: None) if debug else report_thread_failures(name)
    try:
        with warnings.catch_warnings():
            return int(module.run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"robolearn {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every command's failure ends up
        if debug:
            raise
        return report_failure(name, exc, args)
    finally:
        if argv_given:
            restore_thread_hook()


if __name__ == "__main__":
    raise SystemExit(main())
