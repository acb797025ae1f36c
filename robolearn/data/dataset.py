"""In-memory window sampler over a demo folder.

All episodes are laid end to end: one ``(N, *shape)`` tensor per observation key, in the
recorded units, plus per-step episode bookkeeping, so every sampler (transitions, sequences,
goal windows) is a single vectorised gather: fast enough that data never limits a CPU training
step. Batches hold observations as dicts of per-key tensors; each algorithm's observation
encoder (``robolearn.models.encoders``) turns them into features, with the per-key normalisers
fitted here.

Image keys (uint8 H x W x C camera frames, ``ObsKey.kind == "image"``) stay uint8, one
``(N, H, W, C)`` tensor per key gathered by the same index tensors: 4x less memory than
float32, and the image encoder scales them itself. They are never normalised (no normaliser
is fitted for them) and, being integers, need no finiteness check; their dtype is checked.
"""
from __future__ import annotations

import numpy as np
import torch

from robolearn.data.format import DemoFormatError, Episode
from robolearn.models.encoders import Normalizer, ObsKey, ObsSpec

__all__ = ["DemoDataset", "Normalizer", "check_finite_episode", "fit_normalizers"]


def check_finite_episode(source: str, index: int, ep: Episode, obs_keys: list[str],
                         image_keys: frozenset[str] | set[str] = frozenset()) -> None:
    """Episodes built in memory skip the folder reader's checks; one NaN reward or action would turn
    every loss that touches it into NaN, so they are refused here too. ``image_keys`` must be
    uint8 instead (a float frame would be a different kind of observation altogether)."""
    arrays = {"actions": ep.actions, "rewards": ep.rewards, **{f"obs/{k}": ep.obs[k] for k in obs_keys if k not in image_keys}}
    for name, values in arrays.items():
        values = np.asarray(values)
        if values.dtype.kind not in "biuf" or not np.all(np.isfinite(values)):
            raise DemoFormatError(source, name, f"NaN, inf or non-numbers in episode #{index}")
    for k in obs_keys:
        if k in image_keys and np.asarray(ep.obs[k]).dtype != np.uint8:
            raise DemoFormatError(source, f"obs/{k}", f"image key: expected uint8 frames, got {np.asarray(ep.obs[k]).dtype} "
                                  f"in episode #{index}")


def fit_normalizers(spec: ObsSpec, rows: dict[str, np.ndarray]) -> dict[str, Normalizer]:
    """Per-key normalisers of the low-dimensional keys, fitted on their flattened concatenation in
    spec order and split per key: each key's statistics are the same numbers, bit for bit, as
    one normaliser over the whole concatenated vector (reductions over a wide array and over a
    one-column slice can round differently)."""
    low = [k for k, s in spec.items() if s.kind == "low_dim"]
    if not low:
        return {}
    flat = np.concatenate([rows[k].reshape(rows[k].shape[0], -1).astype(np.float32) for k in low], -1)
    return Normalizer.fit(flat).split({k: spec[k].size for k in low})


class DemoDataset:
    """Demos end to end. ``obs[key]`` holds every observation row (T+1 per episode) of that key;
    step i of episode e lives at row ``ep_start[e] + i``."""

    def __init__(self, episodes: list[Episode], obs_keys: list[str], normalizers: dict[str, Normalizer] | None = None,
                 source: str = "dataset"):
        if not episodes:
            raise DemoFormatError(source, "episodes", "no episodes to train on")
        self.obs_keys = list(obs_keys)
        for i, ep in enumerate(episodes):
            missing = [k for k in obs_keys if k not in ep.obs]
            if missing:
                raise DemoFormatError(source, f"obs/{missing[0]}", f"key requested by data.obs_keys is not recorded (episode #{i})")
        # The first episode says which keys are images; every other episode is held to it.
        image_keys = {k for k in self.obs_keys
                      if ObsKey(tuple(np.shape(episodes[0].obs[k])[1:]), str(np.asarray(episodes[0].obs[k]).dtype)).kind == "image"}
        for i, ep in enumerate(episodes):
            check_finite_episode(source, i, ep, obs_keys, image_keys)
        self.obs_spec: ObsSpec = {}
        rows: dict[str, np.ndarray] = {}
        for k in self.obs_keys:
            first = np.asarray(episodes[0].obs[k])
            low_dim = k not in image_keys
            parts = [np.asarray(ep.obs[k]) for ep in episodes]
            shapes = {p.shape[1:] for p in parts}
            if len(shapes) > 1:
                raise DemoFormatError(source, f"obs/{k}", f"episodes record different shapes {sorted(shapes)}")
            rows[k] = np.concatenate([p.astype(np.float32) for p in parts] if low_dim else parts, 0)
            self.obs_spec[k] = ObsKey(tuple(first.shape[1:]), "float32" if low_dim else str(first.dtype))
        self.normalizers = normalizers if normalizers is not None else fit_normalizers(self.obs_spec, rows)
        self.obs = {k: torch.from_numpy(v) for k, v in rows.items()}
        self.actions = torch.from_numpy(np.concatenate([np.pad(ep.actions, ((0, 1), (0, 0))) for ep in episodes]).astype(np.float32))
        # Rewards and dones are per step; the extra row per episode (the final obs) is never a sampled step.
        rewards, dones = [], []
        for ep in episodes:
            r = np.zeros(ep.length + 1, np.float32)
            r[:-1] = ep.rewards
            d = np.zeros(ep.length + 1, np.float32)
            d[:-1] = ep.dones
            # An episode that ended in success is terminal at its last step, whatever the recorder wrote.
            if ep.success:
                d[ep.length - 1] = 1.0
            rewards.append(r)
            dones.append(d)
        self.rewards = torch.from_numpy(np.concatenate(rewards))
        self.dones = torch.from_numpy(np.concatenate(dones))
        lengths = np.array([ep.length for ep in episodes])
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        self.lengths = torch.from_numpy(lengths)
        self.ep_start = torch.from_numpy(starts)
        self.ep_end = torch.from_numpy(starts + lengths)  # row of the final observation
        # Every valid step index (rows that have an action), and the episode each belongs to.
        self.step_rows = torch.from_numpy(np.concatenate([s + np.arange(n) for s, n in zip(starts, lengths)]))
        self.step_episode = torch.from_numpy(np.concatenate([np.full(n, e) for e, n in enumerate(lengths)]))
        self.action_dim = self.actions.shape[1]
        self.num_episodes = len(episodes)
        self._returns: dict[float, torch.Tensor] = {}
        self._bounds: tuple[float, float, bool] | None = None
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> "DemoDataset":
        """Every per-row tensor moved to ``device`` (the training device), so batches are gathered
        there; returns the dataset."""
        self.device = torch.device(device)
        self.obs = {k: v.to(self.device) for k, v in self.obs.items()}
        for name in ("actions", "rewards", "dones", "lengths", "ep_start", "ep_end", "step_rows", "step_episode"):
            setattr(self, name, getattr(self, name).to(self.device))
        self._returns = {g: r.to(self.device) for g, r in self._returns.items()}
        return self

    def _rows(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # Drawn on the CPU (training generators live there: the same draws on any device), then moved.
        i = torch.randint(len(self.step_rows), (batch,), generator=gen).to(self.device)
        return self.step_rows[i], self.step_episode[i]

    def discounted_returns(self, gamma: float) -> torch.Tensor:
        """Per-row discounted return-to-go of the demo itself (0 on final-observation rows)."""
        if gamma not in self._returns:
            r, d = self.rewards.cpu().numpy(), self.dones.cpu().numpy()
            g = np.zeros_like(r)
            for start, end in zip(self.ep_start.tolist(), self.ep_end.tolist()):
                acc = 0.0
                for i in range(end - 1, start - 1, -1):
                    acc = r[i] + gamma * (1.0 - d[i]) * acc
                    g[i] = acc
            self._returns[gamma] = torch.from_numpy(g).to(self.device)
        return self._returns[gamma]

    def return_bounds(self, gamma: float) -> tuple[float, float]:
        """Bounds on any discounted return in this task, from the recorded rewards.

        When every non-zero reward sits on a terminal step (sparse success rewards), no
        policy can collect more than one of them, so returns lie within [min(r, 0), max(r, 0)].
        Otherwise the loose bound for an infinite stream of rewards, r / (1 - gamma), holds.
        """
        if self._bounds is None:
            r, d = self.rewards.cpu().numpy(), self.dones.cpu().numpy()
            lo, hi = min(float(r.min()), 0.0), max(float(r.max()), 0.0)
            self._bounds = (lo, hi, bool(np.any((r != 0) & (d == 0))))
        lo, hi, dense = self._bounds
        return (lo / (1.0 - gamma), hi / (1.0 - gamma)) if dense else (lo, hi)

    def transitions(self, batch: int, gen: torch.Generator, gamma: float | None = None) -> dict[str, torch.Tensor]:
        """(s, a, r, s', done); with ``gamma``, also the demo's own discounted return-to-go from s."""
        rows, _ = self._rows(batch, gen)
        out = {
            "obs": self.observations(rows),
            "action": self.actions[rows],
            "reward": self.rewards[rows],
            "next_obs": self.observations(rows + 1),
            "done": self.dones[rows],
        }
        if gamma is not None:
            out["return"] = self.discounted_returns(gamma)[rows]
        return out

    def observations(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The observations at ``rows`` (any shape of indices), one tensor per key."""
        return {k: v[rows] for k, v in self.obs.items()}

    def _window(self, rows: torch.Tensor, ep: torch.Tensor, length: int, history: int = 0,
                obs_steps: int | None = None) -> dict[str, torch.Tensor]:
        idx = rows[:, None] - history + torch.arange(length, device=rows.device)[None, :]
        first, last = self.ep_start[ep][:, None], (self.ep_end[ep] - 1)[:, None]
        mask = ((idx >= first) & (idx <= last)).float()
        idx = torch.minimum(torch.maximum(idx, first), last)
        return {"obs": self.observations(idx[:, :obs_steps]), "action": self.actions[idx], "mask": mask}

    def sequences(self, batch: int, length: int, gen: torch.Generator, history: int = 0,
                  obs_steps: int | None = None) -> dict[str, torch.Tensor]:
        """Windows of ``length`` steps starting at a random step; steps past the episode's end
        repeat its last step and are masked out of the loss.

        With ``history`` h, each window starts h steps before its random step (the current
        one), and steps before the episode's start repeat its first step, masked too: Diffusion
        Policy's windows, an observation history and the actions from its oldest step on, padded
        at both ends as diffusion_policy's SequenceSampler pads. ``obs_steps`` gathers only the
        window's first observations (the history), not one per action."""
        rows, ep = self._rows(batch, gen)
        return self._window(rows, ep, length, history, obs_steps)

    def goal_windows(self, batch: int, horizon: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Windows of ``horizon`` steps whose goal is the observation ``horizon`` steps after the
        window's start (clipped to the episode's final observation): IRIS's low-level data."""
        rows, ep = self._rows(batch, gen)
        out = self._window(rows, ep, horizon)
        out["goal"] = self.observations(torch.minimum(rows + horizon, self.ep_end[ep]))
        return out

    def goal_pairs(self, batch: int, horizon: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        rows, ep = self._rows(batch, gen)
        return {"obs": self.observations(rows), "goal": self.observations(torch.minimum(rows + horizon, self.ep_end[ep]))}

