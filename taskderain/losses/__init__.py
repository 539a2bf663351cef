"""Training losses: pure functions of tensors plus thin ``nn.Module`` wrappers."""

from .restoration import CharbonnierLoss, MSPFNLoss, charbonnier, laplacian, mspfn_loss

__all__ = ["CharbonnierLoss", "MSPFNLoss", "charbonnier", "laplacian", "mspfn_loss"]
