"""The ``restoration`` training task: a derainer on (rainy, clean) pairs with MSPFN's loss, validated by PSNR-Y.

A ``loss`` section adds pixel terms to MSPFN's loss (``loss: {restoration: 1, psnr: 0.003}``: any
term that needs only the derained and clean images, registered or your own ``fn``), each logged as
``loss_<name>``; a term that needs a task head (``detection``, ``detector_features``...) is a
config error here. Without the section the loss is MSPFN's alone, unlogged, as it always was.

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

from ..config import ConfigError
from ..inference import autocast
from ..losses import MSPFNLoss
from ..losses.terms import LossTerms, Step
from ..metrics.psnr import psnr_torch
from ..models import create_derainer
from .config import DEFAULT_LOSS
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
        if config["loss"] != DEFAULT_LOSS:  # a loss section was given
            self.headless = _HeadlessPipeline(self.derainer)
            self.terms = _pixel_terms(config["loss"], self.headless)

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
        if self.terms is not None:
            return self.terms(Step(self.headless, batch, rainy, derained.float(), clean, step, amp_dtype))
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


class _HeadlessPipeline(nn.Module):
    """What a loss term's ``step.pipeline`` is in mode restoration: the derainer and no heads."""

    def __init__(self, derainer: nn.Module) -> None:
        super().__init__()
        self.derainer, self.heads = derainer, nn.ModuleDict()


def _pixel_terms(section: Dict[str, Any], pipeline: nn.Module) -> LossTerms:
    """The section's terms bound to a head-less pipeline; a weighted term that needs a head is an error."""
    try:
        terms = LossTerms(section, pipeline)
    except KeyError as exc:
        raise ConfigError(f"train config: {exc.args[0]}") from None
    dropped = [n for n, v in section.items() if n not in terms.names
               and (v.get("weight", 1.0) if isinstance(v, dict) else v) > 0]
    if dropped:
        raise ConfigError(f"train config: 'loss.{dropped[0]}' needs a task head; mode 'restoration' trains the "
                          f"derainer alone (pixel terms only, e.g. restoration, psnr; use mode=cascade for task terms)")
    return terms
