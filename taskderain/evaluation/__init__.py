"""Evaluation of derainers (PSNR/SSIM) and, later, of whole pipelines (mAP, mIoU)."""

from .derain import evaluate_derainer

__all__ = ["evaluate_derainer"]
