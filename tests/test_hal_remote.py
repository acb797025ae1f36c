"""ArmServer/RemoteArm through a real `robolearn serve-arm` process and real loopback sockets.

No robot exists here: the served arm is the NoopArm behind its SafetyShield
(controllers/noop.yaml); the faults are injected for real (process killed, client silent,
garbage and wrong-version frames on the socket)."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from robolearn.hal import protocol as P
from robolearn.hal.arm import ArmError
from robolearn.hal.loop import ControlLoop
from robolearn.hal.remote import RemoteArm, RemoteArmError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(*extra, controller="controllers/noop.yaml"):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(P.SECRET_ENV, None)  # these servers listen on loopback without a secret
    proc = subprocess.Popen(
        [sys.executable, "-m", "robolearn", "serve-arm", controller, "--port", "0", "--log-level", "WARNING", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line.strip().rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def served():
    proc, port = start_server("--heartbeat-ms", "150")
    yield proc, port
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture
def server(served):
    return served[1]


class Forward:
    def reset(self):
        pass

    def act(self, obs):
        return np.array([0.2, 0, 0, 0, 0, 0, -1], np.float32)


def test_observe_send_and_server_side_shield(server):
    arm = RemoteArm(port=server)
    assert arm.spec.name == "noop" and arm.spec.action_spec.dim == 7  # readable before connecting (INFO)
    arm.connect()
    try:
        obs = arm.observe()
        assert set(obs.data) == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"}
        assert abs(obs.timestamp - time.monotonic()) < 1.0  # re-stamped on this host's clock
        applied = arm.send(np.array([0.5, 0, 0, 0, 0, 0, 0], np.float32))
        assert applied[0] == pytest.approx(0.5)
        # NaN is rejected by the robot-side shield: held (zero motion), counted.
        held = arm.send(np.array([np.nan, 0, 0, 0, 0, 0, 0], np.float32))
        assert np.all(held[:6] == 0)
        # Out-of-box: the noop box ends at x = 0.4; 20 full pushes would reach 1.0.
        for _ in range(20):
            arm.observe()
            arm.send(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
        assert arm.observe().data["robot0_eef_pos"][0] == pytest.approx(0.4, abs=1e-5)
        assert arm.success() is None  # a bare arm cannot tell success
        info = arm.server_info()
        assert info["shield"]["rejected_nonfinite"] == 1 and info["shield"]["clipped_workspace"] >= 1
        assert arm.heartbeat() < 1.0
    finally:
        arm.close()


def test_busy_and_malformed_and_wrong_version_refused_server_keeps_serving(server):
    owner = RemoteArm(port=server)
    owner.connect()
    try:
        with pytest.raises(RemoteArmError, match="busy"):
            RemoteArm(port=server).connect()
    finally:
        owner.close()
    # Garbage bytes: refused with bad_magic.
    with socket.create_connection(("127.0.0.1", server), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        rtype, meta, _ = P.recv_message(s)
        assert rtype == P.ERROR and meta["code"] == "bad_magic"
    # A well-formed frame of another protocol version: refused, naming both versions.
    with socket.create_connection(("127.0.0.1", server), timeout=2) as s:
        s.sendall(P.encode(P.HELLO, {}, version=P.PROTOCOL_VERSION + 1))
        rtype, meta, _ = P.recv_message(s)
        assert rtype == P.ERROR and meta["code"] == "version" and str(P.PROTOCOL_VERSION + 1) in meta["message"]
    # Bad JSON and a forbidden dtype (object arrays could smuggle pickles): refused.
    with socket.create_connection(("127.0.0.1", server), timeout=2) as s:
        s.sendall(P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.SEND, 5, 0) + b"{nope")
        assert P.recv_message(s)[1]["code"] == "bad_json"
    with socket.create_connection(("127.0.0.1", server), timeout=2) as s:
        js = b'{"arrays":[{"name":"command","dtype":"|O","shape":[1]}]}'
        s.sendall(P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.SEND, len(js), 8) + js + b"\0" * 8)
        assert P.recv_message(s)[1]["code"] == "bad_dtype"
    # The server still serves the next client.
    arm = RemoteArm(port=server)
    arm.connect()
    try:
        arm.send(np.zeros(7, np.float32))
        assert arm.server_info()["stats"]["refused_protocol"] >= 4
    finally:
        arm.close()


def test_estop_from_another_connection_latches_robot_side_and_needs_the_operator(served):
    from robolearn.hal.shield import EStopError

    proc, server = served
    arm = RemoteArm(port=server)
    arm.connect()
    try:
        arm.send(np.zeros(7, np.float32))
        RemoteArm(port=server).estop()  # e.g. a safety monitor on a second connection; needs no control
        for _ in range(2):
            with pytest.raises(EStopError, match="e-stop is latched"):
                arm.send(np.zeros(7, np.float32))
        assert arm.server_info()["stats"]["estops"] == 1
        # Holding control is not enough to clear it: the operator must acknowledge it on the robot host.
        with pytest.raises(RemoteArmError, match="kill -USR1") as refused:
            arm.reset_estop()
        assert refused.value.code == "estop_needs_operator"
        with pytest.raises(EStopError):
            arm.send(np.zeros(7, np.float32))
        proc.send_signal(signal.SIGUSR1)
        for _ in range(200):  # the acknowledgement lands when the server's main thread runs the handler
            try:
                arm.reset_estop()
                break
            except RemoteArmError as exc:
                assert exc.code == "estop_needs_operator"
                time.sleep(0.02)
        arm.send(np.zeros(7, np.float32))
    finally:
        arm.close()


def test_silent_client_makes_server_stop_arm_and_revoke_control(server):
    arm = RemoteArm(port=server)
    arm.connect()
    try:
        before = arm.server_info()["stats"]["heartbeat_stops"]
        arm.send(np.zeros(7, np.float32))
        time.sleep(0.6)  # the policy stalls well past the 150 ms heartbeat
        after = arm.server_info()["stats"]["heartbeat_stops"]
        assert after == before + 1
        with pytest.raises(RemoteArmError, match="control_lost"):
            arm.send(np.zeros(7, np.float32))  # the woken client does not drive the arm again by itself
        assert not arm.connected
        arm.connect()  # a new HELLO takes control anew
        arm.send(np.zeros(7, np.float32))
    finally:
        arm.close()


def test_server_killed_mid_run_gives_clear_error_fast():
    proc, port = start_server()
    arm = RemoteArm(port=port, timeout_s=1.0)
    arm.connect()
    loop = ControlLoop(arm, Forward(), hz=50)
    killed = {}

    def on_step(i, obs, applied):
        if i == 10:
            proc.kill()
            killed["t"] = time.monotonic()

    loop.on_step = on_step
    with pytest.raises(ArmError, match="arm server 127.0.0.1:%d" % port) as info:
        loop.run(max_steps=500)
    assert time.monotonic() - killed["t"] < 1.0 + 0.5  # reply deadline is 1 s
    assert "connection" in str(info.value) or "no reply" in str(info.value)
    assert not arm.connected
    proc.wait(timeout=5)


def test_connect_refused_is_clear():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(RemoteArmError, match=f"cannot connect to arm server 127.0.0.1:{port}"):
        RemoteArm(port=port, connect_timeout_s=0.5).connect()


def test_protocol_roundtrip_and_limits():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])}
    frame = P.encode(P.OBSERVE, {"x": 1}, arrays)
    version, mtype, jl, bl = P.parse_header(frame[: P.HEADER.size])
    meta, out = P.decode_body(frame[P.HEADER.size: P.HEADER.size + jl], frame[P.HEADER.size + jl:])
    assert (version, mtype, meta) == (P.PROTOCOL_VERSION, P.OBSERVE, {"x": 1})
    np.testing.assert_array_equal(out["a"], arrays["a"])
    with pytest.raises(P.ProtocolError, match="too large"):
        P.parse_header(P.HEADER.pack(P.MAGIC, 1, P.SEND, 10, P.MAX_BLOB + 1))
    with pytest.raises(P.ProtocolError, match="runs past the end"):
        P.decode_body(b'{"arrays":[{"name":"a","dtype":"<f4","shape":[100]}]}', b"\0" * 8)


def test_served_pybullet_task_reports_success_and_resets_on_home():
    pytest.importorskip("pybullet")
    proc, port = start_server("--task", "pybullet_lift", controller="controllers/pybullet_panda.yaml")
    try:
        arm = RemoteArm(port=port)
        arm.connect()
        o1 = arm.home().data["object"][:3]
        assert arm.observe().data["object"].shape == (10,)
        assert arm.success() is False
        o2 = arm.home().data["object"][:3]  # home = a new episode: the cube is placed again
        assert np.abs(o1 - o2).max() > 1e-4
        arm.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
