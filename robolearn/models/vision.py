"""Image encoders trained from scratch: a small convolutional trunk, a spatial-softmax keypoint
head and random-crop augmentation, for uint8 camera frames.

The design is robomimic's and diffusion_policy's for manipulation: the trunk's feature maps go
through a spatial softmax that turns each of K learned channels into the expected (x, y) image
position of its activation, so the head reads *where* things are (the cube, the gripper) rather
than what a global pool averages away; a linear layer maps the 2K coordinates to the feature
size. Crops are random during training and central at evaluation, of the same size both times:
robomimic measured crop randomisation worth 73.3 -> 26.7 % on the real Can task when removed.

No weights are downloaded: the trunk is small enough (a few 3x3 convolutions, GroupNorm rather
than BatchNorm so that a batch of correlated frames from one window does not skew running
statistics and train and eval behave the same) to train end to end with the policy on CPU.

Frames stay uint8 (``(*lead, H, W, C)``) until ``ImageKeyEncoder``: cropping indexes the uint8
frames, and only the crop is converted to float CHW in [0, 1]. Every step is a batched tensor op
over all frames (any leading dimensions: batch, time), never a Python loop over frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from robolearn.config import ConfigError, non_negative, positive

#: Share of each side a default crop keeps: 76 of 84 pixels, robomimic's crop for its 84 x 84 images.
DEFAULT_CROP_SHARE = 0.9
#: Largest frame side accepted. The keypoint grids grow with the frame but no weight does, so a
#: checkpoint's observation spec could otherwise claim memory its weights file never pays for.
MAX_FRAME_SIDE = 4096


@dataclass
class ImageEncoderConfig:
    """How image keys are encoded (``algo.image_encoder`` in a launch file)."""

    #: features per camera after the keypoint head's linear layer (robomimic: 64).
    feature_dim: int = positive(64)
    #: spatial-softmax keypoints per camera; each gives an (x, y), so 2K numbers reach the linear layer.
    keypoints: int = positive(32)
    #: output channels of the 3x3 convolutions, in order. Small enough that a 76 x 76 crop costs
    #: about 12 M multiply-adds, so two cameras' 320 frames a step train on 2 CPU cores.
    channels: list[int] = positive(default_factory=lambda: [16, 32, 32, 64])
    #: how many of the first convolutions have stride 2 (each halves the feature map).
    downsample: int = non_negative(2)
    #: GroupNorm (channels / 16 groups, at least 1) after each convolution.
    group_norm: bool = True
    #: random crops while training, the central crop at evaluation (False: the whole frame, always).
    crop: bool = True
    #: [height, width] of the crop (None: 9/10 of each side, rounded: 76 x 76 of 84 x 84).
    crop_size: list[int] | None = positive(None)
    #: one trunk and head for every camera (same frame shape required) instead of one per camera.
    share_across_cameras: bool = False


def crop_shape(cfg: ImageEncoderConfig, height: int, width: int, key: str) -> tuple[int, int]:
    """The crop ``cfg`` asks for on ``height`` x ``width`` frames of ``key``; a crop larger than the
    frame, or a crop size that is not two numbers, is refused naming the field."""
    if not cfg.crop:
        if cfg.crop_size is not None:
            raise ConfigError("algo", "image_encoder.crop_size", f"{cfg.crop_size} is set but image_encoder.crop is false")
        return height, width
    if cfg.crop_size is None:
        return max(1, round(DEFAULT_CROP_SHARE * height)), max(1, round(DEFAULT_CROP_SHARE * width))
    if len(cfg.crop_size) != 2:
        raise ConfigError("algo", "image_encoder.crop_size", f"expected [height, width], got {cfg.crop_size}")
    h, w = cfg.crop_size
    if h > height or w > width:
        raise ConfigError("algo", "image_encoder.crop_size", f"{[h, w]} is larger than the {height} x {width} frames of {key!r}")
    return int(h), int(w)


class CropRandomizer(nn.Module):
    """(N, H, W, C) frames -> (N, h, w, C) crops: a random window per frame in training mode, the
    central window in eval mode. The same size both times, so the network sees at evaluation the
    field of view it was trained on, at the training crops' mean position."""

    def __init__(self, height: int, width: int, crop_height: int, crop_width: int):
        super().__init__()
        self.height, self.width = height, width
        self.crop_height, self.crop_width = crop_height, crop_width

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        dh, dw = self.height - self.crop_height, self.width - self.crop_width
        if dh == 0 and dw == 0:
            return x
        if not self.training:
            top, left = dh // 2, dw // 2
            return x[:, top : top + self.crop_height, left : left + self.crop_width]
        n = x.shape[0]
        # Offsets drawn on the CPU (the training generator's device), then moved to the frames'.
        top = torch.randint(dh + 1, (n,), generator=gen).to(x.device)
        left = torch.randint(dw + 1, (n,), generator=gen).to(x.device)
        rows = top[:, None] + torch.arange(self.crop_height, device=x.device)[None, :]
        cols = left[:, None] + torch.arange(self.crop_width, device=x.device)[None, :]
        frame = torch.arange(n, device=x.device)[:, None, None]
        return x[frame, rows[:, :, None], cols[:, None, :]]


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) feature maps -> (N, 2K) keypoints: a 1x1 convolution to K maps, a softmax over
    each map's positions at a learned temperature, and the expected (x, y) of each, in [-1, 1].

    The temperature is learnt as its logarithm, so it stays positive (a negative one would turn
    the softmax into a softmin)."""

    def __init__(self, channels: int, height: int, width: int, keypoints: int, temperature: float = 1.0):
        super().__init__()
        self.keypoints = keypoints
        self.to_keypoints = nn.Conv2d(channels, keypoints, kernel_size=1)
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij")
        # Fixed by the map's size, rebuilt from the config on load: buffers outside the weights file.
        self.register_buffer("pos_x", xs.reshape(1, 1, -1), persistent=False)
        self.register_buffer("pos_y", ys.reshape(1, 1, -1), persistent=False)
        self.out_dim = 2 * keypoints

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, H*W) softmax weights of each keypoint over the map's positions."""
        maps = self.to_keypoints(x).flatten(2)
        return F.softmax(maps / self.log_temperature.exp(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attention(x)
        xy = torch.stack([(attn * self.pos_x).sum(-1), (attn * self.pos_y).sum(-1)], -1)  # (N, K, 2)
        return xy.flatten(1)


def conv_trunk(in_channels: int, channels: Sequence[int], downsample: int, group_norm: bool) -> nn.Sequential:
    """3x3 convolutions (the first ``downsample`` of them stride 2), each with optional GroupNorm and a ReLU."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for i, c_out in enumerate(channels):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=2 if i < downsample else 1, padding=1))
        if group_norm:
            layers.append(nn.GroupNorm(max(1, c_out // 16), c_out))
        layers.append(nn.ReLU())
        c_in = c_out
    return nn.Sequential(*layers)


def trunk_output_size(size: int, downsample: int) -> int:
    """A side of the trunk's feature map: each stride-2 3x3 convolution (padding 1) maps s to ceil(s / 2)."""
    for _ in range(downsample):
        size = (size - 1) // 2 + 1
    return size


class VisualCore(nn.Module):
    """(N, C, h, w) float frames in [0, 1] -> (N, feature_dim): trunk, spatial softmax, linear."""

    def __init__(self, cfg: ImageEncoderConfig, in_channels: int, height: int, width: int):
        super().__init__()
        if not cfg.channels:
            raise ConfigError("algo", "image_encoder.channels", "expected at least one convolution")
        if cfg.downsample > len(cfg.channels):
            raise ConfigError("algo", "image_encoder.downsample",
                              f"{cfg.downsample} stride-2 layers, but image_encoder.channels has {len(cfg.channels)} convolutions")
        self.trunk = conv_trunk(in_channels, cfg.channels, cfg.downsample, cfg.group_norm)
        fh, fw = trunk_output_size(height, cfg.downsample), trunk_output_size(width, cfg.downsample)
        self.keypoints = SpatialSoftmax(cfg.channels[-1], fh, fw, cfg.keypoints)
        self.project = nn.Linear(self.keypoints.out_dim, cfg.feature_dim)
        self.input_shape = (in_channels, height, width)
        self.out_dim = cfg.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.keypoints(self.trunk(x)))


class ImageKeyEncoder(nn.Module):
    """One camera key: uint8 frames ``(*lead, H, W, C)`` -> features ``(*lead, feature_dim)``.

    Crops the uint8 frames, converts the crops to float CHW in [0, 1] and runs the visual core
    (its own, or one shared with the other cameras, given as ``core``)."""

    def __init__(self, key: str, shape: tuple[int, int, int], cfg: ImageEncoderConfig, core: VisualCore | None = None):
        super().__init__()
        height, width, channels = shape
        if not (0 < height <= MAX_FRAME_SIDE and 0 < width <= MAX_FRAME_SIDE and channels > 0):
            raise ConfigError("observation encoder", key, f"frames of shape {list(shape)}: expected height and width "
                              f"of 1 to {MAX_FRAME_SIDE} pixels and at least one channel")
        ch, cw = crop_shape(cfg, height, width, key)
        self.key, self.shape = key, tuple(shape)
        self.crop = CropRandomizer(height, width, ch, cw)
        self.core = core if core is not None else VisualCore(cfg, channels, ch, cw)
        if self.core.input_shape != (channels, ch, cw):
            raise ConfigError("algo", "image_encoder.share_across_cameras",
                              f"{key!r} crops to {channels} x {ch} x {cw}, the shared encoder takes {self.core.input_shape}; "
                              "cameras of different shapes need their own encoders (share_across_cameras: false)")
        self.out_dim = self.core.out_dim

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise ConfigError("observation encoder", self.key, f"expected uint8 frames, got {x.dtype}")
        if tuple(x.shape[-3:]) != self.shape:
            raise ConfigError("observation encoder", self.key, f"expected frames of shape {list(self.shape)}, got {list(x.shape[-3:])}")
        lead = x.shape[:-3]
        frames = self.crop(x.reshape(-1, *self.shape), gen)
        pixels = frames.permute(0, 3, 1, 2).float().div_(255.0)
        return self.core(pixels).reshape(*lead, self.out_dim)
