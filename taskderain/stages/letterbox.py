"""Letterboxing and stride padding of image *tensors*, differentiable, on any device.

The geometry is :func:`taskderain.data.letterbox.letterbox_params` (ultralytics' ``LetterBox``);
only the resampling differs: bilinear ``F.interpolate`` on floats where ultralytics runs
``cv2.resize`` (INTER_LINEAR, same pixel-centre convention, no antialiasing) on uint8.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
import torch.nn.functional as F

from ..data.letterbox import LetterboxParams, letterbox_params

PAD_VALUE = 114 / 255  # ultralytics' grey padding (114 in uint8), as a float in [0, 1]


def letterbox_tensor(images: torch.Tensor, new_shape: Union[int, Tuple[int, int]] = 640, stride: int = 32,
                     auto: bool = True, scaleup: bool = True,
                     pad_value: float = PAD_VALUE) -> Tuple[torch.Tensor, LetterboxParams]:
    """Letterbox (B,C,H,W) float images like ultralytics' predictor; gradients flow through.

    Args:
        new_shape: target side or (H, W) in pixels; with ``auto=True`` (ultralytics' predictor for
            ``.pt`` models) only the padding to a multiple of ``stride`` is kept (minimum rectangle).
        pad_value: border value, 114/255 as ultralytics.

    Returns:
        The letterboxed (B,C,H',W') tensor and its geometry (``params.new_shape`` = (H', W')).
    """
    params = letterbox_params(tuple(images.shape[-2:]), new_shape, scaleup=scaleup, auto=auto, stride=stride)
    width, height = params.resized
    x = images
    if (x.shape[-1], x.shape[-2]) != (width, height):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    if params.top or params.bottom or params.left or params.right:
        x = F.pad(x, (params.left, params.right, params.top, params.bottom), value=pad_value)
    return x, params


def pad_to_stride(images: torch.Tensor, stride: int, pad_value: float = PAD_VALUE) -> torch.Tensor:
    """Pad (B,C,H,W) at the bottom/right with ``pad_value`` so H and W become multiples of ``stride``."""
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % stride, (-w) % stride
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), value=pad_value)
