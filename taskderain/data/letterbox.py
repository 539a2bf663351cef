"""Letterboxing (aspect-preserving resize + padding) exactly as ultralytics does it.

Pure functions on one image, its boxes and its mask, so rainy and clean images of a sample
receive the same geometry. Boxes are normalised xywh (YOLO labels) before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union

import cv2
import numpy as np

Shape = Union[int, Tuple[int, int]]


@dataclass(frozen=True)
class LetterboxParams:
    """Geometry of one letterbox: ``new = old * ratio + (left, top)``.

    Attributes:
        orig_shape: (H, W) of the source image.
        new_shape: (H, W) of the letterboxed image.
        ratio: scale factor (same on both axes).
        resized: (W, H) of the scaled image before padding (ultralytics' ``new_unpad``).
        top, bottom, left, right: padding in pixels.
    """

    orig_shape: Tuple[int, int]
    new_shape: Tuple[int, int]
    ratio: float
    resized: Tuple[int, int]
    top: int
    bottom: int
    left: int
    right: int

    @property
    def ratio_pad(self) -> Tuple[Tuple[float, float], Tuple[int, int]]:
        """ultralytics' ``ratio_pad``: ((gain_h, gain_w), (pad_left, pad_top))."""
        return (self.ratio, self.ratio), (self.left, self.top)


def letterbox_params(shape: Tuple[int, int], new_shape: Shape = 640, scaleup: bool = True,
                     auto: bool = False, stride: int = 32, center: bool = True) -> LetterboxParams:
    """ultralytics' ``LetterBox.get_params`` for an image of (H, W) ``shape``.

    Args:
        new_shape: target (H, W) or side. With ``auto=True`` only the padding to a multiple of
            ``stride`` is kept (minimum rectangle).
        scaleup: allow enlarging small images (False = only shrink, as ultralytics' val).
    """
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    h, w = shape
    r = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    resized = (max(round(w * r), 1), max(round(h * r), 1))
    dw, dh = new_shape[1] - resized[0], new_shape[0] - resized[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    if center:
        dw, dh = dw / 2, dh / 2
    top, bottom = (round(dh - 0.1) if center else 0), round(dh + 0.1)
    left, right = (round(dw - 0.1) if center else 0), round(dw + 0.1)
    out_shape = (resized[1] + top + bottom, resized[0] + left + right)
    return LetterboxParams((h, w), out_shape, r, resized, top, bottom, left, right)


def letterbox_image(image: np.ndarray, params: LetterboxParams, pad_value: int = 114,
                    interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize (H, W, C) ``image`` and pad it with ``pad_value`` per ``params``."""
    if image.shape[1::-1] != params.resized:
        image = cv2.resize(image, params.resized, interpolation=interpolation)
    return cv2.copyMakeBorder(image, params.top, params.bottom, params.left, params.right,
                              cv2.BORDER_CONSTANT, value=(pad_value,) * 3)


def letterbox_mask(mask: np.ndarray, params: LetterboxParams, pad_value: int = 255) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) class-id mask, padded with ``pad_value`` (ignore)."""
    if mask.shape[1::-1] != params.resized:
        mask = cv2.resize(mask, params.resized, interpolation=cv2.INTER_NEAREST)
    return cv2.copyMakeBorder(mask, params.top, params.bottom, params.left, params.right,
                              cv2.BORDER_CONSTANT, value=pad_value)


def letterbox_boxes(xywhn: np.ndarray, params: LetterboxParams) -> np.ndarray:
    """Normalised xywh boxes of the source image → normalised xywh of the letterboxed image."""
    h, w = params.orig_shape
    nh, nw = params.new_shape
    out = np.asarray(xywhn, dtype=np.float32).reshape(-1, 4).copy()
    out[:, 0] = (out[:, 0] * w * params.ratio + params.left) / nw
    out[:, 1] = (out[:, 1] * h * params.ratio + params.top) / nh
    out[:, 2] = out[:, 2] * w * params.ratio / nw
    out[:, 3] = out[:, 3] * h * params.ratio / nh
    return out


def unletterbox_xyxy(xyxy: np.ndarray, params: LetterboxParams) -> np.ndarray:
    """Pixel xyxy boxes in the letterboxed image → pixel xyxy in the source image, clipped."""
    out = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = ((out[:, [0, 2]] - params.left) / params.ratio).clip(0, params.orig_shape[1])
    out[:, [1, 3]] = ((out[:, [1, 3]] - params.top) / params.ratio).clip(0, params.orig_shape[0])
    return out
