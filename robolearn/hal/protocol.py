"""Wire protocol between ``RemoteArm`` (policy host) and ``ArmServer`` (beside the robot).

Why this shape: a message must never execute code (no pickle), must be cheap to parse in
the control loop (a fixed header + a small JSON part + raw array bytes, no base64), and
must say which protocol version it speaks, so a mismatched client is refused with a
clear error instead of misreading bytes as joint targets.

Frame (network byte order):

    header  = magic b"RLRM" | version u16 | type u16 | json_len u32 | blob_len u32   (16 bytes)
    json    = UTF-8 JSON object; ``arrays`` lists {name, dtype, shape} in blob order
    blob    = the arrays' raw bytes, C order, concatenated

Only a whitelist of numeric dtypes is accepted, and sizes are bounded, so a malformed
frame raises ``ProtocolError`` (and is answered with an ERROR message) rather than
allocating gigabytes or crashing the server.
"""
from __future__ import annotations

import json
import socket
import struct
from typing import Any, Mapping

import numpy as np

MAGIC = b"RLRM"
PROTOCOL_VERSION = 1
HEADER = struct.Struct("!4sHHII")
MAX_JSON = 64 * 1024
MAX_BLOB = 16 * 1024 * 1024
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
RESET_ESTOP = 10  # needs control
# Replies from the server:
OK = 64
ERROR = 65

TYPE_NAMES = {HELLO: "HELLO", INFO: "INFO", OBSERVE: "OBSERVE", SEND: "SEND", HOME: "HOME", STOP: "STOP",
              HEARTBEAT: "HEARTBEAT", BYE: "BYE", ESTOP: "ESTOP", RESET_ESTOP: "RESET_ESTOP", OK: "OK", ERROR: "ERROR"}


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
    js = json.dumps(body, separators=(",", ":")).encode()
    blob = b"".join(parts)
    return HEADER.pack(MAGIC, version, msg_type, len(js), len(blob)) + js + blob


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """-> (version, type, json_len, blob_len); raises ProtocolError on bad magic or sizes."""
    magic, version, msg_type, jlen, blen = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError("bad_magic", f"not a robolearn arm-protocol frame (magic {magic!r}, expected {MAGIC!r})")
    if jlen > MAX_JSON or blen > MAX_BLOB:
        raise ProtocolError("too_large", f"frame too large (json {jlen} B, blob {blen} B; limits {MAX_JSON}, {MAX_BLOB})")
    return version, msg_type, jlen, blen


def decode_body(js: bytes, blob: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        meta = json.loads(js.decode()) if js else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"message JSON is not valid ({exc})") from None
    if not isinstance(meta, dict):
        raise ProtocolError("bad_json", f"message JSON must be an object, got {type(meta).__name__}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    specs = meta.pop("arrays", [])
    if not isinstance(specs, list):
        raise ProtocolError("bad_arrays", "'arrays' must be a list of {name, dtype, shape}")
    for spec in specs:
        try:
            name, dtype, shape = str(spec["name"]), str(spec["dtype"]), tuple(int(s) for s in spec["shape"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("bad_arrays", f"array spec {spec!r} needs name, dtype and shape") from None
        if dtype not in ALLOWED_DTYPES:
            raise ProtocolError("bad_dtype", f"array '{name}': dtype {dtype!r} not allowed (allowed: {sorted(ALLOWED_DTYPES)})")
        if any(s < 0 for s in shape):
            raise ProtocolError("bad_arrays", f"array '{name}': negative shape {shape}")
        dt = np.dtype(dtype)
        nbytes = dt.itemsize * int(np.prod(shape, dtype=np.int64))
        if offset + nbytes > len(blob):
            raise ProtocolError("bad_arrays", f"array '{name}' of shape {shape} runs past the end of the data ({len(blob)} B)")
        arrays[name] = np.frombuffer(blob, dtype=dt, count=nbytes // dt.itemsize, offset=offset).reshape(shape)
        offset += nbytes
    if offset != len(blob):
        raise ProtocolError("bad_arrays", f"{len(blob) - offset} bytes of data not described by 'arrays'")
    return meta, arrays


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionClosed(f"connection closed by peer ({got}/{n} bytes of a frame received)")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[int, int, bytes, bytes]:
    """-> (version, type, json bytes, blob bytes). Body parsing is separate so a version
    mismatch can be answered before the body is interpreted."""
    version, msg_type, jlen, blen = parse_header(recv_exact(sock, HEADER.size))
    js = recv_exact(sock, jlen) if jlen else b""
    blob = recv_exact(sock, blen) if blen else b""
    return version, msg_type, js, blob


def recv_message(sock: socket.socket) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """Receive and decode one frame of this protocol version: -> (type, meta, arrays)."""
    version, msg_type, js, blob = recv_frame(sock)
    if version != PROTOCOL_VERSION:
        raise ProtocolError("version", f"peer speaks protocol version {version}, this side speaks {PROTOCOL_VERSION}")
    meta, arrays = decode_body(js, blob)
    return msg_type, meta, arrays


def configure_socket(sock: socket.socket) -> None:
    """TCP_NODELAY: a 100-byte command must leave now, not wait for Nagle to batch it."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
