"""Camera frames over the arm server: a CameraArm on the robot side, a RemoteArm on the policy
side, real loopback sockets, an in-process ArmServer (with and without the shared secret, so
the frames travel inside HMAC-tagged frames too). The camera is a real ``Camera`` whose
frames are known, so what arrives can be compared byte for byte."""
import socket
import time

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.hal import protocol as P
from robolearn.hal.cameras.base import CameraSpec, Frame
from robolearn.hal.cameras.camera_arm import CameraArm
from robolearn.hal.cameras.capture import CameraRig
from robolearn.hal.frame_codec import FrameCodec, FrameError, jpeg_size
from robolearn.hal.noop_arm import NoopArm
from robolearn.hal.remote import RemoteArm, RemoteArmError
from robolearn.hal.server import ArmServer
from robolearn.hal.shield import SafetyShield, ShieldConfig

SECRET = b"frames-test-secret-0123456789abcdef"


def scene(height: int, width: int) -> np.ndarray:
    """A smooth picture with texture (JPEG's kind of image) and exact bytes to compare."""
    x = (np.arange(width) * 255 // max(width - 1, 1)).astype(np.uint8)
    y = (np.arange(height) * 255 // max(height - 1, 1)).astype(np.uint8)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0], img[..., 1] = x[None, :], y[:, None]
    img[..., 2] = (np.add.outer(np.arange(height), np.arange(width)) % 64 * 4).astype(np.uint8)
    return img


class PictureCamera:
    """Serves the same known picture at ``fps``, timestamped when it is taken."""

    def __init__(self, name: str, height: int, width: int, fps: float = 50.0, depth: bool = False):
        self.spec = CameraSpec(name=name, width=width, height=height, fps=fps, has_depth=depth)
        self.image = scene(height, width)
        self.depth = np.linspace(0.3, 2.0, height * width, dtype=np.float32).reshape(height, width, 1) if depth else None
        self.connected, self._n = False, 0

    def connect(self) -> None:
        self.connected = True

    def read(self) -> Frame:
        time.sleep(1.0 / self.spec.fps)
        self._n += 1
        return Frame(image=self.image, timestamp=time.monotonic(), index=self._n, depth=self.depth)

    def close(self) -> None:
        self.connected = False


def camera_arm(*cameras) -> SafetyShield:
    # Many stale observations allowed: the first ones, before a capture, have no image yet.
    arm = CameraArm(NoopArm(), CameraRig(list(cameras)), max_frame_age_s=1.0, max_stale_in_row=10_000)
    box = ShieldConfig(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 2], watchdog_ms=2000)
    return SafetyShield(arm, box, pos_scale=0.05, rot_scale=0.5)


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.delenv(P.SECRET_ENV, raising=False)
    servers = []

    def start(arm, secret=None):
        server = ArmServer(arm, heartbeat_ms=2000, secret=secret).start()
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.shutdown()


def first_observation(remote: RemoteArm):
    """The first observation with every frame in it (the capture threads start with the server)."""
    end = time.monotonic() + 10
    while True:
        obs = remote.observe()
        if all(k in obs.data for k in remote.spec.obs_spec):
            return obs
        assert time.monotonic() < end, f"no complete observation: {sorted(obs.data)}"
        time.sleep(0.02)


@pytest.mark.parametrize("secret", [None, SECRET], ids=["loopback", "authenticated"])
def test_raw_frames_arrive_bit_exact_with_their_ages(serve, secret):
    cam, wrist = PictureCamera("agentview", 48, 64, depth=True), PictureCamera("wrist", 24, 32)
    port = serve(camera_arm(cam, wrist), secret)
    remote = RemoteArm(port=port, secret=secret)
    remote.connect()
    try:
        assert remote.spec.obs_spec["agentview_image"].shape == (48, 64, 3)
        obs = first_observation(remote)
        np.testing.assert_array_equal(obs.data["agentview_image"], cam.image)
        np.testing.assert_array_equal(obs.data["wrist_image"], wrist.image)
        np.testing.assert_array_equal(obs.data["agentview_depth"], cam.depth)
        assert obs.data["agentview_image"].dtype == np.uint8
        for key in ("agentview_image_age_s", "wrist_image_age_s"):
            age = float(obs.data[key][0])
            assert np.isfinite(age) and -0.1 < age <= 1.0  # measured on the robot host, within max_frame_age
        remote.send(np.array([0.1, 0, 0, 0, 0, 0, 0], np.float32))  # commands still go through the shield
    finally:
        remote.close()


def test_jpeg_frames_are_smaller_and_close_to_the_picture(serve):
    cam = PictureCamera("agentview", 120, 160, depth=True)
    port = serve(camera_arm(cam))
    remote = RemoteArm(port=port, frame_encoding="jpeg", jpeg_quality=90)
    remote.connect()
    try:
        obs = first_observation(remote)
        img = obs.data["agentview_image"]
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8
        err = np.abs(img.astype(np.int16) - cam.image.astype(np.int16))
        assert err.mean() < 4.0 and not np.array_equal(img, cam.image)  # lossy, but close
        np.testing.assert_array_equal(obs.data["agentview_depth"], cam.depth)  # depth always travels raw
        assert np.isfinite(obs.data["agentview_image_age_s"][0])
        sent, _ = FrameCodec("jpeg", 90).encode({"agentview_image": cam.image})
        assert sent["agentview_image"].nbytes < cam.image.nbytes / 4
    finally:
        remote.close()


def test_an_observation_larger_than_a_frame_is_refused_clearly_and_the_link_survives(serve):
    big = PictureCamera("agentview", 2400, 2400, fps=5)  # 16.5 MiB raw, over the 16 MiB limit
    port = serve(camera_arm(big))
    remote = RemoteArm(port=port, timeout_s=5.0)
    remote.connect()
    try:
        end = time.monotonic() + 10
        while True:
            try:
                remote.observe()
            except RemoteArmError as exc:
                refused = exc
                break
            assert time.monotonic() < end, "the oversize observation was never refused"
            time.sleep(0.05)  # no frame captured yet: an observation without the image
        assert refused.code == "frame_too_large"
        assert "agentview_image 16.5 MiB" in str(refused) and "16 MiB" in str(refused) and "jpeg" in str(refused)
        remote.send(np.zeros(7, np.float32))  # the connection is still in order
        assert remote.server_info()["stats"]["frames_refused"] >= 1
    finally:
        remote.close()
    # The same views fit as JPEG.
    remote = RemoteArm(port=port, timeout_s=5.0, frame_encoding="jpeg")
    remote.connect()
    try:
        assert first_observation(remote).data["agentview_image"].shape == (2400, 2400, 3)
    finally:
        remote.close()


def test_frame_settings_are_checked_on_both_sides(serve):
    with pytest.raises(ConfigError, match="frame_encoding"):
        RemoteArm(frame_encoding="png")
    with pytest.raises(ConfigError, match="jpeg_quality"):
        RemoteArm(frame_encoding="jpeg", jpeg_quality=True)
    port = serve(camera_arm(PictureCamera("agentview", 8, 8)))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        P.send_message(s, P.HELLO, {"frames": {"encoding": "jpeg", "quality": 0}})
        rtype, meta, _ = P.recv_message(s)
        assert rtype == P.ERROR and meta["code"] == "bad_request" and "quality" in meta["message"]


def test_a_jpeg_whose_header_disagrees_with_the_spec_is_not_decoded():
    spec = {"agentview_image": type("S", (), {"shape": (48, 64, 3)})()}
    sent, jpeg = FrameCodec("jpeg").encode({"agentview_image": scene(48, 64)})
    assert jpeg_size(sent["agentview_image"].tobytes()) == (48, 64, 3)
    assert FrameCodec.decode(sent, jpeg, spec)["agentview_image"].shape == (48, 64, 3)
    huge, _ = FrameCodec("jpeg").encode({"agentview_image": scene(96, 64)})  # a server lying about its views
    with pytest.raises(FrameError, match=r"header says \(96, 64, 3\).*declares \(48, 64, 3\)"):
        FrameCodec.decode(huge, jpeg, spec)
    with pytest.raises(FrameError, match="header says None"):
        FrameCodec.decode({"agentview_image": np.frombuffer(b"not a jpeg", np.uint8)}, jpeg, spec)


def test_remote_arm_from_a_controller_file_names_bad_frame_settings(tmp_path):
    from robolearn.hal.factory import make_arm

    bad = tmp_path / "remote.yaml"
    bad.write_text("arm: remote\nparams: {port: 1, frame_encoding: webp}\n"
                   "shield: {workspace_low: [0, 0, 0], workspace_high: [1, 1, 1]}\n")
    with pytest.raises(ConfigError) as err:
        make_arm(None, bad)
    assert f"{bad}: field 'params.frame_encoding'" in str(err.value)


