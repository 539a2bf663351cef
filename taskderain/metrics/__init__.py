"""Image-quality metrics as deraining papers compute them (see ``PROTOCOL``).

NumPy functions (:func:`psnr`, :func:`ssim`) score single 8-bit RGB images exactly as the
published numbers are computed; the torch twins (:func:`psnr_torch`, :func:`ssim_torch` and the
:class:`PSNR` / :class:`SSIM` modules) score batches inside training loops and reproduce the
NumPy values with ``quantize=True``.
"""

from taskderain.metrics.color import rgb_to_y, to_uint8
from taskderain.metrics.protocol import PROTOCOL, describe_protocol
from taskderain.metrics.psnr import PSNR, psnr, psnr_torch
from taskderain.metrics.ssim import SSIM, ssim, ssim_map, ssim_torch

__all__ = [
    "PROTOCOL",
    "PSNR",
    "SSIM",
    "describe_protocol",
    "psnr",
    "psnr_torch",
    "rgb_to_y",
    "ssim",
    "ssim_map",
    "ssim_torch",
    "to_uint8",
]
