"""Safety and data-integrity drill: hostile message orders, bad files and settings, and
concurrent writers against real processes, sockets and folders.

    .venv/bin/python bench/safety_drill.py --json bench/results/safety_drill.json

Each case ends in one of these outcomes:

* ``held``: the arm stayed in its box / the input was refused with a one-line error / no
  episode was lost;
* ``unsafe``: a command took the arm out of its box, or moved it without control;
* ``lost``: episodes disappeared or were duplicated;
* ``silent``: a bad input was accepted (exit code 0, or a safety setting took effect);
* ``traceback``: a Python traceback reached the user;
* ``weak``: a denial-of-service weakness (connections kept open past the handshake deadline).

The drill is the measurement behind the safety claims in SECURITY.md; it prints a table and
writes JSON. The unit tests in ``tests/`` check the same mechanisms case by case and fast;
this runs them end to end through the ``robolearn`` command.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MUJOCO_GL", "osmesa")
PY = sys.executable
NOOP_TOP = 1.30  # controllers/noop.yaml: workspace_high z
NOOP_BOX = (np.array([-0.4, -0.4, 0.8]), np.array([0.4, 0.4, 1.3]))


@dataclass
class Outcome:
    case: str
    group: str
    kind: str
    detail: str
    count: int = 1  # e.g. unsafe commands or lost episodes behind one case
    seconds: float = 0.0


@dataclass
class Drill:
    work: Path
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, group: str, name: str, fn: Callable[[], tuple[str, str] | tuple[str, str, int]]) -> None:
        t0 = time.monotonic()
        try:
            res = fn()
        except Exception as exc:  # a drill case that itself breaks is reported, not hidden
            res = ("error", f"drill case failed: {type(exc).__name__}: {exc}")
        kind, detail, *n = res
        o = Outcome(name, group, kind, detail, n[0] if n else 1, round(time.monotonic() - t0, 2))
        self.outcomes.append(o)
        print(f"  {o.kind:9s} {group}/{name}: {detail}", flush=True)


# -- helpers ---------------------------------------------------------------------------------
def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([PY, "-m", "robolearn", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)


def classify(p: subprocess.CompletedProcess) -> tuple[str, str]:
    """A bad input must end with a non-zero exit and one error line, never a traceback."""
    err = p.stderr.strip()
    last = err.splitlines()[-1] if err else ""
    if "Traceback (most recent call last)" in p.stderr:
        return "traceback", last[:160]
    if p.returncode == 0:
        return "silent", "exit 0: accepted"
    return "held", last[:160]


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def controller(work: Path, name: str, **changes) -> Path:
    cfg = yaml.safe_load((REPO / "controllers" / "noop.yaml").read_text())
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return write_yaml(work / f"{name}.yaml", cfg)


class Server:
    """``robolearn serve-arm`` in its own process on a free loopback port."""

    def __init__(self, controller_yaml: Path | str, *extra: str):
        self.proc = subprocess.Popen([PY, "-m", "robolearn", "serve-arm", str(controller_yaml), "--port", "0", *extra],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("serving"):
            self.proc.kill()
            raise RuntimeError(f"serve-arm did not start: {line!r} {self.proc.stderr.read()[-400:]!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stderr = self.stop()


def still_open(s: socket.socket) -> bool:
    """Drain what the server sent (an ERROR reply, say); open unless it then closed or reset."""
    s.settimeout(0.2)
    try:
        while s.recv(1 << 16):
            pass
        return False
    except socket.timeout:
        return True
    except OSError:
        return False


def must_refuse_to_serve(controller_yaml: Path, what: str, *extra: str) -> tuple[str, str]:
    """A bad setting must stop ``serve-arm`` before it serves."""
    try:
        srv = Server(controller_yaml, *extra)
    except RuntimeError as exc:
        return "held", f"serve-arm refused: {str(exc)[-140:]}"
    srv.stop()
    return "silent", f"serve-arm served with {what}"


def remote(port: int, **kw):
    from robolearn.hal.remote import RemoteArm

    arm = RemoteArm(host="127.0.0.1", port=port, **kw)
    arm.connect()
    return arm


def count_outside(positions: list[np.ndarray], box=NOOP_BOX, tol: float = 1e-6) -> int:
    low, high = box
    return int(sum(bool(np.any(p < low - tol) or np.any(p > high + tol)) for p in positions))


def integrate_noop(start: np.ndarray, applied: list[np.ndarray], pos_scale: float = 0.05) -> list[np.ndarray]:
    """The no-op arm integrates pos += applied[:3] * pos_scale: its positions after each send."""
    out, pos = [], np.asarray(start, np.float64).copy()
    for a in applied:
        pos = pos + np.asarray(a[:3], np.float64) * pos_scale
        out.append(pos.copy())
    return out


UP = np.array([0, 0, 1, 0, 0, 0, -1], np.float32)


# -- the arm: message orders and settings -----------------------------------------------------
def arm_cases(d: Drill) -> None:
    noop = REPO / "controllers" / "noop.yaml"

    def burst(home_first: bool):
        def case():
            with Server(noop) as srv:
                arm = remote(srv.port)
                start = (arm.home() if home_first else arm.observe()).data["robot0_eef_pos"]
                applied = [arm.send(UP) for _ in range(30)]
                final = arm.observe().data["robot0_eef_pos"]
                arm.close()
            n = count_outside(integrate_noop(start, applied))
            kind = "unsafe" if n or final[2] > NOOP_TOP + 1e-6 else "held"
            return kind, f"30 SENDs up without OBSERVE: final z {final[2]:.3f} m (box top {NOOP_TOP}), {n} commands outside", n or 1
        return case

    d.run("arm", "send_burst_no_observe", burst(False))
    d.run("arm", "send_burst_after_home", burst(True))

    def fuzz():
        rng = np.random.default_rng(0)
        with Server(noop) as srv:
            arm = remote(srv.port)
            pos = arm.home().data["robot0_eef_pos"].astype(np.float64)
            positions = []
            for i in range(400):
                r = rng.random()
                if r < 0.05:
                    pos = arm.home().data["robot0_eef_pos"].astype(np.float64)
                    continue
                cmd = rng.normal(size=7).astype(np.float32) * rng.choice([0.5, 3.0, 1e6])
                if r < 0.10:
                    cmd[rng.integers(7)] = rng.choice([np.nan, np.inf, -np.inf])
                try:
                    a = arm.send(cmd)
                except Exception:
                    arm.close()
                    arm = remote(srv.port)
                    pos = arm.observe().data["robot0_eef_pos"].astype(np.float64)
                    continue
                pos = pos + np.asarray(a[:3], np.float64) * 0.05
                positions.append(pos.copy())
                if r > 0.9:  # observe now and then: the true position, to keep the integration honest
                    pos = arm.observe().data["robot0_eef_pos"].astype(np.float64)
                    positions.append(pos.copy())
            arm.close()
        n = count_outside(positions)
        return ("unsafe" if n else "held"), f"400 random commands (5 % NaN/inf, 1e6 scale) and homes: {n} positions outside the box", n or 1

    d.run("arm", "random_commands", fuzz)

    def pybullet_burst():
        try:
            from robolearn.hal.factory import make_arm
        except ImportError as exc:
            return "error", str(exc)
        arm = make_arm("pybullet")
        arm.connect()
        top = 0.60
        worst, n = -1.0, 0
        for home in (True, False):
            if home:
                arm.home()
            for _ in range(60):
                arm.send(UP)
                z = float(arm.arm.observe().data["robot0_eef_pos"][2])  # the raw arm: the shield learns nothing
                worst = max(worst, z)
                n += z > top + 0.01
        arm.close()
        return ("unsafe" if n else "held"), f"120 SENDs up on the PyBullet Panda: highest grasp point {worst:.3f} m (box top {top} + 1 cm tracking)", n or 1

    d.run("arm", "pybullet_burst", pybullet_burst)

    def scale_inf():
        from robolearn.hal.factory import make_arm

        path = controller(d.work, "pos_scale_inf", pos_scale=float("inf"))
        try:
            arm = make_arm(None, path)
        except Exception as exc:
            return "held", f"refused: {str(exc)[:120]}"
        arm.connect()
        arm.observe()
        applied = arm.send(UP)
        pos = arm.observe().data["robot0_eef_pos"]
        arm.close()
        bad = not np.all(np.isfinite(pos)) or count_outside([pos])
        return ("unsafe" if bad else "silent"), f"pos_scale .inf accepted; applied {np.round(applied, 3).tolist()}, arm at {pos.tolist()}"

    d.run("arm", "pos_scale_inf", scale_inf)

    for key, value in (("shield.max_step_pos", float("inf")), ("shield.watchdog_ms", float("inf")),
                       ("shield.max_step_rot", float("nan")), ("shield.workspace_high", [0.4, 0.4, float("inf")]),
                       ("shield.max_rejects_in_row", True), ("server.heartbeat_ms", float("nan"))):
        def bad_setting(key=key, value=value):
            return must_refuse_to_serve(controller(d.work, key.replace(".", "_"), **{key: value}), f"{key}: {value}")

        d.run("arm", f"setting_{key}", bad_setting)

    d.run("arm", "heartbeat_ms_nan_flag", lambda: must_refuse_to_serve(noop, "--heartbeat-ms nan", "--heartbeat-ms", "nan"))

    def frozen_controller():
        with Server(noop) as srv:
            a = remote(srv.port)
            a.observe()
            a.send(np.zeros(7, np.float32))
            time.sleep(1.0)  # past the 300 ms heartbeat: A is a frozen process
            try:
                b = remote(srv.port)
                b.close()
                took = True
            except Exception:
                took = False
            try:
                a.send(UP)
                woke = True
            except Exception:
                woke = False
            a.close()
        if woke:
            return "unsafe", f"a controller silent past the heartbeat drove the arm again without a new HELLO (second client {'took' if took else 'was refused'} control)"
        if not took:
            return "weak", "a silent controller kept control: the next client was refused"
        return "held", "silent controller lost control; the next client took it; the woken SEND was refused"

    d.run("arm", "frozen_controller_wakes", frozen_controller)

    def estop_reset():
        from robolearn.hal.remote import RemoteArm

        with Server(noop) as srv:
            a = remote(srv.port)
            a.observe()
            monitor = RemoteArm(host="127.0.0.1", port=srv.port)
            try:
                monitor.estop()  # a separate safety monitor: its own connection, never control
            except Exception as exc:
                a.close()
                return "error", f"monitor could not e-stop: {exc}"
            try:
                a.reset_estop()
                a.send(UP)
                moved = True
            except Exception:
                moved = False
            a.close()
        return ("unsafe" if moved else "held"), ("the controller cleared a monitor's e-stop and moved the arm" if moved
                                                 else "a monitor's e-stop stayed latched against the controller's reset")

    d.run("arm", "estop_reset_by_controller", estop_reset)

    def malformed():
        from robolearn.hal import protocol as P

        frames = {
            "shape_overflow": {"arrays": [{"name": "command", "dtype": "<f8", "shape": [2**62, 2**62]}]},
            "shape_1e30": {"arrays": [{"name": "command", "dtype": "<f8", "shape": [1e30]}]},
        }
        deep = ("[" * 20000 + "]" * 20000).encode()
        with Server(noop) as srv:
            errors = 0
            for name, body in [*frames.items(), ("deep_json", None)]:
                js = deep if body is None else json.dumps(body).encode()
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
                s.sendall(P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.SEND, len(js), 0) + js)
                try:
                    head = P.recv_exact(s, P.HEADER.size)
                    errors += P.parse_header(head)[1] == P.ERROR
                except Exception:
                    pass
                s.close()
            time.sleep(0.3)
        tb = "Traceback" in srv.stderr
        if tb:
            return "traceback", f"{errors}/3 malformed frames got ERROR; the server printed a traceback", 3 - errors or 1
        return ("held" if errors == 3 else "silent"), f"{errors}/3 malformed frames (overflowing shape, shape 1e30, JSON 20,000 deep) got ERROR"

    d.run("arm", "malformed_frames", malformed)

    def slowloris():
        with Server(noop) as srv:
            socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=3) for _ in range(20)]
            stop = threading.Event()

            def drip():
                i = 0
                while not stop.wait(0.5):
                    for s in socks:
                        try:
                            s.send(b"RLRM"[i % 4:i % 4 + 1])
                        except OSError:
                            pass
                    i += 1

            t = threading.Thread(target=drip, daemon=True)
            t.start()
            time.sleep(6.0)
            stop.set()
            t.join()
            open_ = 0
            for s in socks:
                open_ += still_open(s)
                s.close()
        return ("weak" if open_ else "held"), f"{open_}/20 one-byte-at-a-time connections still open after 6 s", open_ or 1

    d.run("arm", "slow_handshake", slowloris)

    def public_bind():
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOLEARN_ARM_SECRET")}
        p = subprocess.Popen([PY, "-m", "robolearn", "serve-arm", str(noop), "--host", "0.0.0.0", "--port", "0"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = p.stdout.readline()
        p.terminate()
        _, err = p.communicate(timeout=10)
        if line.startswith("serving"):
            return "silent", "served on 0.0.0.0 without a shared secret"
        if "Traceback" in err:
            return "traceback", err.strip().splitlines()[-1][:140]
        return "held", err.strip().splitlines()[-1][:140] if err.strip() else "refused"

    d.run("arm", "public_bind_without_secret", public_bind)


# -- data: concurrent writers -----------------------------------------------------------------
def count_episodes(folder: Path) -> int:
    try:
        from robolearn.data.format import DemoReader

        r = DemoReader(folder)
        for i in r.indices:
            r.load(i)
        return len(r.indices)
    except Exception:
        return 0


def fingerprints(folder: Path) -> list[bytes]:
    from robolearn.data.format import DemoReader

    r = DemoReader(folder)
    return [r.load(i).actions.tobytes() for i in r.indices]


def data_cases(d: Drill) -> None:
    def two_collects():
        out = d.work / "two_collects"
        args = ["collect", "graph_reach", "--operator", "suboptimal", "--episodes", "25", "--out", str(out), "--no-progress"]
        procs = [subprocess.Popen([PY, "-m", "robolearn", *args, "--seed", str(s)], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for s in (0, 100)]
        res = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        ok = sum(rc == 0 for rc, _ in res)
        if any("Traceback" in err for _, err in res):
            return "traceback", "a collect printed a traceback"
        n = count_episodes(out)
        expected = 25 * ok
        lost = expected - n
        return ("lost" if lost else "held"), f"{ok} of 2 collects succeeded; {n} episodes kept of {expected}", abs(lost) or 1

    d.run("data", "two_concurrent_collects", two_collects)

    srcs = []
    for s in range(3):
        src = d.work / f"src{s}"
        cli("collect", "graph_reach", "--operator", "suboptimal", "--episodes", "20", "--seed", str(1000 * s), "--out", str(src), "--no-progress")
        srcs.append(src)

    def two_merges():
        out = d.work / "two_merges"
        procs = [subprocess.Popen([PY, "-m", "robolearn", "merge", "--quiet", str(out), *map(str, srcs)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        res = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        ok = sum(rc == 0 for rc, _ in res)
        if any("Traceback" in err for _, err in res):
            return "traceback", "a merge printed a traceback"
        # Both merging the same sources: every source episode belongs in OUT exactly once.
        expected = 60 if ok else 0
        prints = fingerprints(out) if ok else []
        n, dup = len(set(prints)), len(prints) - len(set(prints))
        bad = abs(expected - n) + dup
        return ("lost" if bad else "held"), f"{ok} of 2 merges succeeded; {n} distinct episodes of {expected}, {dup} duplicates", bad or 1

    d.run("data", "two_concurrent_merges", two_merges)

    def merge_twice():
        out = d.work / "merge_aa"
        p = cli("merge", "--quiet", str(out), str(srcs[0]), str(srcs[0]))
        if "Traceback" in p.stderr:
            return "traceback", p.stderr.strip().splitlines()[-1][:140]
        if not out.exists():
            return "held", f"refused: {p.stderr.strip().splitlines()[-1][:140] if p.stderr.strip() else 'no output'}"
        prints = fingerprints(out)
        dup = len(prints) - len(set(prints))
        return ("lost" if dup else "held"), f"merge OUT A A: {len(prints)} episodes, {dup} duplicates", dup or 1

    d.run("data", "merge_same_source_twice", merge_twice)


# -- bad files and settings through the command line --------------------------------------------
def corrupt_episode(folder: Path, index: int, **changes) -> None:
    path = folder / "episodes" / f"episode_{index:06d}.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = dict(z)
    for k, v in changes.items():
        arrays[k] = v
    np.savez(path, **arrays)


def input_cases(d: Drill) -> None:
    good = d.work / "good"
    cli("collect", "graph_reach", "--operator", "suboptimal", "--episodes", "6", "--seed", "0", "--out", str(good), "--no-progress")
    launch = d.work / "launch.yaml"
    write_yaml(launch, {"task": "graph_reach", "data": {"path": str(good)}, "algo": {"name": "bc", "batch_size": 16, "hidden": [32]},
                        "train": {"steps": 10, "checkpoint_every": 5}})
    bcq = d.work / "launch_bcq.yaml"
    write_yaml(bcq, {"task": "graph_reach", "data": {"path": str(good)}, "algo": {"name": "bcq", "batch_size": 16},
                     "train": {"steps": 10, "checkpoint_every": 5}})

    def train_case(name, *sets, launch_file=launch):
        def case():
            return classify(cli("train", str(launch_file), "--quiet", "--out", str(d.work / f"run_{name}"), *sum((["--set", s] for s in sets), [])))
        d.run("input", name, case)

    train_case("train_steps_negative", "train.steps=-100")
    train_case("train_steps_zero", "train.steps=0")
    train_case("train_steps_true", "train.steps=true")
    train_case("batch_size_zero", "algo.batch_size=0")
    train_case("checkpoint_every_zero", "train.checkpoint_every=0")
    train_case("lr_nan", "algo.lr=.nan")
    train_case("lr_negative", "algo.lr=-0.001")

    def bad_folder(name, mutate):
        folder = d.work / f"data_{name}"
        shutil.copytree(good, folder)
        mutate(folder)
        lf = d.work / f"launch_{name}.yaml"
        cfg = yaml.safe_load(bcq.read_text())
        cfg["data"]["path"] = str(folder)
        write_yaml(lf, cfg)
        d.run("input", f"data_{name}", lambda: classify(cli("train", str(lf), "--quiet", "--out", str(d.work / f"run_data_{name}"))))

    def ep0(folder):
        with np.load(folder / "episodes" / "episode_000000.npz", allow_pickle=False) as z:
            return dict(z)

    bad_folder("success_string", lambda f: corrupt_episode(f, 0, success=np.asarray("False")))
    bad_folder("rewards_nan", lambda f: corrupt_episode(f, 0, rewards=np.full_like(ep0(f)["rewards"], np.nan)))
    bad_folder("dones_half", lambda f: corrupt_episode(f, 0, dones=np.full(len(ep0(f)["dones"]), 0.5)))
    bad_folder("actions_huge", lambda f: corrupt_episode(f, 0, actions=ep0(f)["actions"] * 1e30))
    bad_folder("actions_out_of_spec", lambda f: corrupt_episode(f, 0, actions=ep0(f)["actions"] + 5.0))
    bad_folder("timestamps_nan", lambda f: corrupt_episode(f, 0, timestamps=np.full_like(ep0(f)["timestamps"], np.nan)))

    def meta_change(key, value):
        def mutate(folder):
            m = json.loads((folder / "meta.json").read_text())
            m[key] = value
            (folder / "meta.json").write_text(json.dumps(m))
        return mutate

    bad_folder("control_hz_zero", meta_change("control_hz", 0))
    bad_folder("control_hz_string", meta_change("control_hz", "20"))
    bad_folder("split_overlap", meta_change("split", {"train": [0, 1, 2, 3], "valid": [3, 4]}))

    # Checkpoints: a real run, then corruptions of copies.
    base = d.work / "run_ok"
    cli("train", str(launch), "--quiet", "--out", str(base))

    def bad_ckpt(name, mutate):
        run = d.work / f"ckpt_{name}"
        shutil.copytree(base, run)
        mutate(run)
        d.run("input", f"checkpoint_{name}", lambda: classify(cli("eval", str(run), "--episodes", "1", "--quiet")))

    def files(run, pattern):
        return sorted(run.rglob(pattern))

    def truncate(run):
        for p in files(run, "model.safetensors"):
            p.write_bytes(p.read_bytes()[:100])

    def crafted_header(run):
        for p in files(run, "model.safetensors"):
            p.write_bytes((2**62).to_bytes(8, "little") + b"{}")

    def bad_offsets(run):
        for p in files(run, "model.safetensors"):
            raw = p.read_bytes()
            n = int.from_bytes(raw[:8], "little")
            header = json.loads(raw[8:8 + n])
            for k, v in header.items():
                if k != "__metadata__":
                    v["data_offsets"] = [0, 10**12]
            hj = json.dumps(header).encode()
            p.write_bytes(len(hj).to_bytes(8, "little") + hj + raw[8 + n:])

    def latest(run, text):
        for p in files(run, "latest.json"):
            p.write_text(text)

    bad_ckpt("truncated_weights", truncate)
    bad_ckpt("crafted_header_length", crafted_header)
    bad_ckpt("offsets_past_end", bad_offsets)
    bad_ckpt("latest_json_invalid", lambda r: latest(r, "{not json"))
    bad_ckpt("latest_json_outside", lambda r: latest(r, json.dumps({"checkpoint": "../../../etc"})))
    bad_ckpt("checkpoint_json_missing", lambda r: [p.unlink() for p in files(r, "checkpoint.json")])

    # Arm servers that are absent, busy or unreachable; ports in use.
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    absent_port = free.getsockname()[1]
    free.close()

    def deploy_to(host, port):
        lf = d.work / f"deploy_{host}_{port}.yaml"
        write_yaml(lf, {"task": "noop", "deploy": {"arm": "remote", "controller": "controllers/remote.yaml", "host": host,
                                                   "port": port, "hz": 20, "max_steps": 5}})
        return classify(cli("deploy", str(lf), "--checkpoint", str(base), "--yes", "--out", str(d.work / f"rec_{host}_{port}")))

    d.run("input", "deploy_absent_server", lambda: deploy_to("127.0.0.1", absent_port))
    d.run("input", "deploy_unresolvable_host", lambda: deploy_to("no-such-host.invalid", 5555))

    def busy():
        from robolearn.hal.arm import ArmError

        with Server(REPO / "controllers" / "noop.yaml") as srv:
            holder = remote(srv.port)
            holder.observe()
            try:
                second = remote(srv.port)
            except ArmError as exc:
                text = str(exc)
                ok = f"127.0.0.1:{srv.port}" in text and "\n" not in text
                return ("held" if ok else "silent"), f"second controller refused: {text[:140]}"
            finally:
                holder.close()
            second.close()
        return "unsafe", "a second client took control of a busy arm"

    d.run("input", "deploy_busy_server", busy)

    def port_in_use():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = subprocess.Popen([PY, "-m", "robolearn", "serve-arm", "controllers/noop.yaml", "--port", str(port)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        s.close()
        return classify(subprocess.CompletedProcess(p.args, p.returncode, out, err))

    d.run("input", "serve_arm_port_in_use", port_in_use)

    def train_into_foreign_folder():
        folder = d.work / "not_a_run"
        folder.mkdir()
        (folder / "metrics.jsonl").write_text("precious\n")
        (folder / "config.json").write_text("{}\n")
        p = cli("train", str(launch), "--quiet", "--out", str(folder))
        kept = (folder / "metrics.jsonl").read_text() == "precious\n" and (folder / "config.json").read_text() == "{}\n"
        if not kept:
            return "lost", "train --out overwrote files of a folder that was not a run folder"
        return classify(p)

    d.run("input", "train_out_foreign_folder", train_into_foreign_folder)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the outcomes here")
    ap.add_argument("--only", choices=["arm", "data", "input"], action="append", help="run only these groups")
    args = ap.parse_args()
    groups = args.only or ["arm", "data", "input"]
    work = Path(tempfile.mkdtemp(prefix="robolearn-drill-"))
    drill = Drill(work)
    t0 = time.monotonic()
    try:
        for g, fn in (("arm", arm_cases), ("data", data_cases), ("input", input_cases)):
            if g in groups:
                print(f"{g}:", flush=True)
                fn(drill)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kinds = ["held", "unsafe", "lost", "silent", "traceback", "weak", "error"]
    print("\n| group | cases | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    summary = {}
    for g in groups:
        rows = [o for o in drill.outcomes if o.group == g]
        counts = {k: sum(1 for o in rows if o.kind == k) for k in kinds}
        summary[g] = counts
        print(f"| {g} | {len(rows)} | " + " | ".join(str(counts[k]) for k in kinds) + " |")
    failing = [o for o in drill.outcomes if o.kind != "held"]
    print(f"\n{len(drill.outcomes)} cases in {time.monotonic() - t0:.0f} s; {len(failing)} not held")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "cases": [asdict(o) for o in drill.outcomes]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
