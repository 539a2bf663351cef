"""Restoration losses of the MSPFN recipe (Jiang et al., CVPR 2020: a Charbonnier content
loss plus a Charbonnier loss on Laplacian edge maps, weighted 0.05).

* ``charbonnier(a, b) = mean(sqrt((a - b)² + ε²))``.
* ``laplacian(x)``: per-channel 3x3 kernel ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]``, zero padding.
* ``mspfn_loss = charbonnier(d, c) + 0.05 · charbonnier(laplacian(d), laplacian(c))``.
* ``psnr_loss = −mean_i PSNR_i = mean_i 10·log10(MSE_i + ε)``, per image (the PSNR loss of
  HINet / NAFNet, Chen et al. 2021 / ECCV 2022). Its gradient on image i is ``∇MSE_i / MSE_i``:
  halving any image's RMS error lowers it by the same 6.02/B dB, so a batch's nearly clean images
  (light rain) count as much as its heavy-rain ones, which dominate a pixel loss.

ε scaling: the released code works on [-1, 1] data with ε = 1e-3. Mapping x ↦ 2x - 1 doubles
every difference, so ``sqrt((2Δ)² + (1e-3)²) = 2·sqrt(Δ² + (5e-4)²)``: on [0, 1] data ε = 5e-4
gives the same minimiser and the same loss up to the constant factor 2 (which Adam ignores,
apart from its own ε). Hence the default ``eps=5e-4`` for [0, 1] tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ε on [0, 1] data (≙ 1e-3 on [-1, 1] data, the released code's value).
EPS = 5e-4
#: weight of the Laplacian (edge) term.
EDGE_WEIGHT = 0.05

_LAPLACIAN = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Charbonnier (smooth L1) loss ``mean(sqrt((a - b)² + eps²))``, a scalar.

    Args:
        a, b: tensors of the same shape, e.g. (B,3,H,W) float in [0,1].
        eps: smoothing constant in the data's units (5e-4 for [0, 1] data).
    """
    if a.shape != b.shape:
        raise ValueError(f"charbonnier: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return torch.sqrt((a - b).pow(2) + eps * eps).mean()


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 Laplacian ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]`` with zero padding.

    Args:
        x: (B,C,H,W) float.

    Returns:
        (B,C,H,W), same dtype and device; 0 on constant regions away from the border.
    """
    if x.ndim != 4:
        raise ValueError(f"laplacian expects (B,C,H,W), got shape {tuple(x.shape)}")
    c = x.shape[1]
    kernel = torch.tensor(_LAPLACIAN, dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    return F.conv2d(x, kernel, padding=1, groups=c)


def mspfn_loss(derained: torch.Tensor, clean: torch.Tensor, eps: float = EPS,
               edge_weight: float = EDGE_WEIGHT) -> torch.Tensor:
    """MSPFN training loss ``charbonnier(d, c) + 0.05 · charbonnier(lap(d), lap(c))``, a scalar.

    Args:
        derained: (B,3,H,W) network output (not clamped), [0,1] scale.
        clean: (B,3,H,W) float in [0,1].
    """
    return charbonnier(derained, clean, eps) + edge_weight * charbonnier(laplacian(derained), laplacian(clean), eps)


def psnr_loss(derained: torch.Tensor, clean: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Minus the mean per-image PSNR (RGB, peak 1) in dB: ``mean_i 10·log10(MSE_i + eps)``, a scalar.

    Args:
        derained: (B,C,H,W) network output, [0,1] scale (not clamped).
        clean: (B,C,H,W) float in [0,1].
        eps: keeps the log finite at zero error (1e-8: a ceiling of 80 dB).
    """
    if derained.shape != clean.shape:
        raise ValueError(f"psnr_loss: shapes differ: {tuple(derained.shape)} vs {tuple(clean.shape)}")
    if derained.ndim != 4:
        raise ValueError(f"psnr_loss expects (B,C,H,W), got shape {tuple(derained.shape)}")
    mse = (derained - clean).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(mse + eps).mean()


class CharbonnierLoss(nn.Module):
    """Module form of :func:`charbonnier`; holds ``eps``."""

    def __init__(self, eps: float = EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return charbonnier(a, b, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class MSPFNLoss(nn.Module):
    """Module form of :func:`mspfn_loss`; holds ``eps`` and ``edge_weight``."""

    def __init__(self, eps: float = EPS, edge_weight: float = EDGE_WEIGHT) -> None:
        super().__init__()
        self.eps, self.edge_weight = eps, edge_weight

    def forward(self, derained: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return mspfn_loss(derained, clean, self.eps, self.edge_weight)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, edge_weight={self.edge_weight}"


class PSNRLoss(nn.Module):
    """Module form of :func:`psnr_loss`; holds ``eps``."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, derained: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return psnr_loss(derained, clean, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
