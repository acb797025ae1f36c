"""The workspace box holds for bursts of commands that are never preceded by an observation:
through a real ``robolearn serve-arm`` process over TCP, and on the PyBullet Panda whose
position motors have to track each target. Also: a controller file whose scale is infinite
is refused before any arm is built."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.hal.factory import make_arm
from robolearn.hal.remote import RemoteArm

REPO = Path(__file__).resolve().parents[1]
UP = np.array([0, 0, 1, 0, 0, 0, -1], np.float32)
NOOP_BOX_TOP = 1.30  # controllers/noop.yaml: shield.workspace_high[2]; home z is 1.00
#: Allowance for PyBullet's position motors tracking each IK target (measured: the grasp point
#: tops out at 0.59999 m under a 0.60 m box top, so no overshoot at all).
TRACKING_TOL = 0.01


@pytest.fixture
def noop_server():
    proc = subprocess.Popen([sys.executable, "-m", "robolearn", "serve-arm", "controllers/noop.yaml", "--port", "0",
                             "--log-level", "ERROR"], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), line
        yield int(line.strip().rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_thirty_sends_without_observe_stay_in_the_box_over_the_server(noop_server):
    arm = RemoteArm(port=noop_server)
    arm.connect()
    try:
        for _ in range(30):  # 30 x 5 cm upwards would end at z 2.50 m
            arm.send(UP)
        z = float(arm.observe().data["robot0_eef_pos"][2])
        shield = arm.server_info()["shield"]
    finally:
        arm.close()
    assert z <= NOOP_BOX_TOP + 1e-6
    assert z == pytest.approx(NOOP_BOX_TOP, abs=1e-6)  # it did go up to the top
    assert shield["clipped_workspace"] > 0


@pytest.fixture
def pybullet_arm():
    pytest.importorskip("pybullet")
    arm = make_arm("pybullet")  # controllers/pybullet_panda.yaml, box top z 0.60
    arm.connect()
    yield arm
    arm.close()


def burst_max_z(arm, n: int) -> float:
    """Highest measured grasp point over ``n`` upward sends with no observe in between."""
    highest = -np.inf
    for _ in range(n):
        arm.send(UP)
        highest = max(highest, float(arm.eef_position()[2]))
    return highest


def test_pybullet_burst_without_observe_stays_under_the_box_top(pybullet_arm):
    arm = pybullet_arm
    top = arm.config.workspace_high[2]
    arm.observe()
    assert burst_max_z(arm, 30) <= top + TRACKING_TOL  # 30 x 1.5 cm from home (z 0.36) would pass 0.80
    assert arm.stats.clipped_workspace > 0


def test_pybullet_sends_right_after_home_stay_under_the_box_top(pybullet_arm):
    arm = pybullet_arm
    top = arm.config.workspace_high[2]
    for _ in range(2):  # the second home() starts from the box top
        arm.home()
        assert burst_max_z(arm, 30) <= top + TRACKING_TOL
    assert arm.stats.clipped_workspace > 0


def test_controller_with_infinite_pos_scale_is_refused(tmp_path):
    text = (REPO / "controllers" / "noop.yaml").read_text()
    assert "pos_scale: 0.05" in text
    bad = tmp_path / "noop_inf.yaml"
    bad.write_text(text.replace("pos_scale: 0.05", "pos_scale: .inf", 1))
    with pytest.raises(ConfigError) as err:
        make_arm(None, bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and "pos_scale" in msg and "finite" in msg
