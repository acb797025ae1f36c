"""The arm server on a network: authentication, hostile and broken peers, control handover.

Real sockets on loopback throughout; the faults that concern the process (descriptor
exhaustion, tracebacks on stderr, exit status) run ``robolearn serve-arm`` as a real
subprocess. The served arm is the NoopArm behind its SafetyShield (controllers/noop.yaml)."""
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from robolearn.config import ConfigError
from robolearn.hal import protocol as P
from robolearn.hal.factory import make_arm
from robolearn.hal.remote import RemoteArm, RemoteArmError
from robolearn.hal.server import ArmServer, ArmServerError, ServerConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = b"0123456789abcdef-test-secret-not-for-robots"
ZERO = np.zeros(7, np.float32)


@pytest.fixture(autouse=True)
def no_ambient_secret(monkeypatch):
    monkeypatch.delenv(P.SECRET_ENV, raising=False)


# -- helpers ----------------------------------------------------------------------------
def controller_yaml(tmp_path, **server) -> str:
    """controllers/noop.yaml with its server section changed, as a real file."""
    with open(os.path.join(REPO, "controllers", "noop.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["server"].update(server)
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


class ServeArm:
    """``robolearn serve-arm`` in a subprocess; stderr is collected by a thread."""

    def __init__(self, controller: str, *extra: str, preexec_fn=None):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(P.SECRET_ENV, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "robolearn", "serve-arm", controller, "--port", "0", "--log-level", "WARNING", *extra],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=preexec_fn)
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.stderr}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_for_stderr(self, text: str, within_s: float = 10.0) -> bool:
        end = time.monotonic() + within_s
        while time.monotonic() < end:
            if text in self.stderr:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.stderr


@pytest.fixture
def local_server():
    """An in-process server on loopback factory: ArmServer(noop arm, **kwargs)."""
    servers = []

    def start(**kwargs):
        server = ArmServer(make_arm("noop"), **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def request(port: int, frame: bytes) -> tuple[int, dict]:
    """Send one raw frame on a fresh connection; -> the reply's (type, meta)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(frame)
        rtype, meta, _ = P.recv_message(s)
        return rtype, meta


def raw_frame(msg_type: int, js: bytes, blob: bytes = b"", version: int = P.PROTOCOL_VERSION) -> bytes:
    return P.HEADER.pack(P.MAGIC, version, msg_type, len(js), len(blob)) + js + blob


# -- hostile and broken peers -------------------------------------------------------------
def test_malformed_frames_get_an_error_and_no_traceback(tmp_path):
    server = ServeArm(controller_yaml(tmp_path))
    try:
        spec = '{"arrays":[{"name":"command","dtype":"<f8","shape":%s}]}'
        cases = {
            "shape overflow": (raw_frame(P.SEND, (spec % "[4611686018427387904,4611686018427387904]").encode()), "bad_arrays"),
            "shape 1e30": (raw_frame(P.SEND, (spec % "[1e30]").encode()), "bad_arrays"),
            "shape of booleans": (raw_frame(P.SEND, (spec % "[true]").encode(), b"\0" * 8), "bad_arrays"),
            "too many dims": (raw_frame(P.SEND, (spec % str([1] * 40)).encode(), b"\0" * 8), "bad_arrays"),
            "20,000-deep JSON": (raw_frame(P.SEND, b"[" * 20000 + b"]" * 20000), "bad_json"),
            "NaN in JSON": (raw_frame(P.HELLO, b'{"client":NaN}'), "bad_json"),
            "spec not an object": (raw_frame(P.SEND, b'{"arrays":["command"]}'), "bad_arrays"),
            "oversized length": (P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.SEND, P.MAX_JSON + 1, 0), "too_large"),
            "old protocol": (raw_frame(P.HELLO, b"{}", version=1), "version"),
            "protocol 2 (untagged frames)": (raw_frame(P.CHALLENGE, b"{}", version=2), "version"),
        }
        for what, (frame, code) in cases.items():
            rtype, meta = request(server.port, frame)
            assert (rtype, meta["code"]) == (P.ERROR, code), what
        # Inside a controlled session, a malformed command is refused and the session goes on.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(P.encode(P.HELLO, {}))
            assert P.recv_message(s)[0] == P.OK
            s.sendall(P.encode(P.SEND, None, {"command": np.zeros((7, 7))}))
            assert P.recv_message(s)[1]["code"] == "bad_request"
            s.sendall(P.encode(P.SEND, None, {"command": np.zeros(7, bool)}))
            assert P.recv_message(s)[1]["code"] == "bad_request"
            s.sendall(P.encode(P.SEND, None, {"command": ZERO}))
            assert P.recv_message(s)[0] == P.OK
            s.sendall(P.encode(P.BYE))
            assert P.recv_message(s)[0] == P.OK  # control released before the next client asks
        arm = RemoteArm(port=server.port)
        arm.connect()
        arm.send(ZERO)
        assert arm.server_info()["stats"]["refused_protocol"] == len(cases)
        arm.close()
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr
    assert "refused a message" in stderr  # each one logged, as one line


def test_slow_loris_is_dropped_at_the_handshake_deadline(tmp_path):
    server = ServeArm(controller_yaml(tmp_path, handshake_timeout_s=0.5))
    try:
        frame = P.encode(P.HELLO, {"client": "one byte at a time"})
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            sent = 0
            while sent < len(frame):
                s.sendall(frame[sent:sent + 1])
                sent += 1
                if select.select([s], [], [], 0.2)[0]:
                    break
            assert sent < len(frame)  # cut off mid-handshake, though every byte came within 0.2 s of the last
            rtype, meta, _ = P.recv_message(s)
            assert (rtype, meta["code"]) == (P.ERROR, "handshake_timeout")
        assert RemoteArm(port=server.port).server_info()["stats"]["handshake_timeouts"] == 1
    finally:
        assert "Traceback" not in server.stop()


def test_connections_beyond_the_cap_are_refused(local_server):
    server = local_server(max_connections=3, handshake_timeout_s=30.0)
    held = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(P.encode(P.INFO))
            assert P.recv_message(s)[0] == P.OK  # admitted and served
            held.append(s)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
            rtype, meta, _ = P.recv_message(extra)
            assert (rtype, meta["code"]) == (P.ERROR, "too_many_connections")
            assert extra.recv(1) == b""  # and closed
        assert server.stats.refused_too_many == 1
    finally:
        for s in held:
            s.close()


def test_accept_loop_survives_running_out_of_file_descriptors(tmp_path):
    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    server = ServeArm(controller_yaml(tmp_path, max_connections=200, handshake_timeout_s=60.0), preexec_fn=low_fd_limit)
    idle = []
    try:
        for _ in range(80):  # more idle connections than the server has descriptors
            s = socket.create_connection(("127.0.0.1", server.port), timeout=1)
            idle.append(s)
            s.sendall(P.encode(P.INFO))
            try:
                P.recv_message(s)
            except socket.timeout:
                break  # not accepted: the server is out of descriptors
        assert len(idle) < 80
        assert server.wait_for_stderr("accept() failed")  # it ran out, and said so
        for s in idle:
            s.close()
        idle.clear()
        info = RemoteArm(port=server.port, connect_timeout_s=10.0).server_info()  # still accepting
        assert info["stats"]["accept_errors"] >= 1
    finally:
        for s in idle:
            s.close()
        stderr = server.stop()
    assert "Traceback" not in stderr


# -- control handover ---------------------------------------------------------------------
def test_silent_controller_loses_control_to_the_next_client(local_server):
    server = local_server(heartbeat_ms=150, handshake_timeout_s=5.0)
    frozen, successor = RemoteArm(port=server.port), RemoteArm(port=server.port)
    frozen.connect()
    frozen.send(ZERO)
    with pytest.raises(RemoteArmError, match="busy"):
        RemoteArm(port=server.port).connect()
    time.sleep(0.6)  # the controller freezes well past the heartbeat
    successor.connect()  # control was released: the next client takes it with HELLO
    successor.send(ZERO)
    with pytest.raises(RemoteArmError) as refused:
        frozen.send(ZERO)  # the frozen process wakes up: its command is refused
    assert refused.value.code == "control_lost"
    with pytest.raises(RemoteArmError, match="busy"):
        frozen.connect()  # and it cannot take control back while the successor holds it
    assert server.stats.control_revoked == 1 and server.stats.heartbeat_stops == 1
    successor.close()


def test_controller_frozen_past_the_grace_period_is_closed_with_control_lost(local_server):
    server = local_server(heartbeat_ms=100, handshake_timeout_s=0.3)
    frozen = RemoteArm(port=server.port)
    frozen.connect()
    frozen.send(ZERO)
    time.sleep(0.8)  # silent past the heartbeat, then past the grace to HELLO again: the server closed it
    with pytest.raises(RemoteArmError) as refused:
        frozen.send(ZERO)
    assert refused.value.code in ("control_lost", "connection") and not frozen.connected
    assert server._controller is None and server.stats.control_revoked == 1


# -- authentication ---------------------------------------------------------------------
def test_right_secret_works_and_never_crosses_the_wire(local_server):
    server = local_server(secret=SECRET)
    relay = FrameRelay(server.port)
    try:
        arm = RemoteArm(port=relay.port, secret=SECRET)
        assert arm.spec.name == "noop"  # INFO over its own authenticated connection
        arm.connect()
        arm.observe()
        arm.send(ZERO)
        assert arm.server_info()["authenticates"] is True
        arm.close()
    finally:
        relay.close()
    wire = bytes(relay.captured)
    assert b"server_proof" in wire and b'"proof"' in wire  # the exchange went through the relay
    assert SECRET not in wire and SECRET.hex().encode() not in wire


def test_wrong_or_missing_secret_is_refused(local_server):
    server = local_server(secret=SECRET)
    wrong = b"another-secret-of-enough-length"
    with pytest.raises(RemoteArmError, match="failed to prove") as err:
        RemoteArm(port=server.port, secret=wrong).connect()  # the server's proof does not check out
    assert err.value.code == "auth_failed"
    # A client that skips checking the server and just sends a proof made with the wrong secret:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        client_nonce = P.new_nonce()
        s.sendall(P.encode(P.CHALLENGE, {"client_nonce": client_nonce.hex()}))
        _, meta, _ = P.recv_message(s)
        proof = P.client_proof(wrong, client_nonce, bytes.fromhex(meta["server_nonce"]))
        s.sendall(P.encode(P.AUTH, {"proof": proof.hex()}))
        assert P.recv_message(s)[1]["code"] == "auth_failed"
        assert s.recv(1) == b""  # and closed
    for call in (lambda arm: arm.connect(), lambda arm: arm.server_info()):
        with pytest.raises(RemoteArmError, match="requires authentication") as err:
            call(RemoteArm(port=server.port))  # no secret at all
        assert err.value.code == "auth_required"
    assert server.stats.refused_auth >= 3 and server._controller is None
    # ESTOP needs no authentication: stopping is always allowed.
    RemoteArm(port=server.port).estop()
    assert server.arm.estopped


def test_client_with_a_secret_refuses_a_server_without_one(local_server):
    server = local_server()
    with pytest.raises(RemoteArmError, match="has no shared secret") as err:
        RemoteArm(port=server.port, secret=SECRET).connect()
    assert err.value.code == "auth_failed" and server._controller is None


def test_listening_beyond_loopback_needs_a_secret(local_server):
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0:0.*needs a shared secret"):
        ArmServer(make_arm("noop"), host="0.0.0.0").start()
    server = local_server(host="0.0.0.0", secret=SECRET)
    arm = RemoteArm(port=server.port, secret=SECRET)
    arm.connect()
    arm.send(ZERO)
    arm.close()


def test_serve_arm_refuses_a_network_bind_without_a_secret():
    out = subprocess.run([sys.executable, "-m", "robolearn", "serve-arm", "controllers/noop.yaml", "--host", "0.0.0.0"],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != P.SECRET_ENV})
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "0.0.0.0:5555" in out.stderr and "shared secret" in out.stderr


def test_secret_file_must_be_private_and_long_enough(tmp_path, monkeypatch):
    path = tmp_path / "arm.secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        P.resolve_secret(str(path), "arm.yaml", "server.secret_file")
    path.chmod(0o600)
    assert P.resolve_secret(str(path), "arm.yaml", "server.secret_file") == SECRET
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        P.resolve_secret(str(path), "arm.yaml", "server.secret_file")
    with pytest.raises(ConfigError, match="server.secret_file.*cannot read"):
        P.resolve_secret(str(tmp_path / "missing"), "arm.yaml", "server.secret_file")
    monkeypatch.setenv(P.SECRET_ENV, SECRET.decode())
    assert P.resolve_secret(None, "arm.yaml", "server.secret_file") == SECRET
    assert RemoteArm(port=1)._secret == SECRET  # RemoteArm reads the same variable


def test_serve_arm_with_a_secret_file_authenticates_clients(tmp_path):
    path = tmp_path / "arm.secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    server = ServeArm(controller_yaml(tmp_path, secret_file=str(path)))
    try:
        with pytest.raises(RemoteArmError, match="auth"):
            RemoteArm(port=server.port).connect()
        arm = RemoteArm(port=server.port, secret_file=str(path))
        arm.connect()
        arm.send(ZERO)
        arm.close()
    finally:
        assert "Traceback" not in server.stop()


# -- settings and launch errors ----------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -100, 0, True, "300"])
def test_heartbeat_that_would_switch_safety_off_is_refused(value):
    with pytest.raises(ConfigError, match=r"arm\.yaml: field 'server\.heartbeat_ms'"):
        ServerConfig.from_mapping({"heartbeat_ms": value}, "arm.yaml")
    with pytest.raises(ConfigError, match="heartbeat_ms"):
        ArmServer(make_arm("noop"), heartbeat_ms=value)


@pytest.mark.parametrize("field,value", [("max_connections", 0), ("max_connections", True), ("max_connections", 2.5),
                                         ("handshake_timeout_s", float("nan")), ("secret_file", 3), ("secrets", "x")])
def test_bad_server_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"field 'server.{field}'"):
        ServerConfig.from_mapping({field: value}, "arm.yaml")


@pytest.mark.parametrize("how", ["flag", "yaml"])
def test_serve_arm_refuses_a_nan_heartbeat_in_one_line(tmp_path, how):
    if how == "flag":
        args, where = ["controllers/noop.yaml", "--heartbeat-ms", "nan"], "--heartbeat-ms"
    else:
        text = open(os.path.join(REPO, "controllers", "noop.yaml")).read().replace("heartbeat_ms: 300", "heartbeat_ms: .nan")
        (tmp_path / "arm.yaml").write_text(text)
        args, where = [str(tmp_path / "arm.yaml")], str(tmp_path / "arm.yaml")
    out = subprocess.run([sys.executable, "-m", "robolearn", "serve-arm", *args, "--port", "0"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and where in lines[0] and "server.heartbeat_ms" in lines[0]


def test_port_in_use_and_unresolvable_hosts_name_host_and_port():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ArmServerError, match=f"127.0.0.1:{port}: cannot listen .*in use"):
            ArmServer(make_arm("noop"), port=port).start()
    with pytest.raises(ArmServerError, match="no-such-host.invalid:0: cannot listen: host does not resolve"):
        ArmServer(make_arm("noop"), host="no-such-host.invalid", secret=SECRET).start()
    with pytest.raises(RemoteArmError, match="arm server no-such-host.invalid:5555: host name does not resolve"):
        RemoteArm(host="no-such-host.invalid").connect()


# -- authenticated frames: a man in the middle ---------------------------------------------
PUSH = np.array([0.5, 0, 0, 0, 0, 0, 0], np.float32)


class FrameRelay:
    """A man in the middle on loopback that forwards whole frames between a client and the
    server. Each connection's first two frames in each direction are the login (CHALLENGE,
    AUTH and their replies); every later frame carries a tag, and is handed to
    ``edit_request`` (client to server) or ``edit_reply`` (server to client) as
    ``(type, frame with tag)``, which returns the bytes to forward in its place. ``captured``
    holds every byte forwarded, both directions."""

    LOGIN_FRAMES = 2

    def __init__(self, target_port: int, edit_request=None, edit_reply=None):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._target = target_port
        self._edits = (edit_request or _unchanged, edit_reply or _unchanged)
        self.tagged_frames = 0
        self.captured = bytearray()
        self.upstream_closed = threading.Event()  # the server closed its side of the connection
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for src, dst, edit in ((client, upstream, self._edits[0]), (upstream, client, self._edits[1])):
                threading.Thread(target=self._pump, args=(src, dst, edit, src is upstream), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, edit, from_server: bool) -> None:
        try:
            for index in range(10**9):
                frame = self._read_frame(src, tagged=index >= self.LOGIN_FRAMES)
                if index >= self.LOGIN_FRAMES:
                    self.tagged_frames += 1
                    frame = edit(P.HEADER.unpack(frame[:P.HEADER.size])[2], frame)
                self.captured += frame
                dst.sendall(frame)
        except (OSError, P.ConnectionClosed):
            pass
        finally:
            if from_server:
                self.upstream_closed.set()
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _read_frame(sock: socket.socket, tagged: bool) -> bytes:
        head = P.recv_exact(sock, P.HEADER.size)
        _, _, _, jlen, blen = P.HEADER.unpack(head)
        return head + P.recv_exact(sock, jlen + blen + (P.TAG_BYTES if tagged else 0))

    def close(self) -> None:
        self._listener.close()


def _unchanged(msg_type: int, frame: bytes) -> bytes:
    return frame


@pytest.fixture
def guarded_server(local_server):
    """A server with a secret whose arm counts the stops the server asks for."""
    server = local_server(secret=SECRET, heartbeat_ms=2000)
    shield_stop = server.arm.stop
    server.stops = 0

    def counting_stop():
        server.stops += 1
        shield_stop()

    server.arm.stop = counting_stop
    return server


def eef_x(server) -> float:
    return float(server.arm.observe().data["robot0_eef_pos"][0])


def connect_through(relay: FrameRelay) -> RemoteArm:
    arm = RemoteArm(port=relay.port, secret=SECRET)
    arm.connect()
    return arm


def assert_refused_and_stopped(server, relay: FrameRelay, arm: RemoteArm, refused: pytest.ExceptionInfo) -> None:
    assert refused.value.code == "unauthenticated" and f"127.0.0.1:{relay.port}" in str(refused.value)
    assert not arm.connected and relay.upstream_closed.wait(5)  # the server closed the connection
    assert server.stats.refused_unauthenticated == 1 and server.stops >= 1 and server._controller is None


def test_untouched_relay_carries_tagged_frames_end_to_end(guarded_server):
    relay = FrameRelay(guarded_server.port)
    try:
        arm = connect_through(relay)
        x0 = eef_x(guarded_server)
        arm.observe()
        assert arm.send(PUSH)[0] == pytest.approx(0.5)
        assert eef_x(guarded_server) == pytest.approx(x0 + 0.025)
        arm.heartbeat()
        arm.close()
    finally:
        relay.close()
    assert relay.tagged_frames >= 8  # HELLO, OBSERVE, SEND, HEARTBEAT, BYE and their replies
    assert guarded_server.stats.refused_unauthenticated == 0


def test_flipped_byte_in_a_command_is_refused_and_stops_the_arm(guarded_server):
    def flip_command(msg_type, frame):
        if msg_type != P.SEND:
            return frame
        tampered = bytearray(frame)
        tampered[-P.TAG_BYTES - 25] ^= 0x3E  # the high byte of command[0]: 0.0 becomes 0.125
        return bytes(tampered)

    relay = FrameRelay(guarded_server.port, edit_request=flip_command)
    try:
        arm = connect_through(relay)
        x0, sends = eef_x(guarded_server), guarded_server.arm.arm.send_count
        with pytest.raises(RemoteArmError) as refused:
            arm.send(ZERO)
        assert_refused_and_stopped(guarded_server, relay, arm, refused)
        assert eef_x(guarded_server) == x0 and guarded_server.arm.arm.send_count == sends  # never applied
    finally:
        relay.close()


def test_replayed_command_is_refused(guarded_server):
    captured = []

    def replay_send(msg_type, frame):
        if msg_type == P.SEND and not captured:
            captured.append(frame)
            return frame
        return captured[0] if captured and msg_type == P.OBSERVE else frame  # the old SEND instead of an OBSERVE

    relay = FrameRelay(guarded_server.port, edit_request=replay_send)
    try:
        arm = connect_through(relay)
        arm.send(PUSH)
        x1 = eef_x(guarded_server)
        with pytest.raises(RemoteArmError) as refused:
            arm.observe()
        assert_refused_and_stopped(guarded_server, relay, arm, refused)
        assert eef_x(guarded_server) == x1  # the push was applied once, not twice
    finally:
        relay.close()


@pytest.mark.parametrize("forged_tag", [b"\0" * P.TAG_BYTES, b""], ids=["guessed_tag", "no_tag"])
def test_injected_command_is_refused(guarded_server, forged_tag):
    def inject_before_observe(msg_type, frame):
        if msg_type != P.OBSERVE:
            return frame
        return P.encode(P.SEND, None, {"command": PUSH}) + forged_tag + frame

    relay = FrameRelay(guarded_server.port, edit_request=inject_before_observe)
    try:
        arm = connect_through(relay)
        x0 = eef_x(guarded_server)
        with pytest.raises(RemoteArmError) as refused:
            arm.observe()
        assert_refused_and_stopped(guarded_server, relay, arm, refused)
        assert eef_x(guarded_server) == x0
    finally:
        relay.close()


def login(sock: socket.socket, secret: bytes) -> P.FrameAuth:
    """The client side of the challenge-response, by hand: -> the connection's frame tagging."""
    client_nonce = P.new_nonce()
    P.send_message(sock, P.CHALLENGE, {"client_nonce": client_nonce.hex()})
    server_nonce = bytes.fromhex(P.recv_message(sock)[1]["server_nonce"])
    P.send_message(sock, P.AUTH, {"proof": P.client_proof(secret, client_nonce, server_nonce).hex()})
    assert P.recv_message(sock)[0] == P.OK
    return P.FrameAuth.for_client(secret, client_nonce, server_nonce)


def test_reordered_frames_are_refused(guarded_server):
    held = []

    def swap_pair(msg_type, frame):
        if msg_type == P.SEND and not held:
            held.append(frame)
            return b""  # hold the first command back ...
        return frame + held.pop() if held else frame  # ... and deliver it after the second

    relay = FrameRelay(guarded_server.port, edit_request=swap_pair)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as s:
            frame_auth = login(s, SECRET)
            P.send_message(s, P.HELLO, {}, None, frame_auth)
            assert P.recv_message(s, frame_auth)[0] == P.OK
            x0 = eef_x(guarded_server)
            P.send_message(s, P.SEND, None, {"command": PUSH}, frame_auth)  # two commands in flight
            P.send_message(s, P.SEND, None, {"command": -PUSH}, frame_auth)
            rtype, meta, _ = P.recv_message(s, frame_auth)  # the server's refusal is itself tagged
            assert (rtype, meta["code"]) == (P.ERROR, "unauthenticated")
            assert s.recv(1) == b""  # and the connection is closed
        assert eef_x(guarded_server) == x0
        assert guarded_server.stats.refused_unauthenticated == 1 and guarded_server.stops >= 1
    finally:
        relay.close()


def test_altered_reply_is_refused_by_the_client(guarded_server):
    def flip_observation(msg_type, frame):
        if msg_type != P.OK or b'"timestamp"' not in frame:  # only the OBSERVE reply carries a timestamp
            return frame
        tampered = bytearray(frame)
        tampered[-P.TAG_BYTES - 1] ^= 0x01
        return bytes(tampered)

    relay = FrameRelay(guarded_server.port, edit_reply=flip_observation)
    try:
        arm = connect_through(relay)
        with pytest.raises(RemoteArmError, match=f"arm server 127.0.0.1:{relay.port}: the reply to OBSERVE failed "
                                                 "authentication") as refused:
            arm.observe()
        assert refused.value.code == "unauthenticated" and not arm.connected
        assert relay.upstream_closed.wait(5)  # the client dropped the connection; the server stopped the arm
        for _ in range(100):
            if guarded_server._controller is None:
                break
            time.sleep(0.02)
        assert guarded_server._controller is None and guarded_server.stops >= 1
    finally:
        relay.close()
