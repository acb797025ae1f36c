"""ArmServer: serves any Arm over TCP, beside the robot, for a policy running elsewhere.

Why the robot side owns the safety: the network and the policy host are the parts most
likely to fail. Like Polymetis (which falls back to holding position when updates go
stale), the server stops the arm itself when

* the controlling client goes silent for longer than ``heartbeat_ms`` (a hung policy, a
  frozen host, a pulled cable: no message of any kind arrives),
* the client disconnects or its connection breaks,
* and, when the served arm is a ``SafetyShield`` (the factory's default), when no valid
  command arrives for the shield's ``watchdog_ms``.

Control (who may drive the arm):

* One connection at a time holds control; it takes it with HELLO when nobody holds it.
  Others may read the spec (INFO) and are refused control with ``busy``.
* Control ends with BYE, with the connection, and when the controller is silent past
  ``heartbeat_ms``: the server then stops the arm AND revokes control. The silent
  connection's next request is refused with ``control_lost``; to drive the arm again it
  must send HELLO again (which succeeds only if nobody else took control meanwhile). A
  frozen process that wakes up therefore never resumes motion on its own.
* With a shared secret (``secret``), a connection must pass the challenge-response in
  ``protocol`` before any request but ESTOP, and after it every frame in both directions
  carries a tag under that connection's session key. A frame that fails the check
  (altered, replayed, reordered or injected on the network) is answered with
  ``unauthenticated`` and ends the connection; if it held control, the arm is stopped,
  and the frame itself is never acted on. Listening on anything but loopback without a
  secret is refused.

E-stop: ESTOP latches from any connection, authenticated or not (stopping is always
safe). Clearing a latch takes two keys: the operator acknowledges it on the robot host
(``acknowledge_estop()``, which ``robolearn serve-arm`` runs on SIGUSR1), then the
controlling client sends RESET_ESTOP. Holding control alone is not enough, so a
safety monitor's e-stop cannot be cleared by the policy it stopped.

Camera frames: when the served arm is a ``CameraArm`` its observations carry the cameras'
newest frames and their ages (measured on this host, against the arm state read with them).
The controller chooses in HELLO how frames travel (``frames: {encoding: raw|jpeg, quality}``,
``robolearn/hal/frame_codec.py``); an observation that would not fit one protocol frame is
refused with ``frame_too_large`` and the connection stays usable.

Hostile or broken peers: every connection that has not taken control must finish within
one overall ``handshake_timeout_s`` from its accept (however slowly its bytes trickle
in); at most ``max_connections`` are served at once (extras get ``too_many_connections``);
accepted sockets use TCP keepalive; a failing ``accept()`` (EMFILE, ENFILE, ...) is logged
(rate-limited) and retried after a short pause instead of ending the accept loop. A
malformed frame is answered with an ERROR naming the problem and that connection is
closed; nothing a peer sends ends in a thread traceback. Each connection runs in its own
thread; arm access is serialised by one lock.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from robolearn.config import ConfigError, from_dict, positive
from robolearn.hal import protocol as P
from robolearn.hal.arm import Arm, ArmError
from robolearn.hal.frame_codec import FrameCodec, FrameError

log = logging.getLogger(__name__)

ACCEPT_BACKOFF_S = 0.1
ACCEPT_LOG_EVERY_S = 5.0


class ArmServerError(ArmError):
    """The server cannot listen: address in use, host that does not resolve, ..."""


@dataclass
class ServerConfig:
    """The ``server:`` section of a controller YAML."""

    heartbeat_ms: float = positive(300.0)  # controller silent this long: arm stopped, control revoked
    handshake_timeout_s: float = positive(2.0)  # a connection must take control (HELLO) within this of its accept
    max_connections: int = positive(8)  # served at once; extras are refused
    secret_file: str | None = None  # shared secret; else $ROBOLEARN_ARM_SECRET; else none (loopback only)

    def validate(self, source: str, prefix: str = "server.") -> "ServerConfig":
        _positive_finite(self.heartbeat_ms, source, prefix + "heartbeat_ms", "ms", 60_000)
        _positive_finite(self.handshake_timeout_s, source, prefix + "handshake_timeout_s", "s", 600)
        mc = self.max_connections
        if isinstance(mc, bool) or not isinstance(mc, int) or not 1 <= mc <= 4096:
            raise ConfigError(source, prefix + "max_connections", f"expected an integer in [1, 4096], got {mc!r}")
        if self.secret_file is not None and (not isinstance(self.secret_file, str) or not self.secret_file):
            raise ConfigError(source, prefix + "secret_file", f"expected a path, got {self.secret_file!r}")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str) -> "ServerConfig":
        """Types, finiteness and signs from the declared fields (``from_dict``); the upper bounds
        and the secret path from ``validate``, which also checks configs built in code."""
        return from_dict(cls, data, source, field_prefix="server.").validate(source)


def _positive_finite(value: Any, source: str, field: str, unit: str, most: float) -> None:
    """Why so strict: a NaN, infinite, negative or boolean heartbeat would silently switch
    the server's watchdog off."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= most:
        raise ConfigError(source, field, f"expected a finite number of {unit} in (0, {most:g}], got {value!r}")


def _resolve_ipv4(host: str, port: int) -> str:
    try:
        return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ArmServerError(f"arm server {host}:{port}: cannot listen: host does not resolve ({exc})") from None


def require_secret_beyond_loopback(host: str, port: int, secret: bytes | None) -> None:
    """Refuse to listen beyond loopback without a shared secret: anyone who can reach the
    port could otherwise take control of the arm."""
    if secret is not None:
        return
    address = _resolve_ipv4(host, port)
    if not ipaddress.ip_address(address).is_loopback:
        raise ConfigError(f"arm server {host}:{port}", "secret",
                          "listening beyond loopback needs a shared secret: set server.secret_file in the controller "
                          f"YAML or ${P.SECRET_ENV} (or listen on 127.0.0.1)")


@dataclass
class ServerStats:
    connections: int = 0
    refused_protocol: int = 0
    refused_busy: int = 0
    refused_auth: int = 0
    refused_unauthenticated: int = 0  # frames of an authenticated connection whose tag did not check out
    refused_too_many: int = 0
    handshake_timeouts: int = 0
    accept_errors: int = 0
    heartbeat_stops: int = 0
    control_revoked: int = 0
    disconnect_stops: int = 0
    commands: int = 0
    frames_refused: int = 0  # observations too large for one protocol frame
    arm_errors: int = 0
    estops: int = 0
    estop_resets: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _Connection:
    """One client connection's state, shared between its thread and the heartbeat thread."""

    def __init__(self, sock: socket.socket, addr, cid: int, handshake_s: float, authenticated: bool):
        self.sock, self.cid = sock, cid
        self.peer = f"{addr[0]}:{addr[1]}"
        self.deadline = P.Deadline.after(handshake_s)
        self.authenticated = authenticated
        self.nonces: tuple[bytes, bytes] | None = None  # (client, server) once CHALLENGE was answered
        self.frame_auth: P.FrameAuth | None = None  # tags every frame after a successful AUTH
        self.frame_codec = FrameCodec()  # how this connection's observations carry camera frames
        self.lost_control = False
        self.in_request = False  # the server is working on this connection's request (not client silence)
        self.last_seen = time.monotonic()


class _RateLimitedLog:
    """Logs the first of a run of repeated errors at once, then one summary per interval: an
    accept loop failing 10 times a second must not flood the log, nor stay silent."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last = -math.inf
        self._suppressed = 0

    def error(self, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._suppressed += 1
            return
        extra = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        log.error(msg + extra, *args)
        self._last, self._suppressed = now, 0


def _error_code(exc: BaseException) -> str:
    from robolearn.hal.shield import EStopError, ShieldError

    if isinstance(exc, EStopError):
        return "estop"
    if isinstance(exc, ShieldError):
        return "shield"
    return "arm"


class ArmServer:
    def __init__(self, arm: Arm, host: str = "127.0.0.1", port: int = 0, heartbeat_ms: float = 300.0,
                 handshake_timeout_s: float = 2.0, realtime_priority: int | None = None, *,
                 secret: bytes | None = None, max_connections: int = 8):
        ServerConfig(heartbeat_ms, handshake_timeout_s, max_connections).validate("ArmServer", prefix="")
        self.arm = arm
        self.host, self._port = host, int(port)
        self.heartbeat_ms = float(heartbeat_ms)
        self.handshake_timeout_s = float(handshake_timeout_s)
        self.max_connections = int(max_connections)
        self._secret = secret
        self.stats = ServerStats()
        fn = getattr(arm, "success", None)
        self._success = fn if callable(fn) else None
        #: SCHED_FIFO priority for the connection threads (replies are not delayed by other load).
        self.realtime_priority = realtime_priority
        self._arm_lock = threading.Lock()
        self._ctl_lock = threading.Lock()
        self._controller: _Connection | None = None
        self._closing = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: dict[int, _Connection] = {}
        self._next_id = 0
        self._accept_errors = _RateLimitedLog(ACCEPT_LOG_EVERY_S)
        self._refusals = _RateLimitedLog(ACCEPT_LOG_EVERY_S)
        # E-stop latches set through this server, and how many of them the operator acknowledged.
        self._estop_latches = 0
        self._estop_acked = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def authenticates(self) -> bool:
        return self._secret is not None

    def start(self) -> "ArmServer":
        """Bind, connect the arm and serve in background threads; returns at once. Binding
        comes first, so a port in use or a refused address never touches the arm."""
        require_secret_beyond_loopback(self.host, self._port, self._secret)
        s = self._bind()
        if not self.arm.connected:
            try:
                self.arm.connect()
            except BaseException:
                s.close()
                raise
        self._sock = s
        self._port = s.getsockname()[1]
        for target, name in ((self._accept_loop, "arm-server-accept"), (self._heartbeat_loop, "arm-server-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("serving arm %s on %s:%d (heartbeat %.0f ms, %s)", self.arm.spec.name, self.host, self._port,
                 self.heartbeat_ms, "shared secret: login and every frame authenticated" if self._secret
                 else "no authentication: loopback only")
        return self

    def _bind(self) -> socket.socket:
        address = _resolve_ipv4(self.host, self._port)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, self._port))
            s.listen(16)
        except OSError as exc:
            s.close()
            raise ArmServerError(f"arm server {self.host}:{self._port}: cannot listen ({exc.strerror or exc})") from None
        s.settimeout(0.2)
        return s

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
        for c in list(self._conns.values()):
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
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

    def acknowledge_estop(self) -> None:
        """The operator's out-of-band acknowledgement on the robot host: allows the controlling
        client's next RESET_ESTOP to clear the latches set so far (not any set later). Only
        assigns an int, so it is safe from a signal handler."""
        self._estop_acked = self._estop_latches
        log.warning("operator acknowledged the e-stop (%d latch(es)); the controller may now send RESET_ESTOP",
                    self._estop_latches)

    # -- threads ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                sock, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._closing.is_set():
                    break
                # EMFILE/ENFILE (out of file descriptors), ECONNABORTED, ENOBUFS...: the
                # listening socket is fine; wait for descriptors to free up and go on.
                self.stats.accept_errors += 1
                self._accept_errors.error("arm server %s:%d: accept() failed (%s); retrying", self.host, self._port,
                                          exc.strerror or exc)
                time.sleep(ACCEPT_BACKOFF_S)
                continue
            try:
                self._admit(sock, addr)
            except Exception as exc:  # e.g. no memory for a thread: this client is lost, the server is not
                log.error("arm server: could not serve %s:%s (%s: %s)", addr[0], addr[1], type(exc).__name__, exc)
                _close_quietly(sock)

    def _admit(self, sock: socket.socket, addr) -> None:
        self.stats.connections += 1
        if len(self._conns) >= self.max_connections:
            self.stats.refused_too_many += 1
            self._refusals.error("refused %s:%s: already serving %d connections (server.max_connections)", addr[0],
                                 addr[1], len(self._conns))
            sock.settimeout(0.2)
            try:
                sock.sendall(P.encode(P.ERROR, {"code": "too_many_connections",
                                                "message": f"server already serves {self.max_connections} connections"}))
            except OSError:
                pass
            _close_quietly(sock)
            return
        self._next_id += 1
        conn = _Connection(sock, addr, self._next_id, self.handshake_timeout_s, authenticated=self._secret is None)
        self._conns[conn.cid] = conn
        t = threading.Thread(target=self._serve_conn, args=(conn,), name=f"arm-conn-{conn.cid}", daemon=True)
        try:
            t.start()
        except BaseException:
            self._conns.pop(conn.cid, None)
            raise

    def _heartbeat_loop(self) -> None:
        limit = self.heartbeat_ms / 1000.0
        poll = min(max(limit / 5.0, 0.002), 0.05)
        while not self._closing.wait(poll):
            conn = self._controller
            if conn is None or conn.in_request:
                continue
            silent = time.monotonic() - conn.last_seen
            if silent > limit:
                self._revoke_control(conn, silent)

    def _revoke_control(self, conn: _Connection, silent: float) -> None:
        with self._ctl_lock:
            if self._controller is not conn or conn.in_request:
                return
            self._controller = None
            conn.lost_control = True
            conn.deadline.at = time.monotonic() + self.handshake_timeout_s  # HELLO again soon, or be closed
        self.stats.heartbeat_stops += 1
        self.stats.control_revoked += 1
        log.error("controller %s silent for %.0f ms (heartbeat limit %.0f ms): arm stopped, control revoked",
                  conn.peer, 1e3 * silent, self.heartbeat_ms)
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
                               "controlled": self._controller is not None, "authenticates": self.authenticates,
                               "estop_latches": self._estop_latches, "estop_acknowledged": self._estop_acked}
        shield_stats = getattr(self.arm, "stats", None)
        if hasattr(shield_stats, "to_dict"):
            out["shield"] = shield_stats.to_dict()
        return out

    # -- one connection -----------------------------------------------------------------
    @staticmethod
    def _reply(conn: _Connection, msg_type: int, meta: dict[str, Any] | None = None, arrays=None) -> None:
        conn.sock.settimeout(5.0)  # a peer that stops reading must not block this thread forever
        P.send_message(conn.sock, msg_type, meta, arrays, conn.frame_auth)

    def _error(self, conn: _Connection, code: str, message: str) -> None:
        self._reply(conn, P.ERROR, {"code": code, "message": message})

    def _serve_conn(self, conn: _Connection) -> None:
        try:
            if self.realtime_priority:
                from robolearn.hal.loop import enter_realtime

                enter_realtime(self.realtime_priority)  # this thread only; it ends with the connection
            P.configure_socket(conn.sock)
            self._serve_requests(conn)
        except socket.timeout:
            self._timed_out(conn)
        except (P.ConnectionClosed, OSError) as exc:
            if self._controller is conn:
                log.error("controlling client %s disconnected (%s)", conn.peer, exc)
        except Exception as exc:  # whatever a peer triggers, one log line, never a thread traceback
            log.error("connection %s: %s: %s; closed", conn.peer, type(exc).__name__, exc)
            self._try_error(conn, "internal", f"{type(exc).__name__}: {exc}")
        finally:
            self._end_connection(conn)

    def _timed_out(self, conn: _Connection) -> None:
        if not conn.deadline.expired():
            log.warning("connection %s: peer stopped reading replies; closed", conn.peer)
        elif conn.lost_control:
            log.warning("connection %s: lost control and did not take it back within %.1f s; closed", conn.peer,
                        self.handshake_timeout_s)
            self._try_error(conn, "control_lost", f"control was revoked after {self.heartbeat_ms:.0f} ms of silence "
                            f"and not taken back within {self.handshake_timeout_s:.1f} s; closing")
        else:
            self.stats.handshake_timeouts += 1
            log.warning("connection %s: did not take control within %.1f s of connecting; closed", conn.peer,
                        self.handshake_timeout_s)
            self._try_error(conn, "handshake_timeout", f"no HELLO within {self.handshake_timeout_s:.1f} s; closing")

    def _try_error(self, conn: _Connection, code: str, message: str) -> None:
        try:
            self._error(conn, code, message)
        except OSError:
            pass

    def _end_connection(self, conn: _Connection) -> None:
        self._conns.pop(conn.cid, None)
        with self._ctl_lock:
            was_controller = self._controller is conn
            if was_controller:
                self._controller = None
        if was_controller:
            self.stats.disconnect_stops += 1
            self._stop_arm()
        _close_quietly(conn.sock)

    def _serve_requests(self, conn: _Connection) -> None:
        while not self._closing.is_set():
            try:
                version, msg_type, js, blob = P.recv_frame(conn.sock, conn.deadline, conn.frame_auth)
                if version != P.PROTOCOL_VERSION:
                    raise P.ProtocolError(
                        "version", f"client speaks protocol version {version}; this server speaks {P.PROTOCOL_VERSION}"
                    )
                meta, arrays = P.decode_body(js, blob)
            except P.ProtocolError as exc:
                if exc.code == "unauthenticated":
                    self._refuse_unauthenticated(conn)
                    return
                self.stats.refused_protocol += 1
                log.warning("refused a message from %s: [%s] %s", conn.peer, exc.code, exc)
                self._error(conn, exc.code, str(exc))
                return  # framing can no longer be trusted on this connection
            conn.in_request = True
            try:
                if not self._dispatch(conn, msg_type, meta, arrays):
                    return
            finally:
                conn.last_seen = time.monotonic()
                conn.in_request = False

    def _refuse_unauthenticated(self, conn: _Connection) -> None:
        """A frame that fails its tag check was altered, replayed, reordered or injected on the
        way: it is never acted on, and the connection ends. If it held control, the arm is
        stopped and control released before the reply, so the stop never waits on the
        network. The reply gives no detail of which check failed."""
        self.stats.refused_unauthenticated += 1
        with self._ctl_lock:
            held_control = self._controller is conn
            if held_control:
                self._controller = None
        log.error("connection %s: a frame failed authentication (altered, replayed, reordered or injected on the "
                  "network); closed%s", conn.peer, ", arm stopped" if held_control else "")
        if held_control:
            self._stop_arm()
        self._try_error(conn, "unauthenticated", P.UNAUTHENTICATED)

    def _dispatch(self, conn: _Connection, msg_type: int, meta: dict, arrays: dict) -> bool:
        """Handle one request; False ends the connection."""
        if msg_type == P.ESTOP:
            return self._estop(conn)
        if msg_type == P.CHALLENGE:
            return self._challenge(conn, meta)
        if msg_type == P.AUTH:
            return self._authenticate(conn, meta)
        name = P.TYPE_NAMES.get(msg_type)
        if name is None or msg_type in (P.OK, P.ERROR):
            self.stats.refused_protocol += 1
            self._error(conn, "bad_type", f"unknown request type {msg_type}")
            return False
        if not conn.authenticated:
            self.stats.refused_auth += 1
            log.warning("refused %s from %s: not authenticated", name, conn.peer)
            self._error(conn, "auth_required", f"this arm server requires authentication before {name}: give the client "
                        f"the server's shared secret (params.secret_file or ${P.SECRET_ENV})")
            return False
        if msg_type == P.INFO:
            self._reply(conn, P.OK, self.info())
            return True
        if msg_type == P.HELLO:
            return self._hello(conn, meta)
        if self._controller is not conn:
            return self._refuse_uncontrolled(conn, name, msg_type)
        return self._control_request(conn, name, msg_type, arrays)

    # -- authentication -----------------------------------------------------------------
    def _challenge(self, conn: _Connection, meta: dict) -> bool:
        if self._secret is None:
            self._error(conn, "auth_unavailable", "this arm server has no shared secret, so it cannot prove who it is")
            return False
        client_nonce = P.hex_field(meta.get("client_nonce"), P.NONCE_BYTES)
        if client_nonce is None or conn.nonces is not None or conn.authenticated:
            self.stats.refused_auth += 1
            self._error(conn, "bad_request", f"CHALLENGE needs client_nonce ({P.NONCE_BYTES} bytes as hex), once per connection")
            return False
        server_nonce = P.new_nonce()
        conn.nonces = (client_nonce, server_nonce)
        self._reply(conn, P.OK, {"server_nonce": server_nonce.hex(),
                                 "server_proof": P.server_proof(self._secret, client_nonce, server_nonce).hex()})
        return True

    def _authenticate(self, conn: _Connection, meta: dict) -> bool:
        if self._secret is None or conn.nonces is None or conn.authenticated:
            self._error(conn, "bad_request", "AUTH must follow this connection's CHALLENGE, once")
            return False
        expected = P.client_proof(self._secret, *conn.nonces)
        if not P.proof_matches(expected, meta.get("proof")):
            self.stats.refused_auth += 1
            log.warning("authentication failed for %s (wrong shared secret?)", conn.peer)
            self._error(conn, "auth_failed", "authentication failed: the client's shared secret is not this server's")
            return False
        conn.authenticated = True
        self._reply(conn, P.OK)
        conn.frame_auth = P.FrameAuth.for_server(self._secret, *conn.nonces)  # from the client's next frame on
        return True

    # -- control ------------------------------------------------------------------------
    def _hello(self, conn: _Connection, meta: dict) -> bool:
        try:
            codec = FrameCodec.from_request(meta.get("frames"))
        except FrameError as exc:
            self._error(conn, exc.code, str(exc))
            return False
        with self._ctl_lock:
            if self._controller not in (None, conn):
                self.stats.refused_busy += 1
                self._error(conn, "busy", "another client controls this arm")
                return False
            self._controller = conn
            conn.lost_control = False
            conn.frame_codec = codec
            conn.deadline.at = None  # silence is now the heartbeat watchdog's business
        log.info("client %s took control (%s frames)", conn.peer, codec.encoding)
        self._reply(conn, P.OK, {"spec": P.spec_to_json(self.arm.spec), "version": P.PROTOCOL_VERSION,
                                 "heartbeat_ms": self.heartbeat_ms, "frames": codec.to_json()})
        return True

    def _refuse_uncontrolled(self, conn: _Connection, name: str, msg_type: int) -> bool:
        if conn.lost_control:
            self._error(conn, "control_lost", f"{name} refused: control was revoked after {self.heartbeat_ms:.0f} ms of "
                        "silence (arm stopped); send HELLO to take control again")
        else:
            self._error(conn, "not_in_control", f"{name} needs control of the arm; send HELLO first")
        return msg_type != P.BYE

    def _estop(self, conn: _Connection) -> bool:
        # Anyone who can reach the server may stop the robot: a second terminal, a safety
        # monitor, the policy host's signal handler on its own connection.
        fn = getattr(self.arm, "estop", None)
        if callable(fn):
            fn()
            self._estop_latches += 1
        else:
            self._stop_arm()
        self.stats.estops += 1
        log.critical("E-STOP requested by %s; clearing it needs the operator's acknowledgement on this host "
                     "(kill -USR1 %d) and then RESET_ESTOP from the controller", conn.peer, os.getpid())
        self._reply(conn, P.OK, {"latched": callable(fn)})
        return True

    def _reset_estop(self, conn: _Connection) -> None:
        if self._estop_acked < self._estop_latches:
            self._error(conn, "estop_needs_operator", "the e-stop latch can only be cleared after the operator "
                        f"acknowledges it on the robot host (kill -USR1 {os.getpid()}); then send RESET_ESTOP")
            return
        fn = getattr(self.arm, "reset_estop", None)
        if callable(fn):
            with self._arm_lock:
                fn()
        self.stats.estop_resets += 1
        log.warning("e-stop reset by %s", conn.peer)
        self._reply(conn, P.OK)

    def _control_request(self, conn: _Connection, name: str, msg_type: int, arrays: dict) -> bool:
        try:
            return self._run_control_request(conn, msg_type, arrays)
        except ArmError as exc:
            self.stats.arm_errors += 1
            log.error("%s from %s failed: %s", name, conn.peer, exc)
            self._error(conn, _error_code(exc), str(exc))
        except (OSError, P.ConnectionClosed):
            raise  # the connection itself broke: handled by the caller (arm stopped)
        except Exception as exc:  # a backend bug must not kill the server or leave the arm moving
            self.stats.arm_errors += 1
            log.error("%s from %s raised %s: %s; stopping the arm", name, conn.peer, type(exc).__name__, exc)
            log.debug("details", exc_info=True)
            self._stop_arm()
            self._error(conn, "internal", f"{type(exc).__name__}: {exc}")
        return True

    def _run_control_request(self, conn: _Connection, msg_type: int, arrays: dict) -> bool:
        if msg_type == P.SEND:
            cmd = arrays.get("command")
            if cmd is None or cmd.ndim != 1 or cmd.dtype.kind not in "fiu":
                self._error(conn, "bad_request", "SEND needs a 1-D numeric array named 'command'")
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
            self._reply_observation(conn, meta, obs.data)
        elif msg_type == P.HOME:
            with self._arm_lock:
                obs = self.arm.home()
            self._reply_observation(conn, {"timestamp": obs.timestamp}, obs.data)
        elif msg_type == P.STOP:
            self._stop_arm()
            self._reply(conn, P.OK)
        elif msg_type == P.HEARTBEAT:
            self._reply(conn, P.OK, {"server_time": time.monotonic()})
        elif msg_type == P.RESET_ESTOP:
            self._reset_estop(conn)
        elif msg_type == P.BYE:
            with self._ctl_lock:
                self._controller = None
            self._stop_arm()
            self._reply(conn, P.OK)
            log.info("client %s released control", conn.peer)
            return False
        return True


    def _reply_observation(self, conn: _Connection, meta: dict[str, Any], data: Mapping[str, np.ndarray]) -> None:
        """An observation, its frames encoded as the connection asked (outside the arm lock: a
        JPEG takes milliseconds); one too large for a frame is refused, never sent."""
        try:
            arrays, jpeg = conn.frame_codec.encode(data)
        except FrameError as exc:
            self.stats.frames_refused += 1
            log.error("observation for %s not sent: %s", conn.peer, exc)
            self._error(conn, exc.code, str(exc))
            return
        if jpeg:
            meta["jpeg"] = jpeg
        self._reply(conn, P.OK, meta, arrays)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
