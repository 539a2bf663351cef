"""Running a derainer on whole images or in overlapping tiles, in fp32 or under autocast.

Tiling keeps activation memory bounded by the tile size: tiles are derained one at a time on
the model's device and blended on the CPU with weights that are zero within ``overlap // 4``
of an inner tile edge and ramp up linearly across the rest of the overlap, so the border
artefacts of every tile are discarded and no seam remains.

One tiling policy serves every command and the Python API (:func:`choose_tile`): an explicit
``tile`` is used as given; otherwise images above ``max_pixels`` (default
:data:`DEFAULT_MAX_PIXELS`, about 1920x1080) are derained in :data:`AUTO_TILE` px tiles, and
``max_pixels`` 0 or ``None`` never tiles. :func:`check_tiling` is the one rule for the values.

Inputs must be float images in [0, 1] without NaN/Inf, and a derainer output holding NaN/Inf
is an error (:class:`NonFiniteOutputError`), never a black image.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from .models.base import Derainer

DTYPES = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def resolve_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """``None``/"auto" → CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises:
        ValueError: a CUDA device was asked for on a machine without one.
    """
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str) and device.isdigit():
        device = f"cuda:{device}"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available here; use --device cpu")
    return device


def module_device(module: torch.nn.Module, default: Union[str, torch.device] = "cpu") -> torch.device:
    """The device of ``module``'s parameters (``default`` when it has none, e.g. the identity)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device(default)


def half_dtype(device: torch.device) -> torch.dtype:
    """The reduced precision to use on ``device``: bf16 on CPU, fp16 on CUDA."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for fp32 (``None``)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


DEFAULT_MAX_PIXELS = 2_100_000  #: images above this many pixels are tiled automatically (~1920x1080)
AUTO_TILE = 512  #: tile side used by automatic tiling


class NonFiniteOutputError(ValueError):
    """A derainer produced NaN or Inf (diverged weights, fp16 overflow): refused, never written."""


def check_tiling(tile: Optional[int], overlap: int, max_pixels: Optional[int] = 0) -> None:
    """The one rule for tiling settings, in every command and API call.

    ``tile``: ``None`` (whole image, or automatic above ``max_pixels``) or a whole number of
    pixels larger than ``overlap``; ``overlap``: a whole number >= 0; ``max_pixels``: ``None``,
    0 (never tile automatically) or a positive whole number.

    Raises:
        ValueError: naming every value, e.g. ``tile=-5, overlap=64``.
    """
    def whole(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    ok = (whole(overlap) and overlap >= 0 and (tile is None or (whole(tile) and tile > overlap))
          and (max_pixels is None or (whole(max_pixels) and max_pixels >= 0)))
    if not ok:
        raise ValueError(f"bad tiling: tile must be null (whole image) or a whole number of pixels larger than "
                         f"overlap, overlap a whole number >= 0, max_pixels >= 0 (0: never tile automatically); "
                         f"got tile={tile!r}, overlap={overlap!r}, max_pixels={max_pixels!r}")


def choose_tile(height: int, width: int, tile: Optional[int] = None, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                overlap: int = 64) -> Optional[int]:
    """The tile side for an H x W image: ``tile`` when given; else :data:`AUTO_TILE` (at least
    ``2 * overlap``) when ``height * width > max_pixels``; else ``None`` (whole image).
    ``max_pixels`` 0 or ``None`` never tiles automatically."""
    check_tiling(tile, overlap, max_pixels)
    if tile is not None:
        return tile
    if max_pixels and height * width > max_pixels:
        return max(AUTO_TILE, 2 * overlap)
    return None


def check_images(images: torch.Tensor, what: str = "images", finite: bool = True) -> None:
    """Refuse what the stages would silently misread: non-float tensors (uint8 in 0..255 taken
    as [0, 1] floats turns every pixel white) and, with ``finite``, NaN/Inf pixels (the check
    costs a device sync; training steps skip it and check the loss instead).

    Raises:
        TypeError: not a floating-point tensor (the message says how to convert).
        ValueError: a wrong shape, or NaN/Inf values.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{what}: expected float images in [0, 1], got a {images.dtype} tensor; convert uint8 "
                        f"images with images.float() / 255 (16-bit: / 65535)")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what}: expected (B,3,H,W) images, got shape {tuple(images.shape)}")
    if finite and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{what}: {int((~torch.isfinite(images)).sum())} pixel value(s) are NaN or Inf")


def tile_spans(size: int, tile: int, overlap: int, align: int = 1) -> List[Tuple[int, int]]:
    """(start, length) of tiles covering ``[0, size)``, neighbours sharing at least ``overlap`` pixels.

    Starts are multiples of ``align`` (the model's ``pad_multiple``), so every tile sees the
    image on the same pixel grid as the whole-image pass; the last tile is up to ``align - 1``
    pixels longer than ``tile`` to reach the end.
    """
    if tile >= size:
        return [(0, size)]
    stride = max(align, (tile - overlap) // align * align)
    last = (size - tile) // align * align
    return [(start, tile) for start in range(0, last, stride)] + [(last, size - last)]


def _blend_weight(length: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """1-D blending weight of a tile ``[start, start + length)`` inside ``[0, size)``.

    Zero within ``overlap // 4`` of an inner edge (discarding the tile's border artefacts),
    then a linear ramp up to 1 over the rest of the overlap; image borders keep weight 1.
    """
    pos = torch.arange(length, dtype=torch.float64)
    margin = overlap // 4
    ramp = overlap - 2 * margin + 1
    weight = torch.ones(length, dtype=torch.float64)
    if start > 0:
        weight = torch.minimum(weight, ((pos - margin + 1) / ramp).clamp(0, 1))
    if start + length < size:
        weight = torch.minimum(weight, ((length - pos - margin) / ramp).clamp(0, 1))
    return weight


def iter_tiles(height: int, width: int, tile: int, overlap: int,
               align: int = 1) -> Iterator[Tuple[int, int, int, int]]:
    """(top, left, tile_h, tile_w) of every tile of a tiled pass over an H x W image."""
    for top, th in tile_spans(height, tile, overlap, align):
        for left, tw in tile_spans(width, tile, overlap, align):
            yield top, left, th, tw


@torch.inference_mode()
def derain_tensor(model: Derainer, images: torch.Tensor, tile: Optional[int] = None, overlap: int = 64,
                  dtype: Optional[torch.dtype] = None, max_pixels: Optional[int] = 0) -> torch.Tensor:
    """Derain (B,3,H,W) float in [0,1] → (B,3,H,W) float32 in [0,1] on the input's device.

    Args:
        model: a derainer; it runs on its own device (eval mode, no autograd).
        tile: tile side in pixels (``None`` = whole image, or automatic above ``max_pixels``).
            Must exceed ``overlap`` (:func:`check_tiling`).
        overlap: pixels shared by neighbouring tiles; larger than twice the model's receptive
            radius gives seam-free output identical to the untiled one for convolutional models.
        dtype: autocast dtype (``torch.bfloat16`` / ``torch.float16``) or ``None`` for fp32.
        max_pixels: tile automatically above this many pixels (:func:`choose_tile`); 0 = never
            (the default here; commands and ``Pipeline.predict`` use :data:`DEFAULT_MAX_PIXELS`).

    Raises:
        TypeError / ValueError: non-float images, NaN/Inf pixels, bad tiling values.
        NonFiniteOutputError: the derainer's output holds NaN/Inf.
    """
    check_images(images)
    height, width = images.shape[-2:]
    tile = choose_tile(height, width, tile, max_pixels, overlap)
    model.eval()
    device = module_device(model, images.device)

    def run(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            y = model(x.to(device, torch.float32)).float()
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteOutputError(f"the derainer ({getattr(model, 'preset', type(model).__name__)}) produced "
                                       f"NaN/Inf for an input of {tuple(x.shape)}"
                                       + ("" if dtype is None else f" under {str(dtype).replace('torch.', '')} "
                                          "autocast (try fp32)"))
        return y

    if tile is None or (tile >= height and tile >= width):
        return run(images).clamp(0, 1).to(images.device)  # not in place: identity returns its input
    out = torch.zeros(images.shape, dtype=torch.float64)
    total = torch.zeros((1, 1, height, width), dtype=torch.float64)
    align = getattr(model, "pad_multiple", 1)
    for top, left, th, tw in iter_tiles(height, width, tile, overlap, align):
        piece = run(images[..., top:top + th, left:left + tw]).to("cpu", torch.float64)
        weight = _blend_weight(th, top, height, overlap)[:, None] * _blend_weight(tw, left, width, overlap)[None, :]
        out[..., top:top + th, left:left + tw] += piece * weight
        total[..., top:top + th, left:left + tw] += weight
    return (out / total).float().clamp_(0, 1).to(images.device)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 or float [0,1] array → (1,3,H,W) float32 tensor in [0,1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    x = x.float().div_(255) if rgb.dtype == np.uint8 else x.float()
    return x.contiguous()  # channels-first layout: the derainers run ~6 % faster on it


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) or (3,H,W) float in [0,1] → (H,W,3) uint8, rounded (not truncated)."""
    x = images[0] if images.ndim == 4 else images
    return x.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def derain_array(model: Derainer, rgb: np.ndarray, tile: Optional[int] = None, overlap: int = 64,
                 dtype: Optional[torch.dtype] = None, max_pixels: Optional[int] = 0) -> np.ndarray:
    """Derain one (H,W,3) RGB image (uint8 or float [0,1]) → (H,W,3) uint8 (see :func:`derain_tensor`)."""
    return to_uint8(derain_tensor(model, to_tensor(rgb), tile=tile, overlap=overlap, dtype=dtype,
                                  max_pixels=max_pixels))
