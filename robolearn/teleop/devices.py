"""Teleoperation input devices, each producing the 7-number arm command
(dx, dy, dz, droll, dpitch, dyaw, gripper: -1 open, +1 closed) in [-1, 1] plus a list
of episode events ("start", "save", "discard", "success", "failure", "quit").

* ``KeyboardDevice``: a terminal keyboard in cbreak mode (termios/tty, select on the file
  descriptor), so it works over SSH and without an X server. A terminal only reports key
  presses (with auto-repeat while held), never releases, so a press drives its axis for
  ``hold_s`` seconds; holding a key keeps it moving through auto-repeat.
* ``SpaceMouseDevice``: a 3Dconnexion SpaceMouse read over HID with the ``hid`` package
  (ctypes bindings to hidapi). Reports are parsed as robosuite's and pyspacemouse's drivers
  do (report 1: translation, and on single-report models rotation too; report 2: rotation on
  split-report models; report 3: buttons). No SpaceMouse exists on a build machine, so the
  parser is tested with recorded report byte strings (tests/test_teleop.py), and the HID
  open/read path is exercised only on real hardware.
* ``GamepadDevice`` (optional, needs pygame): an SDL game controller; the axis/button
  mapping (``GamepadMapper``) is tested with synthetic values, the pygame path only by hand.

Every device has a typed config with per-group scales and a deadzone (analog inputs
below it read as zero, so a resting hand does not drift the arm).
"""
from __future__ import annotations

import math
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from robolearn.config import ConfigError, from_dict

EVENTS = ("start", "save", "discard", "success", "failure", "quit", "start_or_save")


class Device(Protocol):
    def poll(self) -> tuple[np.ndarray, list[str]]:
        """The current command (7,) float32 and the events since the last poll."""
        ...

    def close(self) -> None: ...


def shape_command(raw6: np.ndarray, gripper: float, pos_scale: float, rot_scale: float, deadzone: float,
                  signs: list[float] | None = None) -> np.ndarray:
    """Deadzone (rescaled so output still starts at 0 and reaches 1), per-group scales, clip to [-1, 1]."""
    v = np.asarray(raw6, dtype=np.float64).copy()
    if signs is not None:
        v *= np.asarray(signs, dtype=np.float64)
    if deadzone > 0:
        mag = np.abs(v)
        v = np.where(mag <= deadzone, 0.0, np.sign(v) * (mag - deadzone) / (1.0 - deadzone))
    v[:3] *= pos_scale
    v[3:] *= rot_scale
    return np.clip(np.concatenate([v, [gripper]]), -1.0, 1.0).astype(np.float32)


def _check_common(cfg: Any, source: str) -> None:
    for name in ("pos_scale", "rot_scale"):
        if not 0 <= getattr(cfg, name) < math.inf:  # inf * a released axis (0) is NaN
            raise ConfigError(source, name, f"expected a finite non-negative scale, got {getattr(cfg, name)!r}")
    if not 0.0 <= cfg.deadzone < 1.0:
        raise ConfigError(source, "deadzone", f"expected a fraction in [0, 1), got {cfg.deadzone!r}")


# ----------------------------------------------------------------------------- keyboard

#: key -> (axis 0..5, sign). Translation: w/s x, a/d y, e/q z. Rotation: j/l roll, i/k pitch, u/o yaw.
MOTION_KEYS: dict[str, tuple[int, float]] = {
    "w": (0, 1.0), "s": (0, -1.0), "a": (1, 1.0), "d": (1, -1.0), "e": (2, 1.0), "q": (2, -1.0),
    "j": (3, 1.0), "l": (3, -1.0), "i": (4, 1.0), "k": (4, -1.0), "u": (5, 1.0), "o": (5, -1.0),
}
EVENT_KEYS: dict[str, str] = {"\n": "start", "\r": "start", "v": "save", "x": "discard", "y": "success", "n": "failure", "Q": "quit"}
GRIPPER_KEY = " "
HELP_LINE = "Enter start | v save | x discard | y/n mark success/failure | Q quit | w/s a/d e/q move | j/l i/k u/o rotate | space gripper"


@dataclass
class KeyboardConfig:
    pos_scale: float = 0.5  # command units while a translation key is active
    rot_scale: float = 0.3
    hold_s: float = 0.12  # how long one key press drives its axis
    deadzone: float = 0.0  # keys are digital; kept for a uniform config

    def validate(self, source: str = "keyboard") -> "KeyboardConfig":
        _check_common(self, source)
        if not self.hold_s > 0:
            raise ConfigError(source, "hold_s", f"expected a positive duration in seconds, got {self.hold_s!r}")
        return self


class KeyboardDevice:
    """Reads key presses from a terminal file descriptor (default: stdin) without blocking.

    The terminal is switched to cbreak mode (no line buffering, no echo; Ctrl-C still
    raises KeyboardInterrupt) and restored on ``close()``. A non-terminal fd (a pipe) is
    read as-is, which is how scripted input works.
    """

    def __init__(self, config: KeyboardConfig | None = None, fd: int | None = None, clock=time.monotonic):
        self.config = (config or KeyboardConfig()).validate()
        self.fd = 0 if fd is None else fd
        self.clock = clock
        self._until = np.zeros(6)  # per-axis expiry time
        self._sign = np.zeros(6)
        self._gripper = -1.0
        self._saved_tty = None
        if os.isatty(self.fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        self.closed = False

    def _read(self) -> str:
        chunks = []
        while True:
            r, _, _ = select.select([self.fd], [], [], 0)
            if not r:
                break
            data = os.read(self.fd, 1024)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode(errors="ignore")

    def feed(self, text: str) -> list[str]:
        """Apply key presses (also used directly by tests); returns the events they raised."""
        now = self.clock()
        events = []
        for ch in text:
            if ch in MOTION_KEYS:
                axis, sign = MOTION_KEYS[ch]
                self._sign[axis] = sign
                self._until[axis] = now + self.config.hold_s
            elif ch == GRIPPER_KEY:
                self._gripper = -self._gripper
            elif ch in EVENT_KEYS:
                events.append(EVENT_KEYS[ch])
        return events

    def command(self) -> np.ndarray:
        active = self._until > self.clock()
        raw = np.where(active, self._sign, 0.0)
        c = self.config
        return shape_command(raw, self._gripper, c.pos_scale, c.rot_scale, c.deadzone)

    def poll(self) -> tuple[np.ndarray, list[str]]:
        events = self.feed(self._read()) if not self.closed else []
        return self.command(), events

    def close(self) -> None:
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None
        self.closed = True


# ----------------------------------------------------------------------------- SpaceMouse

#: (vendor id, product id) of 3Dconnexion devices; split-report models send rotation in report 2.
SPACEMOUSE_IDS = {
    (0x256F, 0xC62E): ("SpaceMouse Compact", False),
    (0x256F, 0xC62F): ("SpaceMouse Wireless (cabled)", False),
    (0x256F, 0xC631): ("SpaceMouse Pro Wireless (cabled)", False),
    (0x256F, 0xC632): ("SpaceMouse Pro Wireless receiver", False),
    (0x256F, 0xC635): ("SpaceMouse Compact / Wireless (old firmware)", True),
    (0x256F, 0xC652): ("Universal Receiver", False),
    (0x046D, 0xC626): ("SpaceNavigator", True),
    (0x046D, 0xC62B): ("SpaceMouse Pro", True),
}


@dataclass
class SpaceMouseConfig:
    pos_scale: float = 0.6  # ~ robosuite's default gain at full deflection
    rot_scale: float = 0.3
    deadzone: float = 0.05
    axis_scale: float = 350.0  # raw HID counts at full deflection
    #: per-axis sign flips (x, y, z, roll, pitch, yaw) to match the arm's base frame
    axis_signs: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    gripper_mode: str = "hold"  # "hold": closed while the left button is held (robosuite); "toggle": each press flips
    vendor_id: int | None = None  # default: the first known 3Dconnexion device found
    product_id: int | None = None

    def validate(self, source: str = "spacemouse") -> "SpaceMouseConfig":
        _check_common(self, source)
        if not self.axis_scale > 0:
            raise ConfigError(source, "axis_scale", f"expected a positive number, got {self.axis_scale!r}")
        if len(self.axis_signs) != 6:
            raise ConfigError(source, "axis_signs", f"expected 6 numbers, got {self.axis_signs!r}")
        if self.gripper_mode not in ("hold", "toggle"):
            raise ConfigError(source, "gripper_mode", f"expected 'hold' or 'toggle', got {self.gripper_mode!r}")
        return self


def to_int16(lo: int, hi: int) -> int:
    x = lo | (hi << 8)
    return x - 65536 if x >= 32768 else x


class SpaceMouseParser:
    """Turns raw HID reports into axes in [-1, 1] and button events (no I/O: testable)."""

    def __init__(self, config: SpaceMouseConfig | None = None, split_reports: bool = False):
        self.config = (config or SpaceMouseConfig()).validate()
        self.split_reports = split_reports
        self.axes = np.zeros(6)  # x, y, z, roll, pitch, yaw
        self.buttons = 0
        self.gripper = -1.0

    def _conv(self, d, i: int) -> float:
        return float(np.clip(to_int16(d[i], d[i + 1]) / self.config.axis_scale, -1.0, 1.0))

    def feed(self, report: bytes | list[int]) -> list[str]:
        d = list(report)
        events: list[str] = []
        if not d:
            return events
        if d[0] == 1 and len(d) >= 7:
            # robosuite's convention: bytes 1-2 are y, 3-4 x, 5-6 z (inverted)
            self.axes[1] = self._conv(d, 1)
            self.axes[0] = self._conv(d, 3)
            self.axes[2] = -self._conv(d, 5)
            if not self.split_reports and len(d) >= 13:
                self.axes[3] = self._conv(d, 7)
                self.axes[4] = self._conv(d, 9)
                self.axes[5] = self._conv(d, 11)
        elif d[0] == 2 and len(d) >= 7:
            self.axes[3] = self._conv(d, 1)
            self.axes[4] = self._conv(d, 3)
            self.axes[5] = self._conv(d, 5)
        elif d[0] == 3 and len(d) >= 2:
            new = d[1]
            pressed = new & ~self.buttons
            released = self.buttons & ~new
            if self.config.gripper_mode == "hold":
                if pressed & 1:
                    self.gripper = 1.0
                if released & 1:
                    self.gripper = -1.0
            elif pressed & 1:
                self.gripper = -self.gripper
            if pressed & 2:
                events.append("start_or_save")
            self.buttons = new
        return events

    def command(self) -> np.ndarray:
        c = self.config
        return shape_command(self.axes, self.gripper, c.pos_scale, c.rot_scale, c.deadzone, c.axis_signs)


def _import_hid():
    try:
        import hid  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--device", "spacemouse", f"needs the 'hid' package and the hidapi library "
                          f"(pip install 'robolearn[spacemouse]'; apt install libhidapi-hidraw0): {exc}") from None
    return hid


class SpaceMouseDevice:
    """A SpaceMouse over HID. Reads every pending report on each poll (non-blocking)."""

    def __init__(self, config: SpaceMouseConfig | None = None):
        cfg = (config or SpaceMouseConfig()).validate()
        hid = _import_hid()
        ids = [(cfg.vendor_id, cfg.product_id)] if cfg.vendor_id and cfg.product_id else None
        if ids is None:
            present = {(d["vendor_id"], d["product_id"]) for d in hid.enumerate()}
            ids = [k for k in SPACEMOUSE_IDS if k in present]
            if not ids:
                raise ConfigError("--device", "spacemouse", "no 3Dconnexion device found (check the USB cable and /dev/hidraw* permissions)")
        vid, pid = ids[0]
        self.name, split = SPACEMOUSE_IDS.get((vid, pid), ("SpaceMouse", False))
        self.parser = SpaceMouseParser(cfg, split_reports=split)
        self.dev = hid.device()
        try:
            self.dev.open(vid, pid)
        except OSError as exc:
            raise ConfigError("--device", "spacemouse", f"cannot open HID device {vid:04x}:{pid:04x} ({exc}); check permissions") from None
        self.dev.set_nonblocking(1)

    def poll(self) -> tuple[np.ndarray, list[str]]:
        events: list[str] = []
        if self.dev is None:
            return self.parser.command(), events
        for _ in range(64):
            report = self.dev.read(13)
            if not report:
                break
            events += self.parser.feed(report)
        return self.parser.command(), events

    def close(self) -> None:
        if self.dev is not None:
            self.dev.close()
            self.dev = None


# ----------------------------------------------------------------------------- gamepad (optional)


@dataclass
class GamepadConfig:
    """An SDL game controller through pygame (optional; `pip install pygame`). Defaults fit an
    Xbox-layout pad on Linux: left stick x/y, right stick y -> z and x -> yaw, d-pad -> roll/pitch."""

    pos_scale: float = 0.6
    rot_scale: float = 0.3
    deadzone: float = 0.1  # sticks rarely rest at exactly 0
    #: joystick axis index for x, y, z, roll, pitch, yaw (-1: none; roll/pitch come from the d-pad)
    axes: list[int] = field(default_factory=lambda: [1, 0, 4, -1, -1, 3])
    signs: list[float] = field(default_factory=lambda: [-1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
    hat: int = 0  # d-pad: (x, y) -> roll, pitch
    #: button index -> event; "gripper" toggles the gripper
    buttons: dict[int, str] = field(default_factory=lambda: {0: "gripper", 1: "discard", 2: "failure", 3: "success", 6: "quit", 7: "start_or_save"})
    index: int = 0  # which joystick

    def validate(self, source: str = "gamepad") -> "GamepadConfig":
        _check_common(self, source)
        if len(self.axes) != 6 or len(self.signs) != 6:
            raise ConfigError(source, "axes", f"expected 6 axis indices and 6 signs, got {self.axes!r} / {self.signs!r}")
        for b, ev in self.buttons.items():
            if ev != "gripper" and ev not in EVENTS:
                raise ConfigError(source, f"buttons.{b}", f"unknown event {ev!r}; expected gripper or one of {EVENTS}")
        return self


class GamepadMapper:
    """Axis/button/hat values -> command and events (no pygame: testable)."""

    def __init__(self, config: GamepadConfig | None = None):
        self.config = (config or GamepadConfig()).validate()
        self.gripper = -1.0
        self._held: set[int] = set()

    def update(self, axes: list[float], pressed: set[int], hat: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, list[str]]:
        c = self.config
        raw = np.zeros(6)
        for i, a in enumerate(c.axes):
            if 0 <= a < len(axes):
                raw[i] = axes[a]
        raw[3] = raw[3] or float(hat[0])
        raw[4] = raw[4] or float(hat[1])
        events = []
        for b in sorted(pressed - self._held):  # rising edges only
            ev = c.buttons.get(b)
            if ev == "gripper":
                self.gripper = -self.gripper
            elif ev is not None:
                events.append(ev)
        self._held = set(pressed)
        return shape_command(raw, self.gripper, c.pos_scale, c.rot_scale, c.deadzone, c.signs), events


class GamepadDevice:
    def __init__(self, config: GamepadConfig | None = None):
        self.mapper = GamepadMapper(config)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        try:
            import pygame
        except ImportError as exc:
            raise ConfigError("--device", "gamepad", f"needs pygame (pip install pygame): {exc}") from None
        self.pygame = pygame
        pygame.display.init()
        pygame.joystick.init()
        n = pygame.joystick.get_count()
        if self.mapper.config.index >= n:
            raise ConfigError("--device", "gamepad", f"joystick {self.mapper.config.index} not found ({n} connected)")
        self.js = pygame.joystick.Joystick(self.mapper.config.index)
        self.js.init()

    def poll(self) -> tuple[np.ndarray, list[str]]:
        self.pygame.event.pump()
        js = self.js
        axes = [js.get_axis(i) for i in range(js.get_numaxes())]
        pressed = {i for i in range(js.get_numbuttons()) if js.get_button(i)}
        hat = js.get_hat(self.mapper.config.hat) if js.get_numhats() > self.mapper.config.hat else (0, 0)
        return self.mapper.update(axes, pressed, tuple(hat))

    def close(self) -> None:
        self.pygame.joystick.quit()


class CombinedDevice:
    """Motion from one device (a SpaceMouse), episode keys from the terminal keyboard too."""

    def __init__(self, motion: Any, keys: KeyboardDevice | None):
        self.motion, self.keys = motion, keys

    def poll(self) -> tuple[np.ndarray, list[str]]:
        cmd, events = self.motion.poll()
        if self.keys is not None:
            _, more = self.keys.poll()
            events = events + more
        return cmd, events

    def close(self) -> None:
        self.motion.close()
        if self.keys is not None:
            self.keys.close()


def make_device(name: str, settings: dict[str, Any] | None = None, source: str = "device config", fd: int | None = None) -> Any:
    """``keyboard``, ``spacemouse`` or ``gamepad`` from an optional settings mapping (``{keyboard: {...}, spacemouse: {...}, gamepad: {...}}``)."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - {"keyboard", "spacemouse", "gamepad"})
    if unknown:
        raise ConfigError(source, unknown[0], "unknown section; expected keyboard, spacemouse and/or gamepad")
    kb_cfg = from_dict(KeyboardConfig, settings.get("keyboard"), f"{source}: keyboard").validate(f"{source}: keyboard")
    if name == "keyboard":
        return KeyboardDevice(kb_cfg, fd=fd)
    if name == "spacemouse":
        sm_cfg = from_dict(SpaceMouseConfig, settings.get("spacemouse"), f"{source}: spacemouse").validate(f"{source}: spacemouse")
        motion = SpaceMouseDevice(sm_cfg)
        fd = 0 if fd is None else fd
        return CombinedDevice(motion, KeyboardDevice(kb_cfg, fd=fd) if os.isatty(fd) else None)
    if name == "gamepad":
        gp_raw = dict(settings.get("gamepad") or {})
        if "buttons" in gp_raw:
            gp_raw["buttons"] = {int(k): v for k, v in dict(gp_raw["buttons"]).items()}
        motion = GamepadDevice(from_dict(GamepadConfig, gp_raw, f"{source}: gamepad").validate(f"{source}: gamepad"))
        fd = 0 if fd is None else fd
        return CombinedDevice(motion, KeyboardDevice(kb_cfg, fd=fd) if os.isatty(fd) else None)
    raise ConfigError("--device", name, "unknown device; expected keyboard, spacemouse or gamepad")
