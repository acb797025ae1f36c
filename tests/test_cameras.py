"""Cameras in the HAL: simulated (MuJoCo on a real Lift scene, PyBullet), OpenCV through a
recorded video file, RealSense through an injected fake ``pyrealsense2``, the capture thread,
and ``CameraArm`` joining frames and arm state (stale frames dropped, the shield's box kept)."""
from __future__ import annotations

import logging
import math
import sys
import threading
import time
import types

import numpy as np
import pytest

import robolearn.sim_compat  # noqa: F401  (sets MUJOCO_GL=osmesa before MuJoCo is imported)
from robolearn.config import ConfigError
from robolearn.hal.cameras import (CameraArm, CameraError, CameraRig, CameraSpec, CaptureThread, Frame, SimSync,
                                   StaleFrameError, cameras_config, make_cameras)
from robolearn.hal.cameras.realsense_camera import RealSenseCamera
from robolearn.hal.noop_arm import NoopArm
from robolearn.hal.shield import SafetyShield, ShieldConfig


class FakeCamera:
    """A camera whose frames the test hands out: ``put()`` releases one; ``age_s`` back-dates them."""

    def __init__(self, name: str = "agentview", width: int = 8, height: int = 6, age_s: float = 0.0):
        self.spec = CameraSpec(name=name, width=width, height=height, fps=30.0)
        self.age_s = age_s
        self._gate = threading.Semaphore(0)
        self._n = 0
        self.connected = False
        self.closed = False

    def connect(self) -> None:
        self.connected = True

    def put(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    def read(self) -> Frame:
        if not self._gate.acquire(timeout=0.05):  # like a device's read timeout
            raise CameraError("no frame within 50 ms")
        self._n += 1
        img = np.full((self.spec.height, self.spec.width, 3), self._n % 256, np.uint8)
        return Frame(image=img, timestamp=time.monotonic() - self.age_s, index=self._n)

    def close(self) -> None:
        self.closed = True


def wait_until(cond, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.002)


# -- capture thread -------------------------------------------------------------------------
def test_capture_thread_keeps_newest_frame_and_ages_grow_while_stalled():
    cam = FakeCamera()
    rig = CameraRig([cam])
    rig.start()
    try:
        assert cam.connected
        cam.put(3)
        wait_until(lambda: rig.threads["agentview"].stats.frames == 3)
        frame, age1 = rig.latest()["agentview"]
        assert frame.index == 3 and int(frame.image[0, 0, 0]) == 3  # only the newest is kept
        time.sleep(0.02)  # the camera delivers nothing: the same frame only gets older
        frame2, age2 = rig.latest()["agentview"]
        assert frame2 is frame and age2 > age1
        cam.put()
        wait_until(lambda: rig.latest()["agentview"][0].index == 4)
    finally:
        rig.stop()
    assert cam.closed  # closed by its own thread


def test_capture_thread_reports_connect_error_in_caller_and_counts_read_errors(caplog):
    class Broken(FakeCamera):
        def connect(self):
            raise CameraError("camera 'agentview': no device")

    with pytest.raises(CameraError, match="no device"):
        CaptureThread(Broken()).start()

    class Flaky(FakeCamera):
        def read(self):
            if self._n == 0:
                self._n = 1
                raise OSError("usb hiccup")
            return super().read()

    cam = Flaky()
    cam.put()
    t = CaptureThread(cam, retry_s=0.001)
    with caplog.at_level(logging.WARNING):
        t.start()
        try:
            wait_until(lambda: t.stats.frames == 1)
        finally:
            t.stop()
    assert t.stats.errors >= 1 and "usb hiccup" in caplog.text


# -- CameraArm ------------------------------------------------------------------------------
def test_camera_arm_adds_frames_and_drops_and_counts_stale_ones():
    cam = FakeCamera(age_s=0.0)
    arm = CameraArm(NoopArm(), CameraRig([cam]), max_frame_age_s=0.5, max_stale_in_row=2)
    assert arm.spec.obs_spec["agentview_image"].shape == (6, 8, 3) and arm.spec.obs_spec["agentview_image"].dtype == "uint8"
    assert "robot0_eef_pos" in arm.spec.obs_spec and "agentview_image_age_s" in arm.spec.obs_spec
    arm.connect()
    try:
        cam.put()
        wait_until(lambda: arm.rig.latest()["agentview"][0] is not None)
        ob = arm.observe()
        assert ob.data["agentview_image"].dtype == np.uint8 and ob.data["agentview_image"].shape == (6, 8, 3)
        assert 0 <= ob.data["agentview_image_age_s"][0] < 0.5 and "robot0_eef_pos" in ob.data
        cam.age_s = 5.0  # from now on every frame is 5 s old when it arrives
        cam.put()
        wait_until(lambda: arm.rig.latest()["agentview"][0].index == 2)
        ob = arm.observe()
        assert "agentview_image" not in ob.data  # dropped, never passed on as new
        assert ob.data["agentview_image_age_s"][0] >= 5.0
        assert arm.camera_stats.dropped["agentview"] == 1 and arm.camera_stats.served["agentview"] == 1
        with pytest.raises(StaleFrameError, match="agentview .newest frame 5[0-9]{3} ms old"):
            arm.observe()
        assert arm.camera_stats.dropped["agentview"] == 2
        cam.age_s = 0.0
        cam.put()
        wait_until(lambda: arm.rig.latest()["agentview"][0].index == 3)
        assert "agentview_image" in arm.observe().data and arm.camera_stats.stale_in_row == 0
    finally:
        arm.close()


def test_camera_arm_without_any_frame_raises_at_once_by_default():
    arm = CameraArm(NoopArm(), CameraRig([FakeCamera()]), max_frame_age_s=0.05)
    arm.connect()
    try:
        with pytest.raises(StaleFrameError, match="no frame yet"):
            arm.observe()
    finally:
        arm.close()


BOX = dict(workspace_low=[-0.2, -0.2, 0.9], workspace_high=[0.2, 0.2, 1.2], watchdog_ms=0)


@pytest.mark.parametrize("shield_outside", [True, False])
def test_shield_box_still_enforced_with_camera_arm(shield_outside):
    cam = FakeCamera()
    if shield_outside:
        arm = SafetyShield(CameraArm(NoopArm(), CameraRig([cam])), ShieldConfig(**BOX))
    else:
        arm = CameraArm(SafetyShield(NoopArm(), ShieldConfig(**BOX)), CameraRig([cam]))
    arm.connect()
    try:
        cam.put()
        wait_until(lambda: cam._n == 1)
        for _ in range(20):  # +x at full speed: 0.05 m per step would leave the box at step 5
            arm.send(np.array([1.0, 0, 0, 0, 0, 0, -1]))
        ob = arm.observe()
        assert ob.data["robot0_eef_pos"][0] <= 0.2 + 1e-6 and "agentview_image" in ob.data
        shield = arm if shield_outside else arm.arm
        assert shield.stats.clipped_workspace > 0
        assert arm.stats is shield.stats  # the shield's counters stay visible in either order
    finally:
        arm.close()


# -- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("section, field", [
    ({"views": {"agentview": {"width": True}}}, "cameras.views.agentview.width"),
    ({"views": {"agentview": {"height": -84}}}, "cameras.views.agentview.height"),
    ({"views": {"agentview": {"type": "kinect"}}}, "cameras.views.agentview.type"),
    ({"max_frame_age_ms": float("nan")}, "cameras.max_frame_age_ms"),
    ({"max_frame_age_ms": 0}, "cameras.max_frame_age_ms"),
    ({"views": {"agentview": {"fps": "30"}}}, "cameras.views.agentview.fps"),
    ({"views": {"agent-view": {}}}, "cameras.views.agent-view"),
    ({"view": {}}, "cameras.view"),
])
def test_bad_camera_config_names_file_and_field(section, field):
    with pytest.raises(ConfigError) as err:
        cameras_config(section, "controllers/x.yaml")
    assert err.value.field == field and str(err.value).startswith("controllers/x.yaml: field ")


def test_simulated_view_needs_a_simulated_arm():
    with pytest.raises(ConfigError, match="cameras.views.agentview.type.*not simulated"):
        make_cameras({"views": {"agentview": {"type": "mujoco"}}}, "launch.yaml", sim=None)


# -- RealSense through a fake pyrealsense2 ----------------------------------------------------
def fake_rs(width: int, height: int, calls: dict) -> types.SimpleNamespace:
    """Just the parts of pyrealsense2 RealSenseCamera uses, recording what it is asked."""

    class VideoFrame:
        def __init__(self, data, n):
            self.data, self.n = data, n

        def __bool__(self):
            return True

        def get_data(self):
            return self.data

        def get_frame_number(self):
            return self.n

    class FrameSet:
        def __init__(self, n, aligned=False):
            self.n, self.aligned = n, aligned

        def get_color_frame(self):
            return VideoFrame(np.full((height, width, 3), self.n, np.uint8), self.n)

        def get_depth_frame(self):
            assert self.aligned, "depth must be aligned to colour first"
            return VideoFrame(np.full((height, width), 1000, np.uint16), self.n)

    class Pipeline:
        n = 0

        def start(self, config):
            calls["streams"] = config.streams
            dev = types.SimpleNamespace(first_depth_sensor=lambda: types.SimpleNamespace(get_depth_scale=lambda: 0.001))
            intr = types.SimpleNamespace(fx=600.0, fy=601.0, ppx=320.5, ppy=240.5)
            stream = types.SimpleNamespace(as_video_stream_profile=lambda: types.SimpleNamespace(get_intrinsics=lambda: intr))
            return types.SimpleNamespace(get_stream=lambda s: stream, get_device=lambda: dev)

        def wait_for_frames(self, timeout_ms):
            Pipeline.n += 1
            calls["waits"] = Pipeline.n
            return FrameSet(Pipeline.n)

        def stop(self):
            calls["stopped"] = True

    class Config:
        def __init__(self):
            self.streams = []

        def enable_device(self, serial):
            calls["serial"] = serial

        def enable_stream(self, *args):
            self.streams.append(args)

    class Align:
        def __init__(self, to):
            calls["align_to"] = to

        def process(self, frames):
            return FrameSet(frames.n, aligned=True)

    return types.SimpleNamespace(pipeline=Pipeline, config=Config, align=Align,
                                 stream=types.SimpleNamespace(color="color", depth="depth"),
                                 format=types.SimpleNamespace(rgb8="rgb8", z16="z16"))


def test_realsense_colour_and_aligned_depth_after_warmup():
    calls: dict = {}
    cam = RealSenseCamera(width=8, height=6, fps=30, depth=True, name="front", serial="123", warmup_frames=5,
                          rs_module=fake_rs(8, 6, calls))
    assert cam.spec.has_depth and cam.spec.intrinsics is None  # known once the stream runs
    cam.connect()
    assert calls["waits"] == 5 and calls["serial"] == "123" and calls["align_to"] == "color"
    assert ("color", 8, 6, "rgb8", 30) in calls["streams"] and ("depth", 8, 6, "z16", 30) in calls["streams"]
    assert cam.spec.intrinsics.fx == 600.0 and cam.spec.intrinsics.cy == 240.5
    f = cam.read()
    assert f.index == 6 and f.image.shape == (6, 8, 3) and f.image.dtype == np.uint8  # warm-up frames never served
    assert f.depth.shape == (6, 8, 1) and f.depth.dtype == np.float32 and f.depth[0, 0, 0] == pytest.approx(1.0)
    cam.close()
    assert calls["stopped"]


def test_realsense_without_pyrealsense2_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # import fails as if not installed
    with pytest.raises(CameraError, match=r"robolearn\[realsense\]"):
        RealSenseCamera().connect()


# -- OpenCV through a recorded video file ---------------------------------------------------
def test_opencv_camera_reads_a_recorded_mp4(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV (cv2) not installed: pip install 'robolearn[opencv]'")
    from robolearn.hal.cameras.opencv_camera import OpenCVCamera
    from robolearn.video import write_mp4

    yy, xx = np.mgrid[0:48, 0:64]
    frames = [np.stack([(xx * 4 + 10 * i) % 256, yy * 5, np.full_like(xx, 40 * i)], -1).astype(np.uint8) for i in range(4)]
    path = write_mp4(tmp_path / "cam.mp4", frames, fps=10)
    cam = OpenCVCamera(str(path), width=64, height=48, fps=10, name="wrist")
    cam.connect()
    try:
        for want in frames:
            got = cam.read()
            assert got.image.shape == (48, 64, 3) and got.image.dtype == np.uint8
            assert np.abs(got.image.astype(int) - want.astype(int)).mean() < 8  # H.264 is lossy
        with pytest.raises(CameraError, match="end of file"):
            cam.read()
    finally:
        cam.close()
    with pytest.raises(CameraError, match="asked .* for 84x84, it gives 64x48"):
        OpenCVCamera(str(path), width=84, height=84).connect()
    with pytest.raises(CameraError, match="could not open"):
        OpenCVCamera(str(tmp_path / "missing.mp4"), width=64, height=48).connect()


def test_opencv_calibration_file_errors_name_file_and_field(tmp_path):
    from robolearn.hal.cameras.opencv_camera import OpenCVCamera

    cal = tmp_path / "cal.yaml"
    cal.write_text("width: 64\nheight: 48\nfx: 50.0\nfy: .nan\ncx: 32\ncy: 24\n")
    with pytest.raises(ConfigError, match="cal.yaml: field 'fy'"):
        OpenCVCamera(0, 64, 48, calibration=cal)
    cal.write_text("width: 64\nheight: 48\nfx: 50.0\nfy: 51\ncx: 32\ncy: 24\n")
    assert OpenCVCamera(0, 64, 48, calibration=cal).spec.intrinsics.fy == 51.0
    with pytest.raises(ConfigError, match="field 'width'.*64x48.*84x84"):
        OpenCVCamera(0, 84, 84, calibration=cal)


# -- simulators -----------------------------------------------------------------------------
def test_pybullet_camera_renders_with_intrinsics_of_its_projection():
    pytest.importorskip("pybullet")
    from robolearn.hal.cameras.pybullet_camera import PyBulletCamera, pybullet_client
    from robolearn.hal.pybullet_arm import PyBulletArm

    arm = PyBulletArm()
    arm.connect()
    try:
        cam = PyBulletCamera(pybullet_client(arm), width=32, height=24, fov_deg=60, depth=True,
                             eye=[1.0, 0.0, 0.6], target=[0.3, 0.0, 0.3])
        k = cam.spec.intrinsics  # known before connecting
        assert k.fy == pytest.approx(12 / math.tan(math.radians(30))) and (k.cx, k.cy) == (16, 12)
        cam.connect()
        got = cam.projection_intrinsics()
        assert got.fx == pytest.approx(k.fx, rel=1e-4) and got.fy == pytest.approx(k.fy, rel=1e-4)
        f = cam.read()
        assert f.image.shape == (24, 32, 3) and f.image.dtype == np.uint8 and f.image.std() > 0
        assert f.depth.shape == (24, 32, 1) and np.all(f.depth > 0.05) and np.all(f.depth <= 5.0 + 1e-4)
        cam.close()
    finally:
        arm.close()


@pytest.fixture(scope="module")
def lift_arm():
    pytest.importorskip("robosuite")
    pytest.importorskip("mujoco")
    from robolearn.tasks.task_arm import make_task_arm

    shielded = make_task_arm("robosuite", task="lift", seed=0)
    yield shielded
    shielded.close()


def test_mujoco_cameras_on_lift_through_camera_arm_and_shield(lift_arm):
    """Two 84 x 84 robosuite cameras behind the shield: frames show the state the arm reports
    (same sync version), change when the arm moves, and their intrinsics follow fovy."""
    rig, cfg = make_cameras({"views": {"agentview": {}, "robot0_eye_in_hand": {}}}, "test", sim=lift_arm)
    inner = lift_arm.arm
    arm = SafetyShield(CameraArm(inner, rig, max_frame_age_s=5.0), lift_arm.config, lift_arm.pos_scale, lift_arm.rot_scale)
    arm.connect()
    try:
        first = arm.home()
        for key in ("agentview_image", "robot0_eye_in_hand_image"):
            assert first.data[key].shape == (84, 84, 3) and first.data[key].dtype == np.uint8
            assert arm.spec.obs_spec[key].shape == (84, 84, 3)
        assert "object" in first.data and "robot0_eef_pos" in first.data
        for _ in range(3):
            arm.send(np.array([0.0, 0.0, 1.0, 0, 0, 0, -1]))
        moved = arm.observe()
        for name in ("agentview", "robot0_eye_in_hand"):
            assert rig.threads[name].latest().index == rig.sync.version  # the frame of the current state
            diff = np.abs(moved.data[f"{name}_image"].astype(int) - first.data[f"{name}_image"].astype(int)).mean()
            assert diff > 0.5, name
        import mujoco

        model = rig.cameras["agentview"].handles()[0]  # the MjModel the arm's robosuite env steps
        for name in ("agentview", "robot0_eye_in_hand"):
            k = rig.cameras[name].spec.intrinsics
            fovy = float(model.cam_fovy[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)])
            assert k.fy == pytest.approx(42 / math.tan(math.radians(fovy) / 2)) and k.fx == k.fy and (k.cx, k.cy) == (42, 42)
        assert arm.camera_stats.dropped == {"agentview": 0, "robot0_eye_in_hand": 0}
    finally:
        rig.stop()  # the module's arm stays open for other tests; only the cameras go


def _controller_with_cameras(tmp_path, base: str, cameras: dict):
    import yaml

    from robolearn.paths import CONTROLLERS_DIR

    cfg = yaml.safe_load((CONTROLLERS_DIR / base).read_text())
    cfg["cameras"] = cameras
    path = tmp_path / base
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_controller_file_cameras_are_built_inside_the_shield(tmp_path):
    """A controller file's ``cameras:`` section gives ``SafetyShield(CameraArm(task arm))``:
    the frames arrive as observation keys and the shield stays outermost."""
    from robolearn.tasks.task_arm import make_task_arm

    path = _controller_with_cameras(tmp_path, "robosuite_panda_osc.yaml",
                                    {"max_frame_age_ms": 200, "views": {"agentview": {"width": 24, "height": 24}}})
    arm = make_task_arm(None, path, task="lift", seed=0)
    try:
        assert isinstance(arm, SafetyShield) and isinstance(arm.arm, CameraArm)
        assert arm.spec.obs_spec["agentview_image"].shape == (24, 24, 3)
        arm.connect()
        obs = arm.home()
        assert obs.data["agentview_image"].shape == (24, 24, 3) and obs.data["agentview_image"].dtype == np.uint8
        arm.send(np.zeros(7, np.float32))
        assert "agentview_image" in arm.observe().data
    finally:
        arm.close()


def test_controller_file_camera_errors_name_the_file(tmp_path):
    from robolearn.hal.factory import make_arm

    bad = _controller_with_cameras(tmp_path, "noop.yaml", {"views": {"agentview": {"width": -4, "height": 24}}})
    with pytest.raises(ConfigError, match=rf"{bad}.*cameras.views.agentview.width"):
        make_arm(None, bad)
    (tmp_path / "sim").mkdir()
    sim_on_real = _controller_with_cameras(tmp_path / "sim", "noop.yaml",
                                           {"views": {"agentview": {"type": "mujoco", "width": 24, "height": 24}}})
    with pytest.raises(ConfigError, match=str(sim_on_real)):
        make_arm(None, sim_on_real)  # a simulated view needs a simulated arm to render
