"""Wire protocol between ``RemoteArm`` (policy host) and ``ArmServer`` (beside the robot).

Why this shape: a message must never execute code (no pickle), must be cheap to parse in
the control loop (a fixed header + a small JSON part + raw array bytes, no base64), and
must say which protocol version it speaks, so a mismatched client is refused with a
clear error instead of misreading bytes as joint targets.

Frame (network byte order):

    header  = magic b"RLRM" | version u16 | type u16 | json_len u32 | blob_len u32   (16 bytes)
    json    = UTF-8 JSON object; ``arrays`` lists {name, dtype, shape} in blob order
    blob    = the arrays' raw bytes, C order, concatenated

Only a whitelist of numeric dtypes is accepted; sizes, array dimensions and JSON nesting
are bounded before anything is computed from them, so a malformed frame raises
``ProtocolError`` (and is answered with an ERROR message) rather than allocating
gigabytes, overflowing an integer or exhausting the recursion limit.

Limits, checked from the header before any body byte is read: ``MAX_JSON`` (64 KiB) of JSON
and ``MAX_BLOB`` (16 MiB) of array data per frame, ``MAX_ARRAYS`` arrays of at most
``MAX_NDIM`` dimensions. Camera frames are arrays of an observation like any other, so one
observation with all its views must fit ``MAX_BLOB``: raw RGB is H x W x 3 bytes (640x480:
0.9 MiB, 1280x720: 2.6 MiB, so 6 raw 720p views fit), JPEG (``frame_codec``) a few percent
of that. A server refuses to send a larger observation (``frame_too_large``); a receiver
refuses a larger header (``too_large``) and closes, never waiting for the body.

Authentication. A server that has a shared secret accepts nothing
but ESTOP from a connection until it has passed this challenge-response; the secret
itself never crosses the wire, only HMAC-SHA256 values over fresh random nonces:

    client -> CHALLENGE {client_nonce}          32 random bytes, hex
    server -> OK {server_nonce, server_proof}   server_proof = HMAC(secret, "server" label | client_nonce | server_nonce)
    client -> AUTH {proof}                      proof        = HMAC(secret, "client" label | server_nonce | client_nonce)
    server -> OK {}  or  ERROR auth_failed (and closes)

The authentication is mutual: a client holding a secret checks ``server_proof`` before it
sends a single command, so it never drives an arm server that is not the one it shares
the secret with. The two labels differ, so neither side's proof can be replayed as the
other's.

Authenticated frames. A login proves who is at each end once; the
frames after it must be proved one by one, or anyone on the network path could alter a
command or inject their own into the established connection. After the AUTH reply both
sides derive a key for this connection alone, and every later frame in both directions
(the first one is the client's next request) is followed by a 32-byte tag:

    session_key = HMAC(secret, "session key" label | client_nonce | server_nonce)
    frame       = header | json | blob | tag
    tag         = HMAC(session_key, direction | seq u64 | header | json | blob)

``direction`` is b"C" for client to server and b"S" for server to client, so a frame
cannot be reflected back to its sender; ``seq`` counts the frames sent in that direction
from 0 and is not sent (as in SSH): each side knows which number comes next, so a
replayed, reordered, dropped or injected frame, or one from another connection (other
nonces, other key), fails the check like an altered one. A receiver refuses such a
frame with code ``unauthenticated`` without saying which part failed, and the
connection ends: the byte stream can no longer be trusted. Frames are not encrypted.
Without a secret (loopback only) frames carry no tag.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MAGIC = b"RLRM"
PROTOCOL_VERSION = 3
HEADER = struct.Struct("!4sHHII")
MAX_JSON = 64 * 1024
MAX_BLOB = 16 * 1024 * 1024
MAX_JSON_DEPTH = 32  # the protocol's messages nest 4 deep; this bounds the parser's recursion
MAX_ARRAYS = 64
MAX_NDIM = 8
NONCE_BYTES = 32
MIN_SECRET_BYTES = 16  # an eavesdropper can test guesses offline against one captured exchange
SECRET_ENV = "ROBOLEARN_ARM_SECRET"
_SERVER_LABEL = b"robolearn-arm/2 server proof"
_CLIENT_LABEL = b"robolearn-arm/2 client proof"
_SESSION_LABEL = b"robolearn-arm/3 session key"
TAG_BYTES = 32  # HMAC-SHA256 after every frame of an authenticated connection
CLIENT_TO_SERVER = b"C"
SERVER_TO_CLIENT = b"S"
_SEQUENCE = struct.Struct("!Q")
UNAUTHENTICATED = "frame failed authentication; connection closed"  # no detail of which check failed
ALLOWED_DTYPES = {"<f4", "<f8", "<i4", "<i8", "|u1", "|b1"}

# Message types. Requests from the client:
HELLO = 1  # take control of the arm; reply carries the spec
INFO = 2  # read the spec without taking control
OBSERVE = 3
SEND = 4
HOME = 5
STOP = 6
HEARTBEAT = 7
BYE = 8
ESTOP = 9  # latch the robot-side e-stop; accepted from ANY connection, control or not
RESET_ESTOP = 10  # needs control and, after a latch, the operator's acknowledgement on the robot host
CHALLENGE = 11  # start authentication: carries the client's nonce
AUTH = 12  # finish authentication: carries the client's proof
# Replies from the server:
OK = 64
ERROR = 65

TYPE_NAMES = {HELLO: "HELLO", INFO: "INFO", OBSERVE: "OBSERVE", SEND: "SEND", HOME: "HOME", STOP: "STOP",
              HEARTBEAT: "HEARTBEAT", BYE: "BYE", ESTOP: "ESTOP", RESET_ESTOP: "RESET_ESTOP", CHALLENGE: "CHALLENGE",
              AUTH: "AUTH", OK: "OK", ERROR: "ERROR"}


class ProtocolError(ValueError):
    """A frame that does not follow this protocol. ``code`` is sent back in the ERROR reply."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (or it broke) before a whole frame arrived."""


def encode(msg_type: int, meta: Mapping[str, Any] | None = None, arrays: Mapping[str, np.ndarray] | None = None,
           version: int = PROTOCOL_VERSION) -> bytes:
    body = dict(meta or {})
    parts = []
    if arrays:
        specs = []
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            if a.dtype.str not in ALLOWED_DTYPES:
                a = a.astype(np.float64 if a.dtype.kind == "f" else np.int64)
            specs.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
            parts.append(a.tobytes())
        body["arrays"] = specs
    try:
        js = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:  # NaN/inf: the peer would (rightly) refuse the frame
        raise ProtocolError("bad_json", f"cannot send message metadata: {exc}") from None
    blob = b"".join(parts)
    return HEADER.pack(MAGIC, version, msg_type, len(js), len(blob)) + js + blob


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """-> (version, type, json_len, blob_len); raises ProtocolError on bad magic or sizes."""
    if len(data) != HEADER.size:
        raise ProtocolError("bad_header", f"frame header must be {HEADER.size} bytes, got {len(data)}")
    magic, version, msg_type, jlen, blen = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError("bad_magic", f"not a robolearn arm-protocol frame (magic {magic!r}, expected {MAGIC!r})")
    if jlen > MAX_JSON or blen > MAX_BLOB:
        raise ProtocolError("too_large", f"frame too large (json {jlen} B, blob {blen} B; limits {MAX_JSON}, {MAX_BLOB})")
    return version, msg_type, jlen, blen


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` outside strings. Why a scan and not a try: the
    standard parser recurses once per level and a 20,000-deep document exhausts the
    interpreter's recursion limit; this counts without recursing."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str):
    raise ProtocolError("bad_json", f"message JSON contains {name}, which is not a JSON number")


def parse_json(js: bytes) -> dict[str, Any]:
    """The frame's JSON object; ProtocolError for anything else (bad UTF-8, syntax, NaN,
    nesting deeper than MAX_JSON_DEPTH, a top level that is not an object)."""
    if not js:
        return {}
    try:
        text = js.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_json", f"message JSON is not UTF-8 ({exc})") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError("bad_json", f"message JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        meta = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"message JSON is not valid ({exc})") from None
    if not isinstance(meta, dict):
        raise ProtocolError("bad_json", f"message JSON must be an object, got {type(meta).__name__}")
    return meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_array_spec(spec: Any) -> tuple[str, np.dtype, tuple[int, ...], int]:
    """-> (name, dtype, shape, nbytes) for one entry of ``arrays``. Every dimension must be a
    JSON integer in [0, MAX_BLOB] and the product is bounded before it is multiplied out,
    so a shape of ``[1e30]`` or ``[2**62, 2**62]`` is refused instead of overflowing."""
    if not isinstance(spec, dict) or not {"name", "dtype", "shape"} <= set(spec):
        raise ProtocolError("bad_arrays", "each entry of 'arrays' must be an object with name, dtype and shape")
    name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise ProtocolError("bad_arrays", "array name must be a string of 1 to 64 characters")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise ProtocolError("bad_dtype", f"array '{name}': dtype {str(dtype)[:20]!r} not allowed (allowed: {sorted(ALLOWED_DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise ProtocolError("bad_arrays", f"array '{name}': shape must be a list of at most {MAX_NDIM} integers")
    count = 1
    for dim in shape:
        if not _is_int(dim) or not 0 <= dim <= MAX_BLOB:
            raise ProtocolError("bad_arrays", f"array '{name}': shape entries must be integers in [0, {MAX_BLOB}]")
        count *= dim
        if count > MAX_BLOB:
            raise ProtocolError("bad_arrays", f"array '{name}': shape describes more than {MAX_BLOB} elements")
    dt = np.dtype(dtype)
    return name, dt, tuple(shape), count * dt.itemsize


def decode_body(js: bytes, blob: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta = parse_json(js)
    specs = meta.pop("arrays", [])
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise ProtocolError("bad_arrays", f"'arrays' must be a list of at most {MAX_ARRAYS} {{name, dtype, shape}}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name, dt, shape, nbytes = parse_array_spec(spec)
        if name in arrays:
            raise ProtocolError("bad_arrays", f"array '{name}' is described twice")
        if offset + nbytes > len(blob):
            raise ProtocolError("bad_arrays", f"array '{name}' of shape {shape} runs past the end of the data ({len(blob)} B)")
        arrays[name] = np.frombuffer(blob, dtype=dt, count=nbytes // dt.itemsize, offset=offset).reshape(shape)
        offset += nbytes
    if offset != len(blob):
        raise ProtocolError("bad_arrays", f"{len(blob) - offset} bytes of data not described by 'arrays'")
    return meta, arrays


class Deadline:
    """One deadline for several receives (a whole handshake), not a timeout per ``recv``:
    a peer sending one byte a second would reset a per-recv timeout forever.

    ``at`` (``time.monotonic()``) may be moved by another thread, e.g. set when a
    connection loses control; ``None`` means no deadline. Receives wake every ``TICK_S``
    to notice such a change."""

    TICK_S = 0.25

    def __init__(self, at: float | None = None):
        self.at = at

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.monotonic() + seconds)

    def expired(self) -> bool:
        at = self.at
        return at is not None and time.monotonic() >= at

    def wait_s(self) -> float:
        """How long the next receive may block; raises ``socket.timeout`` once expired."""
        at = self.at
        if at is None:
            return self.TICK_S
        left = at - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        return min(left, self.TICK_S)


def recv_exact(sock: socket.socket, n: int, deadline: Deadline | None = None) -> bytes:
    """``n`` bytes. Without ``deadline`` the socket's own timeout applies to each receive;
    with one, ``socket.timeout`` is raised when it passes however the bytes trickle in."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            if deadline is not None:
                sock.settimeout(deadline.wait_s())
            k = sock.recv_into(view[got:], n - got)
        except socket.timeout:
            if deadline is None or deadline.expired():
                raise
            continue
        if k == 0:
            raise ConnectionClosed(f"connection closed by peer ({got}/{n} bytes of a frame received)")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket, deadline: Deadline | None = None,
               auth: "FrameAuth | None" = None) -> tuple[int, int, bytes, bytes]:
    """-> (version, type, json bytes, blob bytes). Body parsing is separate so a version
    mismatch can be answered before the body is interpreted. With ``auth`` (an
    authenticated connection) the frame's tag is read and checked before anything is
    returned, and a header that does not parse is refused as ``unauthenticated`` too: the
    authenticated peer never sends one, so it was altered or injected on the way."""
    head = recv_exact(sock, HEADER.size, deadline)
    try:
        version, msg_type, jlen, blen = parse_header(head)
    except ProtocolError:
        if auth is None:
            raise
        raise ProtocolError("unauthenticated", UNAUTHENTICATED) from None
    tag_len = TAG_BYTES if auth is not None else 0
    rest = recv_exact(sock, jlen + blen + tag_len, deadline) if jlen + blen + tag_len else b""  # one receive, not three
    js, blob = rest[:jlen], rest[jlen:jlen + blen]
    if auth is not None:
        auth.verify(head, js, blob, rest[jlen + blen:])
    return version, msg_type, js, blob


def send_message(sock: socket.socket, msg_type: int, meta: Mapping[str, Any] | None = None,
                 arrays: Mapping[str, np.ndarray] | None = None, auth: "FrameAuth | None" = None) -> None:
    """Encode one frame, tag it when the connection is authenticated, and send it whole."""
    frame = encode(msg_type, meta, arrays)
    sock.sendall(frame if auth is None else auth.seal(frame))


def recv_message(sock: socket.socket, auth: "FrameAuth | None" = None) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """Receive and decode one frame of this protocol version: -> (type, meta, arrays)."""
    version, msg_type, js, blob = recv_frame(sock, auth=auth)
    if version != PROTOCOL_VERSION:
        raise ProtocolError("version", f"peer speaks protocol version {version}, this side speaks {PROTOCOL_VERSION}")
    meta, arrays = decode_body(js, blob)
    return msg_type, meta, arrays


def configure_socket(sock: socket.socket) -> None:
    """TCP_NODELAY: a 100-byte command must leave now, not wait for Nagle to batch it.
    TCP keepalive: a peer that vanished without a FIN (power loss, pulled cable) is found
    within about 16 s even on a connection that is idle, and its slot is freed."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


# -- shared secret and challenge-response ---------------------------------------------------
def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def server_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, _SERVER_LABEL + client_nonce + server_nonce, hashlib.sha256).digest()


def client_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, _CLIENT_LABEL + server_nonce + client_nonce, hashlib.sha256).digest()


def session_key(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The key that tags this connection's frames: HMAC-SHA256 as a key-derivation function,
    under a label of its own so it never equals either side's proof (which crossed the wire)."""
    return hmac.new(secret, _SESSION_LABEL + client_nonce + server_nonce, hashlib.sha256).digest()


class FrameAuth:
    """Tags the frames one side sends and checks the tags of the frames it receives, on one
    authenticated connection (see the module docstring). One HMAC per frame: the keyed
    state is computed once and copied. Not thread-safe: each connection's frames go out and
    come in one at a time, in order, which is what the sequence numbers count."""

    def __init__(self, key: bytes, send_direction: bytes, receive_direction: bytes):
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self._send_direction, self._receive_direction = send_direction, receive_direction
        self._sent = 0
        self._received = 0

    @classmethod
    def for_client(cls, secret: bytes, client_nonce: bytes, server_nonce: bytes) -> "FrameAuth":
        return cls(session_key(secret, client_nonce, server_nonce), CLIENT_TO_SERVER, SERVER_TO_CLIENT)

    @classmethod
    def for_server(cls, secret: bytes, client_nonce: bytes, server_nonce: bytes) -> "FrameAuth":
        return cls(session_key(secret, client_nonce, server_nonce), SERVER_TO_CLIENT, CLIENT_TO_SERVER)

    def _tag(self, direction: bytes, seq: int, *parts: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(direction + _SEQUENCE.pack(seq))
        for part in parts:
            mac.update(part)
        return mac.digest()

    def seal(self, frame: bytes) -> bytes:
        """``frame`` (header, json, blob) followed by its tag; counts it as sent."""
        tag = self._tag(self._send_direction, self._sent, frame)
        self._sent += 1
        return frame + tag

    def verify(self, header: bytes, js: bytes, blob: bytes, tag: bytes) -> None:
        """Accept the next received frame or raise ``ProtocolError("unauthenticated")``. A
        refused frame is not counted, but the connection must end anyway: after it the
        receiver cannot tell where the next genuine frame starts."""
        expected = self._tag(self._receive_direction, self._received, header, js, blob)
        if not hmac.compare_digest(expected, tag):
            raise ProtocolError("unauthenticated", UNAUTHENTICATED)
        self._received += 1


def proof_matches(expected: bytes, given: Any) -> bool:
    """Constant-time comparison of a proof received as hex text (anything else: no match)."""
    got = hex_field(given, len(expected))
    return got is not None and hmac.compare_digest(expected, got)


def hex_field(value: Any, nbytes: int) -> bytes | None:
    """``value`` as bytes when it is hex text of exactly ``nbytes`` bytes, else None."""
    if not isinstance(value, str) or len(value) != 2 * nbytes:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _check_secret(secret: bytes, source: str, field: str) -> bytes:
    from robolearn.config import ConfigError

    secret = secret.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(source, field, f"the shared secret must be at least {MIN_SECRET_BYTES} bytes "
                          "(make one: python -c 'import secrets; print(secrets.token_hex(32))')")
    return secret


def read_secret_file(path: str | os.PathLike, source: str, field: str) -> bytes:
    """The secret in ``path``. Refused when group or others may read or write it, as ssh
    refuses such a key: a secret that every user of the robot host can read authenticates
    every one of them."""
    from robolearn.config import ConfigError

    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(source, field, f"cannot read the secret file {p} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(source, field, f"{p} is not a regular file")
    if mode & 0o077:
        raise ConfigError(source, field, f"{p} is accessible to group or others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {p}")
    return _check_secret(data, source, field)


def resolve_secret(secret_file: str | os.PathLike | None, source: str, field: str) -> bytes | None:
    """The shared secret: the file named in the config when there is one, else the
    environment variable ``ROBOLEARN_ARM_SECRET``, else None (no authentication)."""
    if secret_file is not None:
        return read_secret_file(secret_file, source, field)
    value = os.environ.get(SECRET_ENV)
    if value is None:
        return None
    return _check_secret(value.encode(), f"${SECRET_ENV}", "value")


def spec_to_json(spec) -> dict[str, Any]:
    a = spec.action_spec
    return {
        "name": spec.name,
        "control_hz": spec.control_hz,
        "obs_spec": {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in spec.obs_spec.items()},
        "action_spec": {"dim": a.dim, "low": a.low, "high": a.high, "names": a.names},
    }


def spec_from_json(d: Mapping[str, Any]):
    from robolearn.data.format import ActionSpec, ObsFieldSpec
    from robolearn.hal.arm import ArmSpec

    try:
        a = d["action_spec"]
        return ArmSpec(
            name=str(d["name"]),
            obs_spec={k: ObsFieldSpec(tuple(v["shape"]), str(v["dtype"])) for k, v in d["obs_spec"].items()},
            action_spec=ActionSpec(dim=int(a["dim"]), low=a["low"], high=a["high"], names=a.get("names")),
            control_hz=float(d["control_hz"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError("bad_spec", f"arm spec in the server's reply is malformed ({exc})") from None
