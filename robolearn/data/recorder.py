"""EpisodeRecorder: buffers one episode in memory and hands it to a DemoWriter at the end.

Why buffer rather than stream to disk: the control loop's hot path must not do I/O, and
an episode is only useful whole. ``finish`` writes through ``DemoWriter.write_episode``,
which writes a temporary file and renames it, so a crash (or Ctrl-C) loses at most the
episode in progress and never leaves half a file in the folder.

Image keys (camera frames, uint8 H x W x C, e.g. from ``CameraArm``) are buffered like any
other key and compressed by the writer at ``finish``. A frame of the wrong dtype or size is
refused at the step that brings it, not after a long episode, and never cast: a float frame
cast to uint8 would be noise.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import numpy as np

from robolearn.data.format import DemoFormatError, DemoWriter, EPISODE_DIR


class EpisodeRecorder:
    def __init__(self, writer: DemoWriter):
        self.writer = writer
        self._keys = list(writer.meta.obs_spec)
        self._dtypes = {k: np.dtype(s.dtype) for k, s in writer.meta.obs_spec.items()}
        self._images = {k: tuple(s.shape) for k, s in writer.meta.obs_spec.items() if s.is_image}
        self._active = False
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._obs: dict[str, list[np.ndarray]] = {k: [] for k in self._keys}
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self._dones: list[bool] = []
        self._timestamps: list[float | None] = []
        self._states: list[np.ndarray | None] = []

    @property
    def recording(self) -> bool:
        return self._active

    @property
    def steps(self) -> int:
        return len(self._actions)

    def _where(self) -> Path:
        return self.writer.folder / EPISODE_DIR / f"episode_{self.writer.next_index:06d}.npz"

    def start(self) -> None:
        """Begin a new episode; an unfinished one is discarded."""
        self._reset_buffers()
        self._active = True

    def _copy_obs(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for k in self._keys:
            if k not in obs:
                raise DemoFormatError(self._where(), f"obs/{k}", f"missing from the observation being recorded (have {sorted(obs)})")
            if k in self._images:
                out[k] = self._copy_image(k, obs[k])
                continue
            # Copy: arms may hand out views of buffers they reuse on the next step.
            out[k] = np.array(obs[k], dtype=self._dtypes[k], copy=True)
        return out

    def _copy_image(self, key: str, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != self._images[key]:
            raise DemoFormatError(self._where(), f"obs/{key}", f"expected a uint8 frame of shape {self._images[key]}, got "
                                  f"{frame.dtype} {frame.shape} at step {len(self._actions)}")
        return frame.copy()

    def record(
        self,
        obs: Mapping[str, np.ndarray],
        action: np.ndarray,
        reward: float = 0.0,
        done: bool = False,
        timestamp: float | None = None,
        state: np.ndarray | None = None,
    ) -> None:
        """One step: the observation the action was chosen from, and the action applied."""
        if not self._active:
            raise RuntimeError("EpisodeRecorder.record() before start()")
        copied = self._copy_obs(obs)
        for k, v in copied.items():
            self._obs[k].append(v)
        self._actions.append(np.array(action, dtype=np.float32, copy=True))
        self._rewards.append(float(reward))
        self._dones.append(bool(done))
        self._timestamps.append(timestamp)
        self._states.append(None if state is None else np.array(state, copy=True))

    def finish(self, final_obs: Mapping[str, np.ndarray], success: bool, final_timestamp: float | None = None,
               final_state: np.ndarray | None = None, extra: Mapping[str, np.ndarray] | None = None) -> Path:
        """Write the episode (atomically) and return its path. Raises DemoFormatError if it
        cannot be written (no steps, bad shapes); the buffers are kept until ``start``/``discard``.
        ``extra`` holds per-episode arrays stored as ``extra/<name>`` (e.g. the reset seed)."""
        if not self._active:
            raise RuntimeError("EpisodeRecorder.finish() without an episode in progress")
        if not self._actions:
            raise DemoFormatError(self._where(), "actions", "episode has no steps; nothing to write (use discard())")
        final = self._copy_obs(final_obs)
        obs = {k: np.stack(self._obs[k] + [final[k]]) for k in self._keys}
        try:
            actions = np.stack(self._actions)
        except ValueError as exc:
            raise DemoFormatError(self._where(), "actions", f"actions of different shapes in one episode ({exc})") from None
        timestamps = None
        if all(t is not None for t in self._timestamps):
            end = time.monotonic() if final_timestamp is None else final_timestamp
            timestamps = np.asarray(self._timestamps + [end], dtype=np.float64)
        states = None
        if all(s is not None for s in self._states):
            rows = self._states + ([final_state] if final_state is not None else [])
            try:
                states = np.stack(rows)
            except ValueError as exc:
                raise DemoFormatError(self._where(), "states", f"simulator states of different shapes ({exc})") from None
        dones = np.asarray(self._dones, bool)
        dones[-1] = True  # the episode ends here, whatever the source said
        path = self.writer.write_episode(
            obs, actions, rewards=np.asarray(self._rewards, np.float32), dones=dones,
            success=bool(success), states=states, timestamps=timestamps, extra=dict(extra) if extra else None,
        )
        self._active = False
        self._reset_buffers()
        return path

    def discard(self) -> None:
        self._active = False
        self._reset_buffers()
