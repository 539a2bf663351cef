"""Reading and writing images with errors that name the file.

Every image enters the library as RGB ``uint8`` (H, W, 3) or float32 in [0, 1], in its
*displayed* orientation: the EXIF Orientation tag is applied, as ``cv2.imread(IMREAD_COLOR)`` and
ultralytics do (so boxes and labels line up with ``YOLO.predict`` on the same file). Grayscale is
replicated to three channels, an alpha channel is dropped, 16-bit images are scaled to the 8-bit
range (float reads keep their 16-bit precision). Writes are atomic (temporary file + rename), so
an interrupted run never leaves a truncated image behind; :func:`remove_stale_parts` clears the
temporary files of a run killed mid-write.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from .types import PathLike


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An image file exists but cannot be decoded into an RGB image."""


class ImageWriteError(OSError):
    """An image could not be written (unwritable folder, full disk, bad encoder)."""


def is_image_file(path: PathLike) -> bool:
    """True for a path whose suffix is a supported image format."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _decode(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a folder: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"image file is empty (0 bytes): {path}")
    # not IMREAD_UNCHANGED: that flag skips the EXIF orientation; ANYDEPTH keeps 16-bit / float
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise ImageReadError(f"cannot decode image (corrupt or not an image): {path}")
    return image


def _to_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 3:
        return image[:, :, ::-1]
    if channels == 4:
        return image[:, :, 2::-1]
    raise ImageReadError(f"unsupported channel count {channels} in {path}; expected 1, 3 or 4")


def read_rgb(path: PathLike, as_float: bool = False) -> np.ndarray:
    """Read an image file as RGB, in its displayed orientation (EXIF Orientation applied).

    Args:
        path: image file (PNG, JPEG, BMP, TIFF, WebP); grayscale, RGBA and 16-bit accepted.
        as_float: return float32 in [0, 1] (keeping 16-bit precision) instead of uint8.

    Returns:
        (H, W, 3) contiguous array, uint8 or float32 in [0, 1].

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: empty, corrupt or undecodable file, or an unsupported layout.
    """
    path = Path(path)
    image = _to_rgb(_decode(path), path)
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    elif image.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise ImageReadError(f"unsupported pixel type {image.dtype} in {path}")
    if as_float:
        return np.ascontiguousarray(image, dtype=np.float32) / np.float32(scale)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(np.clip(np.rint(image.astype(np.float64) * (255.0 / scale)), 0, 255).astype(np.uint8))


def image_size(path: PathLike) -> Tuple[int, int]:
    """(height, width) of an image file as :func:`read_rgb` returns it, read from its header only.

    The EXIF Orientation is applied (orientations 5-8 swap the sides), so the size matches
    the decoded image; falls back to decoding when the header cannot be parsed.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return read_rgb(path).shape[:2]
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def remove_stale_parts(folder: PathLike) -> int:
    """Delete the ``.NAME.*.part`` temporary files that a run killed mid-write left under ``folder``.

    Returns how many were removed (0 when ``folder`` does not exist).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(".*.part") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_rgb(path: PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 (H, W, 3) image atomically; the format follows the suffix.

    The image is encoded in memory, written to a temporary file in the destination folder and
    renamed into place, so the destination is either complete or absent.

    Raises:
        ImageWriteError: the folder cannot be created or written, or the disk is full.
    """
    path = Path(path)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_rgb expects (H, W, 3) uint8, got {image.shape} {image.dtype} for {path}")
    ok, encoded = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ImageWriteError(f"cannot encode image as {path.suffix!r}: {path}")
    write_bytes_atomic(path, encoded.tobytes())
    return path


def write_mask(path: PathLike, mask: np.ndarray) -> Path:
    """Write an (H, W) class-index mask atomically as a single-channel PNG (16-bit above 255)."""
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.min(initial=0) < 0:
        raise ValueError(f"write_mask expects an (H, W) array of non-negative class indices, got {mask.shape} for {path}")
    dtype = np.uint8 if mask.max(initial=0) < 256 else np.uint16
    ok, encoded = cv2.imencode(".png", mask.astype(dtype))
    if not ok:
        raise ImageWriteError(f"cannot encode mask as PNG: {path}")
    write_bytes_atomic(path, encoded.tobytes())
    return path


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename; no partial file survives."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise ImageWriteError(f"cannot write to folder {path.parent}: {exc.strerror or exc}") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise ImageWriteError(f"cannot write {path}: {reason}") from exc
