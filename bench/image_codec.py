"""Image-key storage benchmark: bytes per frame and decode speed of candidate codecs on real
rendered Lift frames (the scripted suboptimal operator's episode, robomimic's two cameras).

    .venv/bin/python bench/image_codec.py [--steps 120] [--sizes 84,240] [--json bench/results/image_codec.json]

Candidates: ``np.savez_compressed`` of the raw uint8 array (deflate), PNG per frame
(``cv2.imencode``), robolearn's temporal delta + deflate (``robolearn/data/image_codec.py``)
at several chunk lengths, and lossless video through PyAV (FFV1; H.264 ``libx264rgb -qp 0``
in RGB; ``libx264 -crf 0`` in YUV 4:4:4, near-lossless). Each is decoded back and compared
with the frames (``max_err`` 0 means bit-exact). Times are the best of ``--repeats`` runs on
one core's worth of work; they are measurements for the table, never pass/fail figures.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "osmesa")


def lift_frames(size: int, steps: int, cameras: list[str], seed: int) -> dict[str, np.ndarray]:
    """One scripted Lift episode (at most ``steps`` steps) rendered by the task's cameras."""
    from robolearn.collect import OperatorActor
    from robolearn.runtime.rollout import rollout
    from robolearn.runtime.seeds import demonstration_seeds
    from robolearn.tasks.base import make_env

    env = make_env("lift", cameras=cameras, image_size=size, horizon=steps)
    try:
        keys = [f"{c}_image" for c in cameras]
        r = rollout(env, OperatorActor("lift", "suboptimal", env), demonstration_seeds(seed, 0), stop_on_success=False,
                    obs_keys=keys)
        return {k: r.obs[k] for k in keys}
    finally:
        env.close()


# ------------------------------------------------------------------------------- codecs
def npz_deflate() -> tuple[Callable, Callable]:
    def enc(x: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, frames=x)
        return buf.getvalue()

    def dec(b: bytes) -> np.ndarray:
        with np.load(io.BytesIO(b)) as z:
            return z["frames"]

    return enc, dec


def png_per_frame() -> tuple[Callable, Callable]:
    import cv2

    def enc(x: np.ndarray) -> list[bytes]:
        return [cv2.imencode(".png", f[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])[1].tobytes() for f in x]

    def dec(parts: list[bytes]) -> np.ndarray:
        return np.stack([cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1] for p in parts])

    return enc, dec


def delta_deflate(chunk: int) -> tuple[Callable, Callable]:
    from robolearn.data import image_codec

    return (lambda x: image_codec.encode(x, chunk_frames=chunk)), image_codec.decode


def pyav(codec: str, pix_fmt: str, options: dict[str, str]) -> tuple[Callable, Callable]:
    import av

    def enc(x: np.ndarray) -> bytes:
        buf = io.BytesIO()
        with av.open(buf, "w", format="matroska") as box:
            stream = box.add_stream(codec, rate=20)
            stream.width, stream.height, stream.pix_fmt = x.shape[2], x.shape[1], pix_fmt
            stream.options = dict(options)
            for f in x:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    box.mux(packet)
            for packet in stream.encode():
                box.mux(packet)
        return buf.getvalue()

    def dec(b: bytes) -> np.ndarray:
        with av.open(io.BytesIO(b)) as box:
            return np.stack([fr.to_ndarray(format="rgb24") for fr in box.decode(video=0)])

    return enc, dec


def size_of(encoded) -> int:
    if isinstance(encoded, bytes):
        return len(encoded)
    if isinstance(encoded, list):
        return sum(len(p) for p in encoded)
    return int(sum(np.asarray(v).nbytes for v in encoded.values()))


CANDIDATES: dict[str, Callable[[], tuple[Callable, Callable]]] = {
    "npz deflate (raw uint8)": npz_deflate,
    "PNG per frame (cv2)": png_per_frame,
    "delta+deflate, chunk 1": lambda: delta_deflate(1),
    "delta+deflate, chunk 8": lambda: delta_deflate(8),
    "delta+deflate, chunk 32": lambda: delta_deflate(32),
    "delta+deflate, chunk 128": lambda: delta_deflate(128),
    "FFV1 (PyAV)": lambda: pyav("ffv1", "bgr0", {}),
    "libx264rgb -qp 0 (PyAV)": lambda: pyav("libx264rgb", "rgb24", {"qp": "0", "preset": "medium"}),
    "libx264 -crf 0 yuv444p (PyAV)": lambda: pyav("libx264", "yuv444p", {"crf": "0", "preset": "medium"}),
}


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(frames: np.ndarray, name: str, repeats: int) -> dict[str, float] | None:
    try:
        enc, dec = CANDIDATES[name]()
    except ImportError as exc:  # PyAV or OpenCV missing: report, do not fail the whole table
        print(f"  skipped {name}: {exc}", file=sys.stderr)
        return None
    t_enc, encoded = best_time(lambda: enc(frames), repeats)
    t_dec, decoded = best_time(lambda: dec(encoded), repeats)
    n = frames.shape[0]
    err = int(np.abs(decoded.astype(np.int16) - frames.astype(np.int16)).max()) if decoded.shape == frames.shape else -1
    return {
        "bytes_per_frame": size_of(encoded) / n,
        "ratio_vs_raw": frames.nbytes / size_of(encoded),
        "encode_fps": n / t_enc,
        "decode_fps": n / t_dec,
        "max_err": err,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=120, help="steps of the Lift episode rendered (default 120)")
    ap.add_argument("--sizes", default="84,240", help="square image sizes, comma-separated")
    ap.add_argument("--cameras", default="agentview,robot0_eye_in_hand")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(REPO / "bench/results/image_codec.json"))
    args = ap.parse_args()
    cameras = [c for c in args.cameras.split(",") if c]
    results: dict[str, dict] = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        per_key = lift_frames(size, args.steps, cameras, args.seed)
        for key, frames in per_key.items():
            label = f"{key} {size}x{size}"
            results[label] = {"frames": int(frames.shape[0]), "raw_bytes_per_frame": int(frames[0].nbytes), "codecs": {}}
            for name in CANDIDATES:
                m = measure(frames, name, args.repeats)
                if m is not None:
                    results[label]["codecs"][name] = m
    print(f"| frames | codec | bytes/frame | x smaller than raw | encode frames/s | decode frames/s | max error |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        for name, m in r["codecs"].items():
            print(f"| {label} ({r['frames']}) | {name} | {m['bytes_per_frame']:.0f} | {m['ratio_vs_raw']:.1f} | "
                  f"{m['encode_fps']:.0f} | {m['decode_fps']:.0f} | {m['max_err']} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": platform.platform(), "python": platform.python_version(), "steps": args.steps, "seed": args.seed,
           "results": results}
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
