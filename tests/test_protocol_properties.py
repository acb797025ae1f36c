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
