"""Teleoperation: devices (keyboard through a real pseudo-terminal, SpaceMouse from recorded
HID reports) and `robolearn teleop` end to end on the in-memory noop arm behind the shield."""
from __future__ import annotations

import io
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robolearn.config import ConfigError
from robolearn.data.format import DemoReader
from robolearn.teleop.devices import KeyboardConfig, KeyboardDevice, SpaceMouseConfig, SpaceMouseParser, make_device

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- devices


def test_keyboard_device_on_a_pty():
    master, slave = pty.openpty()
    t = [100.0]
    try:
        kb = KeyboardDevice(KeyboardConfig(pos_scale=0.5, rot_scale=0.25, hold_s=0.1), fd=slave, clock=lambda: t[0])
        import termios

        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: keys arrive unbuffered
        os.write(master, b"wql \nvyQ")
        time.sleep(0.05)
        cmd, events = kb.poll()
        np.testing.assert_allclose(cmd, [0.5, 0, -0.5, -0.25, 0, 0, 1.0])  # space toggled the gripper closed
        assert events == ["start", "save", "success", "quit"]
        t[0] += 0.2  # past hold_s: motion stops, gripper stays
        cmd, events = kb.poll()
        np.testing.assert_allclose(cmd, [0, 0, 0, 0, 0, 0, 1.0])
        assert events == []
        kb.close()
        assert termios.tcgetattr(slave)[3] & termios.ICANON  # terminal restored
    finally:
        os.close(master)
        os.close(slave)


def _report(kind: int, *vals: int) -> bytes:
    out = bytearray([kind])
    for v in vals:
        out += int(v).to_bytes(2, "little", signed=True)
    return bytes(out)


def test_spacemouse_parser_with_recorded_reports():
    """Byte strings as a SpaceMouse Compact sends them: report 1 = 6 axes, report 3 = buttons."""
    p = SpaceMouseParser(SpaceMouseConfig(pos_scale=1.0, rot_scale=1.0, deadzone=0.0))
    # bytes 1-2 are y, 3-4 x, 5-6 z (inverted), then roll, pitch, yaw (robosuite's convention)
    assert p.feed(bytes([1, 0x5E, 0x01, 0xA2, 0xFE, 0xAF, 0x00, 0, 0, 0x5E, 0x01, 0, 0])) == []
    np.testing.assert_allclose(p.command()[:6], [-350 / 350, 350 / 350, -175 / 350, 0, 1.0, 0], atol=1e-6)
    assert p.command()[6] == -1.0
    assert p.feed(bytes([3, 1])) == []  # left button down: gripper closes while held
    assert p.command()[6] == 1.0
    assert p.feed(bytes([3, 0])) == [] and p.command()[6] == -1.0
    assert p.feed(bytes([3, 2])) == ["start_or_save"]  # right button
    # deadzone: small deflection reads zero, full deflection still reaches 1
    q = SpaceMouseParser(SpaceMouseConfig(pos_scale=1.0, rot_scale=1.0, deadzone=0.1))
    q.feed(_report(1, 20, 700, 0, 0, 0, -700))
    np.testing.assert_allclose(q.command()[:6], [1.0, 0, 0, 0, 0, -1.0])
    # split-report models send rotation in report 2
    s = SpaceMouseParser(SpaceMouseConfig(pos_scale=1.0, rot_scale=0.5, deadzone=0.0), split_reports=True)
    s.feed(_report(1, 0, 175, 0))
    s.feed(_report(2, 350, 0, 0))
    np.testing.assert_allclose(s.command()[:6], [0.5, 0, 0, 0.5, 0, 0], atol=1e-6)


def test_device_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="deadzone"):
        SpaceMouseParser(SpaceMouseConfig(deadzone=1.5))
    with pytest.raises(ConfigError, match="hold_s"):
        make_device("keyboard", {"keyboard": {"hold_s": "long"}})
    with pytest.raises(ConfigError, match="unknown"):
        make_device("keyboard", {"keyboard": {"speed": 2}})
    with pytest.raises(ConfigError, match="unknown device"):
        make_device("wiimote")


# ----------------------------------------------------------------------------- end to end


class PtyProcess:
    """`robolearn teleop` with its stdin/stdout on a pseudo-terminal, as an operator would run it."""

    def __init__(self, args: list[str]):
        self.master, slave = pty.openpty()
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "robolearn", "teleop", *args], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=ROOT, env=env, close_fds=True)
        os.close(slave)
        self.buf = b""
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.buf += data

    def text(self) -> str:
        with self._lock:
            return self.buf.decode(errors="replace")

    def expect(self, s: str, timeout: float = 20.0, count: int = 1) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.text().count(s) >= count:
                return
            if self.proc.poll() is not None:
                time.sleep(0.1)
                if self.text().count(s) >= count:
                    return
                raise AssertionError(f"process exited ({self.proc.returncode}) before {s!r}:\n{self.text()[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {s!r}:\n{self.text()[-3000:]}")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout)
        self._t.join(2)
        os.close(self.master)
        return rc


@pytest.fixture()
def launch(tmp_path):
    p = tmp_path / "teleop.yaml"
    p.write_text("task: noop_reach\ndeploy: {arm: noop, hz: 50}\n")
    return p


def test_teleop_records_through_a_pty(tmp_path, launch):
    out = tmp_path / "demos"
    t = PtyProcess([str(launch), "--device", "keyboard", "--out", str(out)])
    try:
        t.expect("[idle]")
        t.send("\n")
        t.expect("[recording]")
        for _ in range(6):  # like a held key's auto-repeat
            t.send("w")
            time.sleep(0.05)
        t.send(" y")  # close the gripper, mark success
        time.sleep(0.2)
        t.send("v")
        t.expect("saved episode_000000")
        t.send("\n")
        t.expect("[recording]", count=2)
        t.send("ddd")
        time.sleep(0.1)
        t.send("x")
        t.expect("discarded episode")
        t.send("Q")
        assert t.wait() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert '"discarded": 1' in t.text()
    r = DemoReader(out)
    assert r.indices == [0] and r.meta.task == "noop_reach" and r.meta.control_hz == 50 and r.meta.source == "teleop:keyboard"
    ep = r.load(0)
    assert ep.success and ep.length >= 10
    pos = ep.obs["robot0_eef_pos"]
    assert pos[-1, 0] - pos[0, 0] > 0.05 and abs(pos[-1, 1] - pos[0, 1]) < 1e-6  # moved along +x only
    assert ep.actions[:, 0].max() > 0 and ep.actions[-1, 6] == 1.0  # gripper closed at the end
    assert np.all(np.diff(ep.timestamps) > 0)


def test_sigkill_mid_episode_keeps_saved_episodes_and_folder_appendable(tmp_path, launch):
    out = tmp_path / "demos"
    t = PtyProcess([str(launch), "--out", str(out)])
    try:
        t.expect("[idle]")
        t.send("\nwww")
        t.expect("[recording]")
        time.sleep(0.2)
        t.send("v")
        t.expect("saved episode_000000")
        t.send("\n")
        t.expect("[recording]", count=2)
        t.send("aaaa")
        time.sleep(0.3)
        os.kill(t.proc.pid, signal.SIGKILL)
        assert t.wait() == -signal.SIGKILL
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    r = DemoReader(out)
    assert r.indices == [0] and r.validate() == 1
    # resume: same folder, next index
    t = PtyProcess([str(launch), "--out", str(out), "--max-episodes", "1"])
    try:
        t.expect("next episode 1")
        t.send("\n")
        t.expect("[recording]")
        time.sleep(0.15)
        t.send("v")
        t.expect("saved episode_000001")
        assert t.wait() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert DemoReader(out).validate() == 2
    # a launch for another task is refused before anything moves
    other = tmp_path / "other.yaml"
    other.write_text("task: other_task\ndeploy: {arm: noop}\n")
    res = subprocess.run([sys.executable, "-m", "robolearn", "teleop", str(other), "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 2 and "cannot append" in res.stderr and "other_task" in res.stderr
    assert DemoReader(out).validate() == 2


def test_gamepad_mapping_without_pygame():
    from robolearn.teleop.devices import GamepadConfig, GamepadMapper

    m = GamepadMapper(GamepadConfig(pos_scale=1.0, rot_scale=1.0, deadzone=0.1))
    # left stick pushed forward (axis 1 = -1) -> +x; tiny drift on axis 0 is inside the deadzone
    cmd, ev = m.update([0.05, -1.0, 0.0, 0.0, 0.0, 0.0], pressed=set(), hat=(1, 0))
    np.testing.assert_allclose(cmd, [1.0, 0, 0, 1.0, 0, 0, -1.0])
    cmd, ev = m.update([0.0] * 6, pressed={0, 7})
    assert cmd[6] == 1.0 and ev == ["start_or_save"]
    cmd, ev = m.update([0.0] * 6, pressed={0, 7})  # held: no new events, gripper stays
    assert cmd[6] == 1.0 and ev == []
    with pytest.raises(ConfigError, match="buttons.5"):
        GamepadMapper(GamepadConfig(buttons={5: "explode"}))


def test_step_limit_asks_to_save(tmp_path, launch):
    out = tmp_path / "demos"
    t = PtyProcess([str(launch), "--out", str(out), "--max-steps", "5", "--max-episodes", "1"])
    try:
        t.expect("[idle]")
        t.send("\n")
        t.expect("step limit: v save")
        t.send("v")
        assert t.wait() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    ep = DemoReader(out).load(0)
    assert ep.length == 5 and not ep.success


class _ScriptedDevice:
    """A teleop device that plays a fixed script: start, a few motion commands, save, quit.
    Stands in for a person at the keyboard; the session, loop, shield and arm are real."""

    def __init__(self, commands: list[np.ndarray]):
        self.commands = list(commands)
        self.phase = "idle"

    def poll(self):
        hold = np.zeros(7, np.float32)
        hold[6] = -1.0
        if self.phase == "idle":
            self.phase = "recording"
            return hold, ["start"]
        if self.phase == "recording":
            if self.commands:
                return self.commands.pop(0), []
            self.phase = "done"
            return hold, ["save"]
        return hold, ["quit"]

    def close(self):
        pass


def test_teleop_on_robosuite_records_the_reset_seed_and_replays_exactly(tmp_path):
    """A teleop recording in simulation stores the seed its episode was reset with, so
    replaying its actions reproduces every observation (as ``collect`` recordings do)."""
    pytest.importorskip("robosuite")
    from robolearn.commands.replay import replay_episode
    from robolearn.data.format import DemoWriter
    from robolearn.tasks.task_arm import make_task_arm
    from robolearn.teleop.session import SessionConfig, TeleopSession, meta_for

    arm = make_task_arm("robosuite", "controllers/robosuite_panda_osc.yaml", task="lift")  # unseeded, like a person's session
    try:
        cmd = np.zeros(7, np.float32)
        cmd[2], cmd[6] = -0.5, -1.0  # down, gripper open
        meta = meta_for(arm, "lift", 20.0, source="teleop:scripted", controller="controllers/robosuite_panda_osc.yaml")
        writer = DemoWriter(tmp_path / "demos", meta)
        arm.connect()
        session = TeleopSession(arm, _ScriptedDevice([cmd] * 12), writer, SessionConfig(hz=50.0), out=io.StringIO())
        summary = session.run()
    finally:
        arm.close()
    assert len(summary["saved"]) == 1
    ep = DemoReader(tmp_path / "demos").load(0)
    assert "reset_seed" in ep.extra and ep.length >= 12
    drift = replay_episode(tmp_path / "demos", 0, "actions", None, (64, 64), None)
    assert drift.steps == ep.length and max(drift.max.values()) == 0.0
