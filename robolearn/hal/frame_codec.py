"""Camera frames inside arm-server observations: sent raw (uint8, bit-exact) or as JPEG.

Why a choice: a 640x480 RGB view is 0.9 MB raw, about 25 to 60 kB as JPEG at quality 90.
Raw costs nothing to encode and is exact, which a policy trained on lossless demo frames may
need; JPEG fits many views, or a slow link, inside one observation frame. The client asks for
one in HELLO (``frames: {encoding, quality}``); the server answers with what it applies.

What is encoded: image keys only, i.e. uint8 arrays of shape (H, W, 3) (``<view>_image``).
Depth (float32 metres) and the ages (``<view>_image_age_s``) always travel raw. A JPEG key
travels as its bytes (a 1-D uint8 array under the same name) and is listed in the reply's
``jpeg`` field; inside an authenticated connection it is covered by the frame's tag like
every other array.

Limits (``robolearn/hal/protocol.py``): a whole observation, frames included, must fit one
protocol frame's ``MAX_BLOB`` (16 MiB); the server refuses to send a larger one with code
``frame_too_large`` naming the biggest keys, rather than send what the client must refuse.
A JPEG is decoded only after its header states exactly the image size the arm's spec
declares, so a hostile header cannot make the client allocate an arbitrary image.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from robolearn.config import ConfigError
from robolearn.hal import protocol as P

FRAME_ENCODINGS = ("raw", "jpeg")
DEFAULT_JPEG_QUALITY = 90
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class FrameError(ValueError):
    """Frames that cannot be encoded or decoded; ``code`` goes into the ERROR reply."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class FrameCodec:
    encoding: str = "raw"
    quality: int = DEFAULT_JPEG_QUALITY

    @classmethod
    def checked(cls, encoding: Any, quality: Any, source: str, prefix: str = "") -> "FrameCodec":
        """A codec from settings, or ConfigError naming ``source`` and the field."""
        if encoding not in FRAME_ENCODINGS:
            raise ConfigError(source, prefix + "frame_encoding", f"expected one of {list(FRAME_ENCODINGS)}, got {encoding!r}")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ConfigError(source, prefix + "jpeg_quality", f"expected an integer in [1, 100], got {quality!r}")
        if encoding == "jpeg":
            _cv2(source)
        return cls(encoding, int(quality))

    def to_json(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "quality": self.quality}

    @classmethod
    def from_request(cls, meta: Any) -> "FrameCodec":
        """The codec a HELLO asks for (raw when it asks for none); FrameError when it is malformed."""
        if meta is None:
            return cls()
        if not isinstance(meta, Mapping):
            raise FrameError("bad_request", "HELLO 'frames' must be an object {encoding, quality}")
        try:
            return cls.checked(meta.get("encoding", "raw"), meta.get("quality", DEFAULT_JPEG_QUALITY), "HELLO", "frames.")
        except ConfigError as exc:
            code = "frames_unavailable" if "cv2" in exc.problem else "bad_request"
            raise FrameError(code, f"HELLO: {exc.field}: {exc.problem}") from None

    # -- the server side ------------------------------------------------------------------
    def encode(self, data: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
        """-> (arrays to send, names sent as JPEG). FrameError ``frame_too_large`` when the
        result would not fit one protocol frame."""
        arrays: dict[str, np.ndarray] = {}
        jpeg: list[str] = []
        for name, value in data.items():
            a = np.asarray(value)
            if self.encoding == "jpeg" and is_image(a):
                arrays[name] = _encode_jpeg(a, self.quality)
                jpeg.append(name)
            else:
                arrays[name] = a
        check_fits(arrays, self.encoding)
        return arrays, jpeg

    # -- the client side ------------------------------------------------------------------
    @staticmethod
    def decode(arrays: Mapping[str, np.ndarray], jpeg: Any, obs_spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The observation with its JPEG keys decoded to uint8 (H, W, 3) RGB, each checked
        against the shape the arm's spec declares before it is decoded."""
        out = {k: np.array(v) for k, v in arrays.items()}
        if not jpeg:
            return out
        if not isinstance(jpeg, list) or not all(isinstance(k, str) for k in jpeg):
            raise FrameError("bad_frames", "'jpeg' must be a list of observation keys")
        for name in jpeg:
            spec = obs_spec.get(name)
            if name not in out or spec is None or len(spec.shape) != 3 or spec.shape[2] != 3:
                raise FrameError("bad_frames", f"'{name}' is sent as JPEG but the arm's spec has no (H, W, 3) image of that name")
            out[name] = _decode_jpeg(name, out[name], tuple(spec.shape))
        return out


def is_image(a: np.ndarray) -> bool:
    return a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3


def check_fits(arrays: Mapping[str, np.ndarray], encoding: str) -> None:
    total = sum(int(np.asarray(a).nbytes) for a in arrays.values())
    if total <= P.MAX_BLOB:
        return
    biggest = sorted(arrays.items(), key=lambda kv: -np.asarray(kv[1]).nbytes)[:3]
    parts = ", ".join(f"{k} {np.asarray(v).nbytes / 2**20:.1f} MiB" for k, v in biggest)
    hint = "ask for frame_encoding: jpeg or make the views smaller" if encoding == "raw" else "make the views smaller or lower jpeg_quality"
    raise FrameError("frame_too_large", f"observation of {total / 2**20:.1f} MiB ({encoding} frames: {parts}) exceeds the "
                     f"protocol's {P.MAX_BLOB / 2**20:.0f} MiB per frame; {hint}")


def jpeg_size(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG's start-of-frame header; None if there is none."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF and i + 10 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return height, width, data[i + 9]
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _cv2(source: str = "frames"):
    try:
        import cv2
    except ImportError:
        raise ConfigError(source, "frame_encoding", "jpeg needs OpenCV (cv2): pip install 'robolearn[opencv]'") from None
    return cv2


def _encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    cv2 = _cv2()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise FrameError("internal", f"OpenCV could not encode a {image.shape} image as JPEG")
    return buf.reshape(-1)


def _decode_jpeg(name: str, data: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    raw = np.asarray(data)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise FrameError("bad_frames", f"'{name}': JPEG bytes must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    size = jpeg_size(raw.tobytes())
    if size != shape:
        raise FrameError("bad_frames", f"'{name}': JPEG header says {size} (height, width, components); the arm's spec "
                         f"declares {shape}")
    cv2 = _cv2()
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None or image.shape != shape:
        raise FrameError("bad_frames", f"'{name}': the JPEG does not decode to a {shape} image")
    return np.ascontiguousarray(image[..., ::-1])
