"""RemoteArm: an Arm on the policy host that talks to an ``ArmServer`` beside the robot.

Every call is one request and one reply on a TCP connection with TCP_NODELAY. Every
receive has a deadline (``timeout_s``, 1 s by default): a server that dies or hangs
turns into an ``ArmError`` naming the server and the request within that time, never
a loop blocked forever. Observations are re-stamped with this host's monotonic clock
on arrival (the server's clock is a different one); the server's stamp is kept under
``server_timestamp``.

Camera frames of a ``CameraArm`` served on the robot host arrive in the observations, as
``frame_encoding`` asks (``raw``: bit-exact uint8; ``jpeg`` at ``jpeg_quality``: smaller,
lossy; ``robolearn/hal/frame_codec.py``), each with its ``<view>_image_age_s`` as the robot
host measured it: the frame's age when the arm state beside it was read. An observation too
large for one protocol frame fails with code ``frame_too_large``; the connection stays up.

There is deliberately no background heartbeat thread: if the policy stalls, the server
must notice, stop the arm and revoke control. Call ``heartbeat()`` explicitly during long
pauses that are intended (e.g. while an operator confirms). After a revocation every
request fails with code ``control_lost`` and the connection is dropped; ``connect()``
again takes control anew (only if nobody else has it) - never automatically.

With a shared secret (``secret_file``, else ``$ROBOLEARN_ARM_SECRET``) every connection
runs the challenge-response of ``protocol`` first, and the server must prove that it holds
the same secret before this side sends it anything else: a client with a secret refuses
a server without one. After it every frame in both directions carries a tag under the
connection's session key; a reply that fails the check (altered, replayed, reordered or
injected on the network) raises ``RemoteArmError`` with code ``unauthenticated`` and drops
the connection, as does the server's refusal of a request that failed its check.
"""
from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.hal import protocol as P
from robolearn.hal.arm import ArmError, ArmSpec, Observation
from robolearn.hal.frame_codec import FrameCodec, FrameError


class RemoteArmError(ArmError):
    """The server answered with an error, or the connection to it failed."""

    def __init__(self, message: str, code: str = "connection"):
        self.code = code
        super().__init__(message)


def _raise_for(code: str, message: str, where: str) -> None:
    from robolearn.hal.shield import EStopError, ShieldError

    text = f"{where}: [{code}] {message}"
    if code == "estop":
        raise EStopError(text)
    if code == "shield":
        raise ShieldError(text)
    raise RemoteArmError(text, code)


class RemoteArm:
    #: stop() from another thread is safe: requests are serialised and stop() gives up when busy.
    concurrent_stop_safe = True

    def __init__(self, host: str = "127.0.0.1", port: int = 5555, timeout_s: float = 1.0, connect_timeout_s: float = 3.0,
                 spec: ArmSpec | None = None, secret_file: str | Path | None = None, secret: bytes | None = None,
                 frame_encoding: str = "raw", jpeg_quality: int = 90):
        self.frame_codec = FrameCodec.checked(frame_encoding, jpeg_quality, "RemoteArm")
        self.host, self.port = host, int(port)
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self._spec = spec
        self._secret = secret if secret is not None else P.resolve_secret(secret_file, "RemoteArm", "params.secret_file")
        self._sock: socket.socket | None = None
        self._frame_auth: P.FrameAuth | None = None  # tags the control connection's frames (with a secret)
        self._lock = threading.Lock()
        self.server_heartbeat_ms: float | None = None
        self.last_server_timestamp: float | None = None

    @property
    def where(self) -> str:
        return f"arm server {self.host}:{self.port}"

    # -- connection -----------------------------------------------------------------------
    def _connect_socket(self) -> socket.socket:
        try:
            s = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise RemoteArmError(f"cannot connect to {self.where}: {_why_unreachable(exc, self.connect_timeout_s)}") from None
        try:
            P.configure_socket(s)
        except OSError:
            s.close()
            raise RemoteArmError(f"cannot connect to {self.where}: connection reset while opening") from None
        s.settimeout(self.timeout_s)
        return s

    def _open(self) -> tuple[socket.socket, P.FrameAuth | None]:
        """A connection and, when this side has a secret, the tagging of its authenticated frames."""
        s = self._connect_socket()
        try:
            return s, (self._authenticate(s) if self._secret is not None else None)
        except BaseException:
            s.close()
            raise

    def _authenticate(self, s: socket.socket) -> P.FrameAuth:
        """Mutual challenge-response: the server proves it holds the secret, then this side.
        -> the tagging of every later frame on ``s``, under this connection's session key."""
        client_nonce = P.new_nonce()
        try:
            meta, _ = self._roundtrip(s, self.where, P.CHALLENGE, {"client_nonce": client_nonce.hex()})
        except RemoteArmError as exc:
            if exc.code == "auth_unavailable":
                raise RemoteArmError(f"{self.where} has no shared secret, so it cannot prove it is the arm server "
                                     "this client's secret belongs to; refusing to drive it", "auth_failed") from None
            raise
        server_nonce = P.hex_field(meta.get("server_nonce"), P.NONCE_BYTES)
        if server_nonce is None or not P.proof_matches(P.server_proof(self._secret, client_nonce, server_nonce),
                                                       meta.get("server_proof")):
            raise RemoteArmError(f"{self.where} failed to prove it holds the shared secret (a different secret there, "
                                 "or not the arm server you meant); refusing to drive it", "auth_failed")
        proof = P.client_proof(self._secret, client_nonce, server_nonce)
        self._roundtrip(s, self.where, P.AUTH, {"proof": proof.hex()})
        return P.FrameAuth.for_client(self._secret, client_nonce, server_nonce)

    @staticmethod
    def _roundtrip(s: socket.socket, where: str, msg_type: int, meta=None, arrays=None,
                   frame_auth: P.FrameAuth | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        name = P.TYPE_NAMES.get(msg_type, str(msg_type))
        try:
            P.send_message(s, msg_type, meta, arrays, frame_auth)
            rtype, rmeta, rarrays = P.recv_message(s, frame_auth)
        except socket.timeout:
            raise RemoteArmError(f"{where}: no reply to {name} within {s.gettimeout():.2f} s (server hung or network down)") from None
        except P.ConnectionClosed as exc:
            raise RemoteArmError(f"{where}: connection lost during {name} ({exc}); is the server still running?") from None
        except P.ProtocolError as exc:
            if exc.code == "unauthenticated":
                raise RemoteArmError(f"{where}: the reply to {name} failed authentication (altered, replayed, reordered "
                                     "or injected on the network); connection dropped", exc.code) from None
            raise RemoteArmError(f"{where}: malformed reply to {name}: {exc}", exc.code) from None
        except OSError as exc:
            raise RemoteArmError(f"{where}: connection lost during {name} ({exc})") from None
        if rtype == P.ERROR:
            _raise_for(str(rmeta.get("code", "error")), str(rmeta.get("message", "")), f"{where} refused {name}")
        if rtype != P.OK:
            raise RemoteArmError(f"{where}: unexpected reply type {rtype} to {name}", "bad_type")
        return rmeta, rarrays

    def _call(self, msg_type: int, meta=None, arrays=None, lock_timeout: float = -1):
        # One request/reply at a time on the socket: a watchdog thread's stop() must never
        # interleave its frames with the control thread's.
        if not self._lock.acquire(timeout=lock_timeout):
            raise RemoteArmError(f"{self.where}: another request is in flight", "busy_local")
        try:
            if self._sock is None:
                raise RemoteArmError(f"{self.where}: not connected; call connect() first", "not_connected")
            try:
                return self._roundtrip(self._sock, self.where, msg_type, meta, arrays, self._frame_auth)
            except RemoteArmError as exc:
                if exc.code in ("connection", "bad_magic", "version", "bad_json", "bad_arrays", "bad_dtype", "too_large",
                                "bad_header", "control_lost", "handshake_timeout", "unauthenticated"):
                    self._drop()
                raise
        finally:
            self._lock.release()

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._frame_auth = None

    @property
    def spec(self) -> ArmSpec:
        """Readable without taking control: asks the server (INFO) the first time."""
        if self._spec is None:
            s, frame_auth = self._open()
            try:
                meta, _ = self._roundtrip(s, self.where, P.INFO, frame_auth=frame_auth)
            finally:
                s.close()
            self._spec = P.spec_from_json(meta["spec"])
        return self._spec

    def server_info(self) -> dict[str, Any]:
        """The server's INFO reply (spec, counters) over a separate connection; needs no control."""
        s, frame_auth = self._open()
        try:
            meta, _ = self._roundtrip(s, self.where, P.INFO, frame_auth=frame_auth)
        finally:
            s.close()
        return meta

    @spec.setter
    def spec(self, value: ArmSpec) -> None:
        self._spec = value

    def connect(self) -> None:
        if self._sock is not None:
            return
        self._sock, self._frame_auth = self._open()
        try:
            meta, _ = self._call(P.HELLO, {"client": "robolearn.RemoteArm", "frames": self.frame_codec.to_json()})
        except BaseException:
            self._drop()
            raise
        server_spec = P.spec_from_json(meta["spec"])
        if self._spec is not None and (self._spec.action_spec.dim != server_spec.action_spec.dim
                                       or set(self._spec.obs_spec) != set(server_spec.obs_spec)):
            self.close()
            raise RemoteArmError(
                f"{self.where}: served arm {server_spec.name!r} does not match the configured spec "
                f"(action dim {server_spec.action_spec.dim} vs {self._spec.action_spec.dim}, "
                f"obs keys {sorted(server_spec.obs_spec)} vs {sorted(self._spec.obs_spec)})", "spec_mismatch")
        frames = meta.get("frames") or {"encoding": "raw"}
        if not isinstance(frames, dict) or frames.get("encoding") != self.frame_codec.encoding:
            self.close()
            raise RemoteArmError(f"{self.where}: asked for {self.frame_codec.encoding} frames, the server applies "
                                 f"{frames!r}", "frames_unavailable")
        self._spec = server_spec
        self.server_heartbeat_ms = meta.get("heartbeat_ms")

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # -- Arm protocol ---------------------------------------------------------------------
    def _obs(self, meta, arrays) -> Observation:
        self.last_server_timestamp = meta.get("timestamp")
        self._success = meta.get("success")
        try:
            data = FrameCodec.decode(arrays, meta.get("jpeg"), self.spec.obs_spec)
        except FrameError as exc:
            raise RemoteArmError(f"{self.where}: {exc}", exc.code) from None
        return Observation(time.monotonic(), data)

    def observe(self) -> Observation:
        return self._obs(*self._call(P.OBSERVE))

    def send(self, command: np.ndarray) -> np.ndarray:
        cmd = np.asarray(command, dtype=np.float32)
        _, arrays = self._call(P.SEND, None, {"command": cmd})
        return np.array(arrays["applied"])

    def home(self) -> Observation:
        old = self._sock.gettimeout() if self._sock is not None else None
        if self._sock is not None:
            self._sock.settimeout(max(30.0, self.timeout_s))  # homing a real arm takes seconds
        try:
            return self._obs(*self._call(P.HOME))
        finally:
            if self._sock is not None:
                self._sock.settimeout(old)

    def stop(self) -> None:
        """Best effort: when the connection is gone the server has already stopped the arm, and
        when another thread's request is stuck in flight the server's heartbeat and watchdog
        stop it (this call then gives up after 50 ms rather than corrupt the stream)."""
        if self._sock is None:
            return
        try:
            self._call(P.STOP, lock_timeout=0.05)
        except RemoteArmError:
            pass

    def success(self) -> bool | None:
        """The served task's success flag from the latest observation; None when the served
        arm cannot tell (a real arm without a success detector)."""
        return getattr(self, "_success", None)

    def estop(self) -> None:
        """Latch the robot-side e-stop over a connection of its own, so it works from a signal
        handler or another thread while a request is in flight on the control connection.
        Unauthenticated on purpose: the server accepts ESTOP from anyone, and a stop must
        not wait for a handshake."""
        s = self._connect_socket()
        try:
            self._roundtrip(s, self.where, P.ESTOP)
        finally:
            s.close()

    def reset_estop(self) -> None:
        """Clears the robot-side latch only after the operator acknowledged it on the robot
        host; until then this raises ``RemoteArmError`` with code ``estop_needs_operator``."""
        self._call(P.RESET_ESTOP)

    def heartbeat(self) -> float:
        """Tell the server this side is alive; returns the round trip in seconds."""
        t = time.perf_counter()
        self._call(P.HEARTBEAT)
        return time.perf_counter() - t

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            self._call(P.BYE)
        except ArmError:
            pass
        self._drop()


def _why_unreachable(exc: OSError, timeout_s: float) -> str:
    """One phrase for why a connection attempt failed, in words an operator can act on."""
    if isinstance(exc, socket.gaierror):
        return f"host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, socket.timeout):
        return f"no answer within {timeout_s:.1f} s (host down, firewalled or wrong address)"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused (is `robolearn serve-arm` running there, on this port?)"
    return exc.strerror or str(exc)
