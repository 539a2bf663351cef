"""Training losses: pure functions of tensors plus thin ``nn.Module`` wrappers."""

from .restoration import CharbonnierLoss, MSPFNLoss, PSNRLoss, charbonnier, laplacian, mspfn_loss, psnr_loss

__all__ = ["CharbonnierLoss", "MSPFNLoss", "PSNRLoss", "charbonnier", "laplacian", "mspfn_loss", "psnr_loss"]
