"""The ``restoration`` training task: a derainer on (rainy, clean) pairs with MSPFN's loss, validated by PSNR-Y.

Pairs come from ``data.paired`` (a paired folder) or ``data.images`` (clean images rained online,
:class:`~taskderain.rain.online_pairs.OnlineRainPairs`); see :func:`~taskderain.train.data.build_datasets`.
Validation: mean PSNR-Y (dB, 8-bit quantised, :func:`~taskderain.metrics.psnr.psnr_torch`
``quantize=True``) of the derained vs the clean validation images. Under torchrun the derainer is
wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from ..inference import autocast
from ..losses import MSPFNLoss
from ..metrics.psnr import psnr_torch
from ..models import create_derainer
from .data import _collate, build_datasets, make_loader
from .training_task import TrainingTask, register_training_task


@register_training_task("restoration")
class RestorationTask(TrainingTask):
    """The derainer alone on (rainy, clean) pairs, MSPFN's loss, validated by PSNR-Y."""

    metric_names = ("psnr_y",)

    def __init__(self, config: Dict[str, Any], device: torch.device) -> None:
        super().__init__(config, device)
        m = config["model"]
        self.derainer = self.trained = create_derainer(m["name"], weights=m["weights"], **m["options"]).to(device)
        self.train_set, self.indices, self.val_set = build_datasets(config["data"], config["seed"])
        self.loss_fn = MSPFNLoss()

    def param_groups(self) -> Iterable[Any]:
        return self.derainer.parameters()

    def distribute(self) -> Optional[nn.Module]:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(self.derainer, device_ids=[self.device.index]
                                       if self.device.type == "cuda" else None)

    def loader(self, batches: List[List[int]], epoch: int, workers: int) -> Iterable[Dict[str, Any]]:
        self.train_set.set_epoch(epoch)
        return make_loader(self.train_set, batches, workers)

    def loss(self, batch: Dict[str, Any], step: int, amp_dtype: Optional[torch.dtype],
             ddp: Optional[nn.Module] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        rainy, clean = batch["rainy"].to(self.device), batch["clean"].to(self.device)
        with autocast(self.device, amp_dtype):
            derained = (ddp or self.derainer)(rainy)
        return self.loss_fn(derained.float(), clean), {}

    @torch.no_grad()
    def validate(self, amp_dtype: Optional[torch.dtype]) -> Optional[Dict[str, float]]:
        if self.val_set is None:
            return None
        loader = torch.utils.data.DataLoader(self.val_set, batch_size=1, collate_fn=_collate,
                                             num_workers=self.config["data"]["workers"], generator=torch.Generator())
        values: List[torch.Tensor] = []
        for batch in loader:
            with autocast(self.device, amp_dtype):
                derained = self.derainer.derain(batch["rainy"].to(self.device))
            values.append(psnr_torch(derained.float(), batch["clean"].to(self.device), quantize=True).cpu())
        return {"psnr_y": float(torch.cat(values).mean())}
