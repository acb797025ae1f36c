"""``robolearn serve-arm controllers/<arm>.yaml [--port P] [--host H] [--task T]``.

Runs beside the robot. The arm named by the YAML is wrapped in its SafetyShield (workspace
box, limits, command watchdog) and served to one controlling ``RemoteArm`` at a time; the
server stops the arm and revokes control when the client goes silent past the heartbeat
limit, and stops it when the client disconnects. The first line on stdout is
``serving <arm> on <host>:<port>`` (with the real port when ``--port 0`` asks the OS for a
free one), so scripts can wait for it.

Listening beyond loopback needs the shared secret (``server.secret_file`` in the YAML, or
``$ROBOLEARN_ARM_SECRET``); with it, the login and every frame after it are authenticated
(``robolearn/hal/protocol.py``), so a command altered or injected on the network is
refused and the arm stopped. A latched e-stop is cleared only after the operator on this
host acknowledges it with ``kill -USR1 <pid>`` (the pid is logged when the server starts
and at every e-stop), and then the controller sends RESET_ESTOP.
"""
from __future__ import annotations

HELP = "serve an arm over TCP beside the robot (shielded; stops the arm when the client goes silent)"


def add_arguments(p) -> None:
    p.add_argument("controller", help="controller YAML naming the arm backend (e.g. controllers/noop.yaml)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default: loopback only; any other needs the shared secret)")
    p.add_argument("--port", type=int, default=5555, help="TCP port (0: any free port, printed on start)")
    p.add_argument("--task", default=None, help="for simulated arms: the task scene to serve (e.g. pybullet_lift)")
    p.add_argument("--heartbeat-ms", type=float, default=None, help="override the YAML's server.heartbeat_ms")
    p.add_argument("--no-shield", action="store_true", help="serve the raw arm (simulation/testing only)")
    p.add_argument("--rt-priority", type=int, default=0,
                   help="SCHED_FIFO priority for the connection threads (needs root/CAP_SYS_NICE; 0: normal scheduling)")
    p.add_argument("--log-level", default="INFO")


def server_config(path, cfg: dict, heartbeat_override: float | None):
    """The YAML's ``server:`` section, validated, with the ``--heartbeat-ms`` override
    validated in its own name (a NaN there would switch the watchdog off)."""
    import dataclasses

    from robolearn.hal.server import ServerConfig

    scfg = ServerConfig.from_mapping(cfg.get("server"), str(path))
    if heartbeat_override is not None:
        scfg = dataclasses.replace(scfg, heartbeat_ms=heartbeat_override).validate(f"{path} with --heartbeat-ms")
    return scfg


def run(args) -> int:
    import logging
    import os
    import signal

    from robolearn.config import ConfigError
    from robolearn.hal import protocol as P
    from robolearn.hal.factory import controller_file, load_controller
    from robolearn.hal.server import ArmServer, require_secret_beyond_loopback
    from robolearn.tasks.task_arm import make_task_arm

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = controller_file("noop", args.controller)
    cfg = load_controller(path)
    scfg = server_config(path, cfg, args.heartbeat_ms)
    if cfg.get("arm") == "remote":
        raise ConfigError(path, "arm", "serving a remote arm would proxy a proxy; serve the real backend's YAML")
    secret = P.resolve_secret(scfg.secret_file, str(path), "server.secret_file")
    require_secret_beyond_loopback(args.host, args.port, secret)  # before the arm is built or touched
    arm = make_task_arm(None, path, shield=not args.no_shield, task=args.task)
    server = ArmServer(arm, host=args.host, port=args.port, heartbeat_ms=scfg.heartbeat_ms,
                       handshake_timeout_s=scfg.handshake_timeout_s, realtime_priority=args.rt_priority or None,
                       secret=secret, max_connections=scfg.max_connections)

    def _term(signum, frame):
        raise KeyboardInterrupt

    def _acknowledge(signum, frame):
        server.acknowledge_estop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGUSR1, _acknowledge)
    server.start()
    print(f"serving {arm.spec.name} on {args.host}:{server.port}", flush=True)
    logging.getLogger(__name__).info("operator e-stop acknowledgement: kill -USR1 %d", os.getpid())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("robolearn serve-arm: stopping (arm stopped)", flush=True)
    finally:
        server.shutdown()
        stats = getattr(arm, "stats", None)
        print(f"server: {server.stats.to_dict()}" + (f"; shield: {stats.to_dict()}" if stats is not None else ""), flush=True)
    return 0
