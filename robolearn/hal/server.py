"""ArmServer: serves any Arm over TCP, beside the robot, for a policy running elsewhere.

Why the robot side owns the safety: the network and the policy host are the parts most
likely to fail. Like Polymetis (which falls back to holding position when updates go
stale), the server stops the arm itself when

* the controlling client goes silent for longer than ``heartbeat_ms`` (a hung policy, a
  frozen host, a pulled cable: no message of any kind arrives),
* the client disconnects or its connection breaks,
* and, when the served arm is a ``SafetyShield`` (the factory's default), when no valid
  command arrives for the shield's ``watchdog_ms``.

One client at a time controls the arm (HELLO); others may read the spec (INFO) and are
refused control with a clear error. A frame with a wrong protocol version, bad magic or
malformed body is answered with an ERROR naming the problem and that connection is
closed; the server keeps serving other clients and the next connection. Each
connection runs in its own thread; arm access is serialised by one lock.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from robolearn.hal import protocol as P
from robolearn.hal.arm import Arm, ArmError

log = logging.getLogger(__name__)


@dataclass
class ServerStats:
    connections: int = 0
    refused_protocol: int = 0
    refused_busy: int = 0
    heartbeat_stops: int = 0
    disconnect_stops: int = 0
    commands: int = 0
    arm_errors: int = 0
    estops: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _error_code(exc: BaseException) -> str:
    from robolearn.hal.shield import EStopError, ShieldError

    if isinstance(exc, EStopError):
        return "estop"
    if isinstance(exc, ShieldError):
        return "shield"
    return "arm"


class ArmServer:
    def __init__(self, arm: Arm, host: str = "127.0.0.1", port: int = 0, heartbeat_ms: float = 300.0,
                 handshake_timeout_s: float = 2.0, realtime_priority: int | None = None):
        self.arm = arm
        self.host, self._port = host, int(port)
        self.heartbeat_ms = float(heartbeat_ms)
        self.handshake_timeout_s = float(handshake_timeout_s)
        self.stats = ServerStats()
        fn = getattr(arm, "success", None)
        self._success = fn if callable(fn) else None
        #: SCHED_FIFO priority for the connection threads (replies are not delayed by other load).
        self.realtime_priority = realtime_priority
        self._arm_lock = threading.Lock()
        self._ctl_lock = threading.Lock()
        self._controller: int | None = None  # id of the connection holding control
        self._last_seen = time.monotonic()
        self._hb_armed = False
        self._closing = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._next_id = 0

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> "ArmServer":
        """Bind, connect the arm and serve in background threads; returns at once."""
        if not self.arm.connected:
            self.arm.connect()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self._port))
        s.listen(8)
        s.settimeout(0.2)
        self._sock = s
        self._port = s.getsockname()[1]
        for target, name in ((self._accept_loop, "arm-server-accept"), (self._heartbeat_loop, "arm-server-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("serving arm %s on %s:%d (heartbeat %.0f ms)", self.arm.spec.name, self.host, self._port, self.heartbeat_ms)
        return self

    def serve_forever(self) -> None:
        """Block until ``shutdown()`` (or Ctrl-C, which the caller handles)."""
        if self._sock is None:
            self.start()
        while not self._closing.wait(0.2):
            pass

    def shutdown(self) -> None:
        self._closing.set()
        if self._sock is not None:
            self._sock.close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2.0)
        try:
            with self._arm_lock:
                self.arm.stop()
        except ArmError as exc:
            log.error("arm.stop() on shutdown failed: %s", exc)
        self.arm.close()

    # -- threads ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.stats.connections += 1
            self._next_id += 1
            t = threading.Thread(target=self._serve_conn, args=(conn, addr, self._next_id), name=f"arm-conn-{self._next_id}", daemon=True)
            t.start()

    def _heartbeat_loop(self) -> None:
        limit = self.heartbeat_ms / 1000.0
        if limit <= 0:
            log.warning("arm server heartbeat disabled (heartbeat_ms = 0)")
            return
        poll = min(max(limit / 5.0, 0.002), 0.05)
        while not self._closing.wait(poll):
            if self._controller is None or not self._hb_armed:
                continue
            silent = time.monotonic() - self._last_seen
            if silent <= limit:
                continue
            self._hb_armed = False  # once per silence; re-armed by the next message
            self.stats.heartbeat_stops += 1
            log.error("client silent for %.0f ms (heartbeat limit %.0f ms): stopping the arm", 1e3 * silent, self.heartbeat_ms)
            self._stop_arm()

    def _stop_arm(self) -> None:
        got = self._arm_lock.acquire(timeout=max(self.heartbeat_ms / 1000.0, 0.05))
        try:
            self.arm.stop()
        except Exception as exc:
            log.critical("could not stop the arm: %s", exc)
        finally:
            if got:
                self._arm_lock.release()

    def info(self) -> dict[str, Any]:
        """Spec, protocol version and counters (the server's and, when shielded, the shield's)."""
        out: dict[str, Any] = {"spec": P.spec_to_json(self.arm.spec), "version": P.PROTOCOL_VERSION,
                               "heartbeat_ms": self.heartbeat_ms, "stats": self.stats.to_dict(),
                               "controlled": self._controller is not None}
        shield_stats = getattr(self.arm, "stats", None)
        if hasattr(shield_stats, "to_dict"):
            out["shield"] = shield_stats.to_dict()
        return out

    # -- one connection -----------------------------------------------------------------
    def _reply(self, conn: socket.socket, msg_type: int, meta: dict[str, Any] | None = None, arrays=None) -> None:
        conn.sendall(P.encode(msg_type, meta, arrays))

    def _serve_conn(self, conn: socket.socket, addr, cid: int) -> None:
        self._conns.add(conn)
        if self.realtime_priority:
            from robolearn.hal.loop import enter_realtime

            enter_realtime(self.realtime_priority)  # this thread only; it ends with the connection
        P.configure_socket(conn)
        conn.settimeout(self.handshake_timeout_s)
        peer = f"{addr[0]}:{addr[1]}"
        try:
            while not self._closing.is_set():
                try:
                    version, msg_type, js, blob = P.recv_frame(conn)
                    if version != P.PROTOCOL_VERSION:
                        raise P.ProtocolError(
                            "version", f"client speaks protocol version {version}; this server speaks {P.PROTOCOL_VERSION}"
                        )
                    meta, arrays = P.decode_body(js, blob)
                except P.ProtocolError as exc:
                    self.stats.refused_protocol += 1
                    log.warning("refused a message from %s: [%s] %s", peer, exc.code, exc)
                    self._reply(conn, P.ERROR, {"code": exc.code, "message": str(exc)})
                    return  # framing can no longer be trusted on this connection
                if self._controller == cid:
                    self._last_seen = time.monotonic()
                    self._hb_armed = True
                if not self._dispatch(conn, cid, peer, msg_type, meta, arrays):
                    return
        except socket.timeout:
            log.warning("connection %s: no HELLO within %.1f s; closed", peer, self.handshake_timeout_s)
        except (P.ConnectionClosed, OSError) as exc:
            if self._controller == cid:
                log.error("controlling client %s disconnected (%s)", peer, exc)
        finally:
            self._conns.discard(conn)
            with self._ctl_lock:
                if self._controller == cid:
                    self._controller = None
                    self.stats.disconnect_stops += 1
                    self._stop_arm()
            try:
                conn.close()
            except OSError:
                pass

    def _dispatch(self, conn, cid: int, peer: str, msg_type: int, meta: dict, arrays: dict) -> bool:
        """Handle one request; False ends the connection."""
        name = P.TYPE_NAMES.get(msg_type)
        if msg_type == P.INFO:
            self._reply(conn, P.OK, self.info())
            return True
        if msg_type == P.ESTOP:
            # Anyone who can reach the server may stop the robot: a second terminal, a safety
            # monitor, the policy host's signal handler on its own connection.
            fn = getattr(self.arm, "estop", None)
            if callable(fn):
                fn()
            else:
                self._stop_arm()
            self.stats.estops += 1
            log.critical("E-STOP requested by %s", peer)
            self._reply(conn, P.OK, {"latched": callable(fn)})
            return True
        if msg_type == P.HELLO:
            with self._ctl_lock:
                if self._controller not in (None, cid):
                    self.stats.refused_busy += 1
                    self._reply(conn, P.ERROR, {"code": "busy", "message": "another client controls this arm"})
                    return False
                self._controller = cid
                self._last_seen = time.monotonic()
                self._hb_armed = True
            conn.settimeout(None)  # silence is now the heartbeat watchdog's business
            log.info("client %s took control", peer)
            self._reply(conn, P.OK, {"spec": P.spec_to_json(self.arm.spec), "version": P.PROTOCOL_VERSION,
                                     "heartbeat_ms": self.heartbeat_ms})
            return True
        if name is None or msg_type in (P.OK, P.ERROR):
            self.stats.refused_protocol += 1
            self._reply(conn, P.ERROR, {"code": "bad_type", "message": f"unknown request type {msg_type}"})
            return False
        if self._controller != cid:
            self._reply(conn, P.ERROR, {"code": "not_in_control", "message": f"{name} needs control of the arm; send HELLO first"})
            return msg_type != P.BYE
        try:
            if msg_type == P.SEND:
                cmd = arrays.get("command")
                if cmd is None:
                    self._reply(conn, P.ERROR, {"code": "bad_request", "message": "SEND needs an array named 'command'"})
                    return True
                with self._arm_lock:
                    applied = self.arm.send(cmd)
                self.stats.commands += 1
                self._reply(conn, P.OK, None, {"applied": np.asarray(applied, np.float32)})
            elif msg_type == P.OBSERVE:
                with self._arm_lock:
                    obs = self.arm.observe()
                    meta = {"timestamp": obs.timestamp}
                    if self._success is not None:  # simulated task arms can tell success; real arms cannot
                        meta["success"] = bool(self._success())
                self._reply(conn, P.OK, meta, obs.data)
            elif msg_type == P.HOME:
                with self._arm_lock:
                    obs = self.arm.home()
                self._last_seen = time.monotonic()  # homing may take seconds without client traffic
                self._reply(conn, P.OK, {"timestamp": obs.timestamp}, obs.data)
            elif msg_type == P.STOP:
                self._stop_arm()
                self._reply(conn, P.OK)
            elif msg_type == P.HEARTBEAT:
                self._reply(conn, P.OK, {"server_time": time.monotonic()})
            elif msg_type == P.RESET_ESTOP:
                fn = getattr(self.arm, "reset_estop", None)
                if callable(fn):
                    fn()
                log.warning("e-stop reset by %s", peer)
                self._reply(conn, P.OK)
            elif msg_type == P.BYE:
                with self._ctl_lock:
                    self._controller = None
                self._stop_arm()
                self._reply(conn, P.OK)
                log.info("client %s released control", peer)
                return False
        except ArmError as exc:
            self.stats.arm_errors += 1
            log.error("%s from %s failed: %s", name, peer, exc)
            self._reply(conn, P.ERROR, {"code": _error_code(exc), "message": str(exc)})
        except (OSError, P.ConnectionClosed):
            raise  # the connection itself broke: handled by the caller (arm stopped)
        except Exception as exc:  # a backend bug must not kill the server or leave the arm moving
            self.stats.arm_errors += 1
            log.exception("%s from %s raised %s; stopping the arm", name, peer, type(exc).__name__)
            self._stop_arm()
            self._reply(conn, P.ERROR, {"code": "internal", "message": f"{type(exc).__name__}: {exc}"})
        return True
