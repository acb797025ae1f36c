"""``robolearn serve-arm controllers/<arm>.yaml [--port P] [--host H] [--task T]``.

Runs beside the robot. The arm named by the YAML is wrapped in its SafetyShield (workspace
box, limits, command watchdog) and served to one controlling ``RemoteArm`` at a time; the
server stops the arm when the client goes silent past the heartbeat limit or disconnects.
The first line on stdout is ``serving <arm> on <host>:<port>`` (with the real port when
``--port 0`` asks the OS for a free one), so scripts can wait for it.
"""
from __future__ import annotations

HELP = "serve an arm over TCP beside the robot (shielded; stops the arm when the client goes silent)"


def add_arguments(p) -> None:
    p.add_argument("controller", help="controller YAML naming the arm backend (e.g. controllers/noop.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=5555, help="TCP port (0: any free port, printed on start)")
    p.add_argument("--task", default=None, help="for simulated arms: the task scene to serve (e.g. pybullet_lift)")
    p.add_argument("--heartbeat-ms", type=float, default=None, help="override the YAML's server.heartbeat_ms")
    p.add_argument("--no-shield", action="store_true", help="serve the raw arm (simulation/testing only)")
    p.add_argument("--rt-priority", type=int, default=0,
                   help="SCHED_FIFO priority for the connection threads (needs root/CAP_SYS_NICE; 0: normal scheduling)")
    p.add_argument("--log-level", default="INFO")


def run(args) -> int:
    import logging
    import signal

    from robolearn.config import ConfigError
    from robolearn.hal.factory import controller_file, load_controller, make_arm
    from robolearn.hal.server import ArmServer

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = controller_file("noop", args.controller)
    cfg = load_controller(path)
    server_cfg = cfg.get("server") or {}
    if not isinstance(server_cfg, dict) or set(server_cfg) - {"heartbeat_ms"}:
        raise ConfigError(path, "server", "expected a mapping with only heartbeat_ms")
    hb = args.heartbeat_ms if args.heartbeat_ms is not None else float(server_cfg.get("heartbeat_ms", 300.0))
    if cfg.get("arm") == "remote":
        raise ConfigError(path, "arm", "serving a remote arm would proxy a proxy; serve the real backend's YAML")
    arm = make_arm(None, path, shield=not args.no_shield, task=args.task)
    server = ArmServer(arm, host=args.host, port=args.port, heartbeat_ms=hb, realtime_priority=args.rt_priority or None)

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    server.start()
    print(f"serving {arm.spec.name} on {args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("robolearn serve-arm: stopping (arm stopped)", flush=True)
    finally:
        server.shutdown()
        stats = getattr(arm, "stats", None)
        print(f"server: {server.stats.to_dict()}" + (f"; shield: {stats.to_dict()}" if stats is not None else ""), flush=True)
    return 0
