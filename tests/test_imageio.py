"""Image reading/writing: every odd file gives RGB or a clear error naming the file."""

from __future__ import annotations

import errno
import os

import cv2
import numpy as np
import pytest

from taskderain.imageio import ImageReadError, ImageWriteError, read_rgb, write_bytes_atomic, write_rgb


def test_roundtrip_keeps_rgb_order(tmp_path, rng):
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 0)  # pure red must stay in channel 0
    path = write_rgb(tmp_path / "a.png", image)
    back = read_rgb(path)
    assert np.array_equal(back, image)
    assert tuple(back[0, 0]) == (255, 0, 0)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]  # BGR on disk, as every viewer expects


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.shape == (3, 4, 3)
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path):
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 200, 0  # fully transparent
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    rgb = read_rgb(tmp_path / "a.png")
    assert rgb.shape == (2, 2, 3) and tuple(rgb[0, 0]) == (200, 0, 10)


def test_16bit_png_scaled_to_8bit_and_float_keeps_precision(tmp_path):
    bgr16 = np.full((2, 3, 3), 65535, np.uint16)
    bgr16[0, 0] = (0, 257 * 100, 1)
    cv2.imwrite(str(tmp_path / "d.png"), bgr16)
    rgb8 = read_rgb(tmp_path / "d.png")
    assert rgb8.dtype == np.uint8 and tuple(rgb8[0, 0]) == (0, 100, 0) and rgb8[1, 1, 0] == 255
    rgbf = read_rgb(tmp_path / "d.png", as_float=True)
    assert rgbf.dtype == np.float32 and rgbf[0, 0, 2] == pytest.approx(0.0) and rgbf[0, 0, 0] == pytest.approx(1 / 65535)


def test_missing_empty_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_rgb(tmp_path / "nothere.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty \(0 bytes\).*empty.png"):
        read_rgb(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all" * 10)
    with pytest.raises(ImageReadError, match="corrupt.*junk.jpg"):
        read_rgb(tmp_path / "junk.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read_rgb(tmp_path)


def test_write_into_unwritable_place_is_clear_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageWriteError, match="cannot write to folder"):
        write_rgb(blocker / "sub" / "a.png", np.zeros((2, 2, 3), np.uint8))


def test_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_bytes_atomic(target, b"12345")
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
