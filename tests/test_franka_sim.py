"""The Franka adapter through franky-control against franky-sim: a MuJoCo FR3 behind the
libfranka network protocol, run as its own process (``python -m franky_sim.run_server``).

What this reaches that the stand-ins in test_hal_drivers.py cannot: franky's real classes
(2.x), libfranka's network protocol, its control loop and motion generators, a simulated
arm that moves. franky-sim runs without a real-time kernel only with franky's
``RealtimeConfig.Ignore`` (``params.realtime: false``); the real-time refusal itself is
checked too. Skipped, with the reason, when franky-control or franky-sim is not installed
(``pip install 'robolearn[franka-sim]'``) or the simulator cannot be reached."""
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from robolearn.hal.arm import ArmError

franky = pytest.importorskip("franky", reason="franky-control is not installed: pip install 'robolearn[franka-sim]'")
pytest.importorskip("franky_sim", reason="franky-sim is not installed: pip install 'robolearn[franka-sim]'")

from robolearn.hal.drivers.franka import FrankaArm  # noqa: E402
from robolearn.hal.factory import make_arm  # noqa: E402
from robolearn.paths import CONTROLLERS_DIR  # noqa: E402

SIM_START_Q = [0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785]  # franky-sim's initial joint configuration


def wait_until(condition, within_s: float = 15.0) -> None:
    """Poll a condition on the simulated arm (which runs slower than real time on a loaded machine)."""
    end = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < end, "the simulated arm did not get there"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def sim_host():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "franky_sim.run_server", "--simulator", "mujoco"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    host, seen = None, []
    deadline = time.monotonic() + 60
    while host is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
        m = re.search(r"using '([^']+)' as the robot IP", line)
        host = m.group(1) if m else None
    if host is None:
        proc.kill()
        pytest.skip(f"franky-sim did not start: {' | '.join(seen)[-300:]}")
    try:
        probe = FrankaArm(host, realtime=False)
        probe.connect()
        probe.close()
    except ArmError as exc:
        proc.kill()
        pytest.skip(f"franky-control cannot connect to franky-sim at {host}: {exc}")
    yield host
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_realtime_is_required_unless_switched_off(sim_host):
    if os.path.exists("/sys/kernel/realtime") and open("/sys/kernel/realtime").read().strip() == "1":
        pytest.skip("this kernel is real-time: franky accepts Enforce here")
    with pytest.raises(ArmError, match="cannot connect to the Franka.*realtime capabilities"):
        FrankaArm(sim_host).connect()  # params.realtime defaults to true, as a real cell needs


def test_direct_motions_gripper_stop_and_home_move_the_simulated_arm(sim_host):
    home = list(SIM_START_Q)
    home[0] = 0.05
    arm = FrankaArm(sim_host, pos_scale=0.02, rot_scale=0.2, relative_dynamics_factor=0.5, realtime=False, home_q=home)
    arm.connect()
    try:
        obs = arm.observe()
        assert obs.data["robot0_joint_pos"].shape == (7,) and obs.data["robot0_eef_quat"].shape == (4,)
        np.testing.assert_allclose(obs.data["robot0_joint_pos"], SIM_START_Q, atol=1e-3)
        start = arm.eef_position()
        arm.send(np.array([0, 0, -1, 0, 0, 0, 1], np.float32))  # 2 cm down, close the gripper
        wait_until(lambda: abs(arm.eef_position()[2] - (start[2] - 0.02)) < 1e-3)
        np.testing.assert_allclose(arm.eef_position()[:2], start[:2], atol=1e-3)
        wait_until(lambda: arm.observe().data["robot0_gripper_qpos"][0] < 0.03)  # fingers closing
        arm.stop()
        obs = arm.home()
        np.testing.assert_allclose(obs.data["robot0_joint_pos"], home, atol=5e-3)
    finally:
        arm.close()
    assert not arm.connected


def test_follower_through_the_shield_streams_inside_the_box(sim_host, tmp_path):
    cfg = yaml.safe_load((CONTROLLERS_DIR / "franka.yaml").read_text())
    cfg["params"].update(host=sim_host, realtime=False, relative_dynamics_factor=0.5,
                         follower={"rate_hz": 100, "max_target_age_ms": 150})
    cfg["shield"]["workspace_high"][2] = 0.53  # 1 cm above franky-sim's start pose (z = 0.521)
    path = tmp_path / "franka_sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    arm = make_arm("franka", path)
    arm.connect()
    try:
        raw = arm.arm
        assert raw.follower is not None and raw.follower.config.rate_hz == 100
        top = cfg["shield"]["workspace_high"][2]
        end = time.monotonic() + 20
        # The policy pushes up at 20 Hz; the shield clips every target at the top face. (A silent
        # policy would be stopped by the shield's watchdog, so the loop keeps sending.)
        while abs(arm.eef_position()[2] - top) > 1e-3:
            assert time.monotonic() < end, "the simulated arm did not reach the box's top face"
            arm.send(np.array([0, 0, 1, 0, 0, 0, -1], np.float32))
            time.sleep(0.05)
        assert arm.stats.clipped_workspace >= 1
        path_ = raw.follower.record.arrays()
        assert len(path_["t"]) > 8 and path_["commanded"][:, 2].max() <= top + 1e-9  # never past the clipped target
        summary = raw.follower.summary()
        assert np.isfinite(summary["pos_err_rms_mm"]) and summary["ticks"] == len(path_["t"])
        arm.stop()
        assert not raw.follower.active
        n = raw.follower.stats.setpoints_sent
        time.sleep(0.1)
        assert raw.follower.stats.setpoints_sent == n  # nothing streamed after the stop
    finally:
        arm.close()
