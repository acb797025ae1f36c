"""Observation specs and the observation encoder: what an algorithm sees of an observation dict.

An observation is a dict of named arrays. The *spec* says, in a fixed order, which keys a
policy reads and each key's shape and dtype. The *encoder* turns a dict of tensors shaped
``(*lead, *shape)`` per key into one feature tensor ``(*lead, D)``: every algorithm trains on
and acts from those features, so adding a kind of observation means adding an encoder for it,
not changing the algorithms.

Low-dimensional keys (float vectors, scalars) are flattened, standardised with their key's
``Normalizer`` and concatenated in the spec's order. Their features are blocks of the feature
vector (``slices``), so a subset of keys (a hierarchical policy's goal) is a subset of blocks
and goal features can be turned back into observations (``decode``).

Image keys (uint8, H x W x C) are encoded by a convolutional encoder trained with the policy
(``robolearn.models.vision``: random crops, a spatial-softmax keypoint head, one encoder per
camera or one shared), configured by the algorithm's ``image_encoder`` settings; their features
are a block like any key's, but cannot be decoded back into pixels, so goals are made of
low-dimensional keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from robolearn.config import ConfigError
from robolearn.models.vision import ImageEncoderConfig, ImageKeyEncoder

#: dtypes a low-dimensional key may have (converted to float32 features).
LOW_DIM_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint16", "uint32", "bool")


@dataclass
class Normalizer:
    """Per-number standardisation of a low-dimensional key (or of several, flattened and
    concatenated); saved as JSON in checkpoints."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, min_std: float = 1e-3) -> "Normalizer":
        return cls(mean=x.mean(0).astype(np.float32), std=np.maximum(x.std(0), min_std).astype(np.float32))

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Normalizer":
        return cls(mean=np.asarray(d["mean"], np.float32), std=np.asarray(d["std"], np.float32))

    def split(self, sizes: Mapping[str, int]) -> dict[str, "Normalizer"]:
        """Per-key normalisers from one fitted on the keys' concatenation (``sizes`` in that order)."""
        out, i = {}, 0
        for k, n in sizes.items():
            out[k] = Normalizer(self.mean[i : i + n].copy(), self.std[i : i + n].copy())
            i += n
        return out

    def __call__(self, x):
        if isinstance(x, torch.Tensor):
            return (x - torch.as_tensor(self.mean, device=x.device)) / torch.as_tensor(self.std, device=x.device)
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class ObsKey:
    """One key of an observation spec: its shape per step and its dtype."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        """Numbers per step once flattened."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def kind(self) -> str:
        """``"image"`` for uint8 H x W x C arrays, ``"low_dim"`` for the rest."""
        return "image" if self.dtype == "uint8" and len(self.shape) == 3 else "low_dim"

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype}


#: An ordered observation spec: key -> shape and dtype, in the order the features are built.
ObsSpec = dict[str, ObsKey]


def obs_spec(fields: Mapping[str, object], keys: Iterable[str]) -> ObsSpec:
    """The spec of ``keys`` (in that order) from a demo folder's ``obs_spec`` (anything with
    ``shape`` and ``dtype``)."""
    return {k: ObsKey(tuple(int(d) for d in fields[k].shape), str(getattr(fields[k], "dtype", "float32"))) for k in keys}


def unit_normalizers(spec: ObsSpec) -> dict[str, Normalizer]:
    """Mean 0, std 1 for every low-dimensional key: an encoder that only flattens and concatenates."""
    return {k: Normalizer(np.zeros(s.size, np.float32), np.ones(s.size, np.float32)) for k, s in spec.items() if s.kind == "low_dim"}


class LowDimKeyEncoder(nn.Module):
    """One low-dimensional key: flatten the per-step shape, then standardise."""

    def __init__(self, key: str, spec: ObsKey, normalizer: Normalizer):
        super().__init__()
        if normalizer.mean.shape != (spec.size,) or normalizer.std.shape != (spec.size,):
            raise ConfigError("observation encoder", key, f"normaliser has {normalizer.mean.size} numbers, the key has {spec.size}")
        self.key, self.spec, self.normalizer = key, spec, normalizer
        # Buffers, so ``.to(device)`` moves them; not persistent: the normaliser lives in
        # checkpoint.json and the weights file holds only weights.
        self.register_buffer("_mean", torch.from_numpy(normalizer.mean.copy()), persistent=False)
        self.register_buffer("_std", torch.from_numpy(normalizer.std.copy()), persistent=False)
        self.out_dim = spec.size
        self._shape_len = len(spec.shape)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """(*lead, *shape) -> (*lead, size). ``out_dim`` and the shape's length, not ``spec.size``:
        this runs on every policy step, where numpy's ``prod`` alone cost more than the arithmetic."""
        return x.reshape(*x.shape[: x.dim() - self._shape_len], self.out_dim)

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        flat = self.flatten(x)
        if flat.dtype != torch.float32:
            flat = flat.float()
        return (flat - self._mean) / self._std

    def decode(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """Features back to the recorded units and shape, keeping leading dimensions."""
        f = np.asarray(features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features)
        return (f * self.normalizer.std + self.normalizer.mean).reshape(f.shape[:-1] + self.spec.shape)


@dataclass
class BuildContext:
    """What key encoders are built with besides their key: the image settings, and the modules
    keys share (one visual core for every camera, when ``share_across_cameras``)."""

    image: ImageEncoderConfig
    shared: dict[str, nn.Module]


def _image_encoder(key: str, spec: ObsKey, normalizer: Normalizer | None, ctx: BuildContext) -> nn.Module:
    """A camera's encoder. A shared core is one module under every camera's key (tied weights: the
    state dict names it once per camera, with the same tensors, and optimisers see it once)."""
    share = ctx.image.share_across_cameras
    enc = ImageKeyEncoder(key, spec.shape, ctx.image, ctx.shared.get("visual_core") if share else None)
    if share:
        ctx.shared.setdefault("visual_core", enc.core)
    return enc


def _low_dim_encoder(key: str, spec: ObsKey, normalizer: Normalizer | None, ctx: BuildContext) -> nn.Module:
    if spec.dtype not in LOW_DIM_DTYPES:
        raise ConfigError("observation encoder", key, f"dtype {spec.dtype!r} is not a low-dimensional observation dtype")
    if normalizer is None:
        raise ConfigError("observation encoder", key, "no normaliser for this low-dimensional key")
    return LowDimKeyEncoder(key, spec, normalizer)


#: Encoder builders by key kind: ``f(key, spec, normalizer, ctx) -> module`` with ``out_dim`` and
#: ``forward(x, gen)`` (``gen``: the training generator, for random augmentation).
KEY_ENCODERS = {"low_dim": _low_dim_encoder, "image": _image_encoder}


class ObservationEncoder(nn.Module):
    """A dict of per-key tensors ``(*lead, *shape)`` -> features ``(*lead, D)``, keys in spec order."""

    def __init__(self, spec: ObsSpec, normalizers: Mapping[str, Normalizer], image: ImageEncoderConfig | None = None):
        super().__init__()
        if not spec:
            raise ConfigError("observation encoder", "obs_keys", "no observation keys")
        self.spec: ObsSpec = dict(spec)
        self.keys = list(spec)
        self.normalizers = {k: normalizers[k] for k in self.keys if k in normalizers}
        ctx = BuildContext(image=image or ImageEncoderConfig(), shared={})
        self.key_encoders = nn.ModuleDict({k: KEY_ENCODERS[s.kind](k, s, normalizers.get(k), ctx) for k, s in spec.items()})
        self.slices: dict[str, slice] = {}
        start = 0
        for k in self.keys:
            n = self.key_encoders[k].out_dim
            self.slices[k] = slice(start, start + n)
            start += n
        self.out_dim = start
        # Every key low-dimensional: one standardisation over the concatenated keys, which is the
        # per-key arithmetic element for element without a module call per key (``forward``).
        self._all_low_dim = all(isinstance(e, LowDimKeyEncoder) for e in self.key_encoders.values())
        if self._all_low_dim:
            encoders = [self.key_encoders[k] for k in self.keys]
            self.register_buffer("_mean", torch.cat([e._mean for e in encoders]), persistent=False)
            self.register_buffer("_std", torch.cat([e._std for e in encoders]), persistent=False)

    def forward(self, obs: Mapping[str, torch.Tensor], gen: torch.Generator | None = None) -> torch.Tensor:
        if self._all_low_dim:
            flats = [e.flatten(obs[k]) for k, e in self.key_encoders.items()]
            if all(f.dtype == torch.float32 for f in flats):
                return (torch.cat(flats, -1) - self._mean) / self._std
        return self.encode_keys(obs, self.keys, gen)

    def encode_keys(self, obs: Mapping[str, torch.Tensor], keys: list[str], gen: torch.Generator | None = None) -> torch.Tensor:
        """The features of ``keys`` alone (in that order): ``select(forward(obs), keys)``, bit for bit,
        without running the encoders of the other keys (a goal of low-dimensional keys costs no
        convolutions)."""
        parts = [self.key_encoders[k](obs[k], gen) for k in keys]
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def keys_of_kind(self, kind: str) -> list[str]:
        return [k for k in self.keys if self.spec[k].kind == kind]

    @property
    def trainable(self) -> bool:
        """Whether the encoder has weights (image keys) that the algorithm's losses must train."""
        return any(p.requires_grad for p in self.parameters())

    def check_keys(self, keys: Iterable[str], source: str, field: str) -> list[str]:
        """``keys`` as a list, each one of the spec's (a goal made of keys the policy never sees cannot be reached)."""
        keys = list(keys)
        unknown = [k for k in keys if k not in self.spec]
        if unknown or not keys or len(set(keys)) != len(keys):
            raise ConfigError(source, field, f"expected distinct keys of the observation {self.keys}, got {keys}")
        return keys

    def select(self, features: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """The feature blocks of ``keys`` (in that order); all keys in spec order is ``features`` itself."""
        if keys == self.keys:
            return features
        return torch.cat([features[..., self.slices[k]] for k in keys], -1)

    def width(self, keys: list[str]) -> int:
        return sum(self.slices[k].stop - self.slices[k].start for k in keys)

    def decode(self, features: torch.Tensor | np.ndarray, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """Features of ``keys`` (all by default), concatenated in that order, back to an observation
        dict in the recorded units, keeping leading dimensions."""
        keys = self.keys if keys is None else keys
        f = np.asarray(features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features)
        out, i = {}, 0
        for k in keys:
            enc = self.key_encoders[k]
            if not hasattr(enc, "decode"):
                raise ConfigError("observation encoder", k, "features of this key cannot be turned back into an observation")
            out[k] = enc.decode(f[..., i : i + enc.out_dim])
            i += enc.out_dim
        return out

    def spec_json(self) -> dict[str, dict]:
        return {k: s.to_json() for k, s in self.spec.items()}

    def normalizers_json(self) -> dict[str, dict]:
        return {k: n.to_json() for k, n in self.normalizers.items()}
