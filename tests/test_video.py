"""The MP4 writer: readable output with the expected frame count and size, atomic on failure."""
import numpy as np
import pytest

from robolearn.video import VideoError, read_mp4_info, write_mp4


def _frames(n, h, w):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


def test_write_and_read_back(tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", _frames(17, 48, 64), fps=20)
    assert path.exists()
    assert read_mp4_info(path) == (17, 64, 48)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_odd_size_is_padded_not_resized(tmp_path):
    n, w, h = read_mp4_info(write_mp4(tmp_path / "odd.mp4", _frames(5, 33, 45), fps=10))
    assert (n, w, h) == (5, 46, 34)


def test_bad_frames_are_refused_and_leave_nothing(tmp_path):
    frames = _frames(3, 32, 32)
    frames[2] = frames[2][:16]
    with pytest.raises(VideoError, match="frame 2"):
        write_mp4(tmp_path / "bad.mp4", frames, fps=10)
    with pytest.raises(VideoError, match="uint8"):
        write_mp4(tmp_path / "bad.mp4", [np.zeros((8, 8, 3), np.float32)], fps=10)
    with pytest.raises(VideoError, match="no frames"):
        write_mp4(tmp_path / "bad.mp4", [], fps=10)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_file_is_named(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(b"not a video")
    with pytest.raises(VideoError, match="junk.mp4"):
        read_mp4_info(p)
