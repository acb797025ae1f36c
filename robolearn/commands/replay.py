"""``robolearn replay DIR --episode K [--video OUT.mp4] [--mode actions|states]``.

Why: a demo folder is only as good as its claim that the recorded actions produce the
recorded observations. Replaying the actions open loop from the first recorded simulator
state and measuring the drift tells you whether the data are self-consistent (exact
replay: drift ~0), whether the simulator or its version changed since recording, or
whether observations were post-processed. ``--mode states`` instead sets every recorded
state and compares observations: that checks the observation function alone.

The env is ``make_env(meta.task, **meta.extra['env'])``, the settings the folder was
recorded with. On robosuite tasks exact action replay also needs the env's reset seed
(the controller keeps references from reset that the simulator state does not hold): it is
taken from the episode's ``reset_seed`` extra when recorded, or from --reset-seed; without
it, expect drift of a centimetre or two over 20 steps even though ``--mode states`` is exact.

A folder that recorded cameras (image keys) replays with the same cameras, so the drift
table compares the re-rendered frames with the recorded ones (grey levels), and ``--video``
shows, at every step, the re-simulated render and then each recorded camera's frame of that
step side by side.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HELP = "replay a recorded episode in simulation"


@dataclass
class Drift:
    """Absolute error between replayed and recorded observations, per key."""

    per_step: dict[str, np.ndarray]  # key -> (steps,) max abs error over the key's dims
    max: dict[str, float] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    worst_step: dict[str, int] = field(default_factory=dict)
    recorded_success: bool | None = None
    replayed_success: bool | None = None
    steps: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "max": self.max, "mean": self.mean, "worst_step": self.worst_step, "steps": self.steps,
            "recorded_success": self.recorded_success, "replayed_success": self.replayed_success,
            "per_step": {k: v.tolist() for k, v in self.per_step.items()},
        }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="demo folder")
    p.add_argument("--episode", type=int, required=True, help="episode index K (episode_K.npz)")
    p.add_argument("--mode", choices=("actions", "states"), default="actions", help="replay actions open loop, or set each recorded state")
    p.add_argument("--video", default=None,
                   help="write an mp4 of the replay here (with the recorded camera frames beside it when the folder has image keys)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("W", "H"), help="video frame size")
    p.add_argument("--per-step", action="store_true", help="print the per-step drift")
    p.add_argument("--json", default=None, help="write the drift (incl. per step) as JSON here")
    p.add_argument("--reset-seed", type=int, default=None,
                   help="env reset seed before setting the first state (default: the episode's extra 'reset_seed' when recorded)")


def _observe_after_set_state(env, state) -> dict[str, np.ndarray]:
    """``set_state`` returns the observation on robosuite tasks; others expose observe() or _obs()."""
    obs = env.set_state(state)
    if obs is None:
        for name in ("observe", "_obs", "get_obs"):
            fn = getattr(env, name, None)
            if callable(fn):
                return fn()
        raise RuntimeError(f"{type(env).__name__}.set_state returns no observation and the env has no observe()")
    return obs


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    try:
        from robolearn.video import write_mp4
    except ImportError:
        write_mp4 = None
    if write_mp4 is not None:
        from robolearn.config import ConfigError
        from robolearn.video import VideoError

        try:
            write_mp4(path, frames, fps)
        except VideoError as exc:
            raise ConfigError("--video", str(path), exc.problem) from None
        return
    import imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1) as w:
        for f in frames:
            w.append_data(np.asarray(f, dtype=np.uint8))


def with_recorded_cameras(frames: list[np.ndarray], ep: Any, meta: Any) -> list[np.ndarray]:
    """Frame t of the replay beside each recorded image key's frame of step t (the last one once
    the recording ends): what the cameras saw then against what the simulator shows now."""
    from robolearn.video import side_by_side

    keys = [k for k, spec in meta.obs_spec.items() if spec.is_image and k in ep.obs]
    if not keys:
        return frames
    last = ep.obs[keys[0]].shape[0] - 1
    return [side_by_side([f] + [ep.obs[k][min(t, last)] for k in keys]) for t, f in enumerate(frames)]


def replay_episode(
    folder: str | Path, episode: int, mode: str = "actions", video: str | Path | None = None, size: tuple[int, int] = (256, 256),
    reset_seed: int | None = None,
) -> Drift:
    from tqdm import tqdm

    from robolearn.config import ConfigError
    from robolearn.data.format import DemoFormatError, DemoReader
    from robolearn.tasks.base import make_env

    reader = DemoReader(folder)
    if episode not in reader.indices:
        raise DemoFormatError(reader.folder, "--episode", f"no episode {episode}; the folder has {reader.indices[0]}..{reader.indices[-1]} ({len(reader)} episodes)")
    ep = reader.load(episode)
    meta = reader.meta
    env = make_env(meta.task, **dict(meta.extra.get("env") or {}))
    frames: list[np.ndarray] = []
    try:
        has_set = callable(getattr(env, "set_state", None))
        if mode == "states" and (ep.states is None or not has_set):
            why = "has no recorded states" if ep.states is None else f"task {meta.task!r} has no set_state"
            raise ConfigError("--mode", "states", f"episode {episode} {why}; use --mode actions")
        keys = [k for k in meta.obs_spec if k in env.obs_spec] if hasattr(env, "obs_spec") else list(meta.obs_spec)
        if not keys:
            raise ConfigError(meta.task, "obs_spec", f"the env observes none of the folder's keys {sorted(meta.obs_spec)}")
        replayed: list[dict[str, np.ndarray]] = []

        def grab(o):
            replayed.append({k: np.asarray(o[k]) for k in keys})
            if video:
                frames.append(env.render(size[0], size[1]))

        # The env's reset seed matters even after set_state: robosuite's controllers keep
        # internal references from reset that the flattened state does not carry.
        if reset_seed is None and "reset_seed" in ep.extra:
            reset_seed = int(ep.extra["reset_seed"])
        obs = env.reset(seed=reset_seed)
        success = None
        if mode == "states":
            for s in tqdm(ep.states, desc="replay states", unit="step", leave=False):
                grab(_observe_after_set_state(env, s))
        else:
            if ep.states is not None and has_set:
                obs = _observe_after_set_state(env, ep.states[0])
            grab(obs)
            for a in tqdm(ep.actions, desc="replay actions", unit="step", leave=False):
                r = env.step(a)
                grab(r.obs)
                success = bool(r.success)
                if r.done and len(replayed) < ep.length + 1:
                    break  # the env ended the episode early (e.g. success sooner than recorded)
        n = min(len(replayed), ep.obs[keys[0]].shape[0])
        drift = Drift(per_step={}, recorded_success=ep.success, replayed_success=success, steps=n - 1)
        for k in keys:
            rec = ep.obs[k][:n].reshape(n, -1).astype(np.float64)
            rep = np.stack([o[k] for o in replayed[:n]]).reshape(n, -1).astype(np.float64)
            err = np.abs(rep - rec).max(axis=1)
            drift.per_step[k] = err
            drift.max[k] = float(err.max())
            drift.mean[k] = float(np.abs(rep - rec).mean())
            drift.worst_step[k] = int(err.argmax())
        if video:
            frames = [f for f in frames if f is not None]
            if not frames:
                raise ConfigError("--video", meta.task, "this task cannot render frames")
            _write_video(Path(video), with_recorded_cameras(frames, ep, meta), meta.control_hz)
        return drift
    finally:
        env.close()


def run(args: argparse.Namespace) -> int:
    d = replay_episode(args.folder, args.episode, args.mode, args.video, tuple(args.size), args.reset_seed)
    print(f"replayed episode {args.episode} ({args.mode}), {d.steps} steps")
    if d.replayed_success is not None:
        print(f"success: recorded {d.recorded_success}, replayed {d.replayed_success}")
    print(f"{'key':<24} {'max abs err':>12} {'mean abs err':>13} {'worst step':>11}")
    for k in d.max:
        print(f"{k:<24} {d.max[k]:>12.3g} {d.mean[k]:>13.3g} {d.worst_step[k]:>11d}")
    if args.per_step:
        for t in range(d.steps + 1):
            print(f"step {t:5d}  " + "  ".join(f"{k}={d.per_step[k][t]:.3g}" for k in d.per_step))
    if args.json:
        Path(args.json).write_text(json.dumps(d.to_json(), indent=2) + "\n")
    if args.video:
        print(f"video written to {args.video}")
    return 0
