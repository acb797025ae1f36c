"""Property-based tests of the arm wire protocol: whatever bytes arrive, parsing ends in a
decoded message or a ``ProtocolError`` (which the server answers with an ERROR), never
another exception; and whatever the encoder sends, the decoder gives back."""
import json
import socket

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robolearn.hal import protocol as P

FAST = settings(max_examples=150, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
dims = st.one_of(st.integers(-3, 8), st.integers(), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3), st.none())
dtypes = st.sampled_from(sorted(P.ALLOWED_DTYPES) + ["|O", "<U4", "<c16", "V8", "", "nope"]) | st.text(max_size=5)
array_specs = st.one_of(
    st.fixed_dictionaries({"name": st.text(max_size=5) | st.integers(), "dtype": dtypes,
                           "shape": st.lists(dims, max_size=10) | dims}),
    json_values,
)
bodies = st.fixed_dictionaries({"arrays": st.lists(array_specs, max_size=4) | json_values},
                               optional={"x": json_values})


def decodes_or_refuses(js: bytes, blob: bytes) -> None:
    try:
        meta, arrays = P.decode_body(js, blob)
    except P.ProtocolError as exc:
        assert exc.code and str(exc)
        return
    assert isinstance(meta, dict) and "arrays" not in meta
    assert sum(a.nbytes for a in arrays.values()) == len(blob)
    assert all(a.dtype.str in P.ALLOWED_DTYPES for a in arrays.values())


@FAST
@given(st.binary(min_size=P.HEADER.size, max_size=P.HEADER.size))
def test_any_header_parses_or_is_refused(data):
    try:
        version, msg_type, jlen, blen = P.parse_header(data)
    except P.ProtocolError:
        return
    assert data[:4] == P.MAGIC and jlen <= P.MAX_JSON and blen <= P.MAX_BLOB


@FAST
@given(st.binary(max_size=P.HEADER.size + 4))
def test_header_of_any_length_parses_or_is_refused(data):
    try:
        P.parse_header(data)
    except P.ProtocolError:
        pass


@FAST
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_are_refused(js, blob):
    decodes_or_refuses(js, blob)


@FAST
@given(json_values, st.binary(max_size=64))
def test_arbitrary_json_decodes_or_is_refused(value, blob):
    decodes_or_refuses(json.dumps(value).encode(), blob)


@FAST
@given(bodies, st.binary(max_size=300))
def test_arbitrary_array_specs_decode_or_are_refused(body, blob):
    decodes_or_refuses(json.dumps(body).encode(), blob)


@FAST
@given(st.integers(1, 3000), st.sampled_from(["[", "{"]))
def test_nesting_is_bounded_without_recursion(depth, opener):
    """``{"v": [[...0...]]}`` or ``{"v": {"k": {"k": ... 0}}}``: ``depth + 1`` levels in all."""
    if opener == "[":
        nested = "[" * depth + "0" + "]" * depth
    else:
        nested = '{"k":' * depth + "0" + "}" * depth
    too_deep = depth + 1 > P.MAX_JSON_DEPTH
    try:
        meta, _ = P.decode_body(('{"v":' + nested + "}").encode(), b"")
    except P.ProtocolError as exc:
        assert exc.code == "bad_json" and too_deep
    else:
        assert not too_deep and "v" in meta


finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
allowed_arrays = st.dictionaries(
    st.text(min_size=1, max_size=8),
    hnp.arrays(st.sampled_from(sorted(P.ALLOWED_DTYPES)), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=6).filter(lambda k: k != "arrays"), finite_json, max_size=3), allowed_arrays,
       st.sampled_from(sorted(P.TYPE_NAMES)))
def test_encode_decode_roundtrip(meta, arrays, msg_type):
    frame = P.encode(msg_type, meta, arrays)
    version, mtype, jlen, blen = P.parse_header(frame[:P.HEADER.size])
    got_meta, got = P.decode_body(frame[P.HEADER.size:P.HEADER.size + jlen], frame[P.HEADER.size + jlen:])
    assert (version, mtype, got_meta) == (P.PROTOCOL_VERSION, msg_type, json.loads(json.dumps(meta)))
    assert set(got) == set(arrays)
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)


@FAST
@given(st.sampled_from([float("nan"), float("inf"), -float("inf")]), finite_json)
def test_encoder_refuses_non_finite_metadata(value, other):
    try:
        P.encode(P.OK, {"v": [other, value]})
    except P.ProtocolError as exc:
        assert exc.code == "bad_json"
    else:
        raise AssertionError("a NaN/inf in the metadata was encoded")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=120))
def test_any_byte_stream_on_a_socket_gives_a_frame_or_a_clean_error(stream):
    a, b = socket.socketpair()
    try:
        a.sendall(stream)
        a.shutdown(socket.SHUT_WR)
        b.settimeout(1.0)
        try:
            version, msg_type, js, blob = P.recv_frame(b, P.Deadline.after(1.0))
            decodes_or_refuses(js, blob)
        except (P.ProtocolError, P.ConnectionClosed):
            pass
    finally:
        a.close()
        b.close()


# -- authenticated frames ------------------------------------------------------------------
SECRET = b"0123456789abcdef-property-secret"
NONCES = (b"c" * P.NONCE_BYTES, b"s" * P.NONCE_BYTES)


def receive(stream: bytes, frame_auth: P.FrameAuth) -> tuple[int, int, bytes, bytes]:
    """``stream`` through a real socket pair into ``recv_frame`` with authentication."""
    a, b = socket.socketpair()
    try:
        a.sendall(stream)
        a.shutdown(socket.SHUT_WR)
        b.settimeout(1.0)
        return P.recv_frame(b, P.Deadline.after(1.0), frame_auth)
    finally:
        a.close()
        b.close()


def sealed_by_client(msg_type: int, meta, arrays) -> bytes:
    return P.FrameAuth.for_client(SECRET, *NONCES).seal(P.encode(msg_type, meta, arrays))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(P.TYPE_NAMES)), st.dictionaries(st.text(max_size=4), finite_json, max_size=2),
       allowed_arrays, st.data())
def test_any_single_byte_change_of_an_authenticated_frame_is_refused(msg_type, meta, arrays, data):
    frame = sealed_by_client(msg_type, meta, arrays)
    assert receive(frame, P.FrameAuth.for_server(SECRET, *NONCES))[1] == msg_type  # the frame as sent is accepted
    position = data.draw(st.integers(0, len(frame) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(frame)
    tampered[position] ^= flip
    try:
        receive(bytes(tampered), P.FrameAuth.for_server(SECRET, *NONCES))
    except P.ProtocolError as exc:
        assert exc.code == "unauthenticated" and str(exc) == P.UNAUTHENTICATED  # no detail of what failed
    except P.ConnectionClosed:
        pass  # a length made longer: the receiver waits for bytes that never come, and acts on nothing
    else:
        raise AssertionError(f"byte {position} changed (xor {flip:#x}) and the frame was accepted")


def test_replayed_reflected_reordered_or_foreign_frames_are_refused():
    client = P.FrameAuth.for_client(SECRET, *NONCES)
    first, second = (client.seal(P.encode(P.SEND, None, {"command": np.full(7, v, np.float32)})) for v in (0.1, 0.2))
    refusals = {
        "replayed": (first + first, P.FrameAuth.for_server(SECRET, *NONCES)),
        "reordered": (second, P.FrameAuth.for_server(SECRET, *NONCES)),
        "reflected to its sender": (first, P.FrameAuth.for_client(SECRET, *NONCES)),
        "from another connection": (first, P.FrameAuth.for_server(SECRET, NONCES[0], b"x" * P.NONCE_BYTES)),
        "under another secret": (first, P.FrameAuth.for_server(b"another-secret-of-enough-length", *NONCES)),
        "tag missing": (P.encode(P.SEND, None, {"command": np.zeros(7, np.float32)}) + first,
                        P.FrameAuth.for_server(SECRET, *NONCES)),
    }
    for what, (stream, server) in refusals.items():
        a, b = socket.socketpair()
        try:
            a.sendall(stream)
            b.settimeout(1.0)
            if what == "replayed":
                P.recv_frame(b, auth=server)  # the genuine first delivery is accepted
            try:
                P.recv_frame(b, auth=server)
            except P.ProtocolError as exc:
                assert exc.code == "unauthenticated", what
            else:
                raise AssertionError(f"a frame {what} was accepted")
        finally:
            a.close()
            b.close()
    server = P.FrameAuth.for_server(SECRET, *NONCES)
    assert [receive(f, server)[1] for f in (first, second)] == [P.SEND, P.SEND]  # in order: both accepted


def test_session_key_is_neither_proof_nor_secret():
    key = P.session_key(SECRET, *NONCES)
    assert len(key) == P.TAG_BYTES and key != SECRET
    assert key not in (P.server_proof(SECRET, *NONCES), P.client_proof(SECRET, *NONCES))
