"""Task-driven training modes: data, stages, loss and validation (the loop lives in :mod:`.loop`).

Modes (config ``mode``):

* ``cascade``: detector (and segmenter) frozen — eval mode, no gradients, BatchNorm statistics
  fixed — and the derainer trained with the ``loss`` terms (:mod:`taskderain.losses.terms`),
  by default ``restoration · mspfn_loss(derained, clean) + detection · det + segmentation · seg``.
* ``joint``: the same loss, every stage trained (detector/segmenter in train mode) with its own
  param group and base lr (``optim.lr``, ``optim.lr_detector``, ``optim.lr_segmenter``; all
  follow the same decay schedule). ``freeze_bn: true`` keeps the trained heads' BatchNorm
  statistics fixed (eval-mode BatchNorm, affine parameters still trained), as detection
  fine-tuning on small batches usually does (torchvision's ``FrozenBatchNorm2d``).
* ``detector_on_rain``: no derainer (``identity``); the detector alone is fine-tuned on the
  rainy images with ``loss.detection · det / B``.
* ``segmenter``: no derainer, no detector; the segmenter alone trained on CLEAN images (no rain,
  train and validation) with ``loss.segmentation · seg`` (lr ``optim.lr_segmenter``), validated
  by mIoU. The images come from ``data.detection`` like the other modes, masks from ``data.masks``.

``det`` is ultralytics' detection loss (box + cls + dfl) per image (ultralytics' trainer value
divided by the batch size, so the weight does not depend on the batch; order 1–10 for a
pretrained detector), ``seg`` smp's Dice + CE. With the defaults (restoration 1, detection 0.01,
segmentation 0.01) the task terms are of the order of the MSPFN loss (0.01–0.1). Any term can be
added by name or import path (``loss.feature: {fn: my_pkg.losses:feature_l1, weight: 0.1}``).

Data: ``data.detection`` (an ultralytics data YAML), split ``data.train_split``; validation on
``data.val_split_name`` or the last ``data.val_split`` images (count, or fraction) of the training
split. Images are rained at their own resolution (:class:`~taskderain.rain.Rainy`, training rain
new every epoch, ``p = 1 − data.clean_prob``; validation rain = epoch-0 rain, always rainy), then
letterboxed to ``data.imgsz`` (square, grey padding). Everything is a pure function of
(seed, epoch, index), so resume stays exact.

Validation (:func:`validate_task`) is the evaluator of ``taskderain eval``
(:class:`~taskderain.evaluation.Evaluation`: ultralytics' validator geometry at ``data.imgsz``,
8-bit derained images, multi-label NMS, pycocotools' COCOeval, mIoU from one confusion matrix)
on the val images under the training rain with its evaluation seed (``image_seed(id,
data.rain_seed)``, the epoch-0 rain): a saved checkpoint scores there what ``taskderain eval``
gives it on the same images and rain.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from ..config import ConfigError
from ..data import Letterbox, YoloDetectionDataset
from ..data.segmentation import WithMasks
from ..evaluation import (DerainerSpec, EvalCache, EvalData, Evaluation, EvalSettings, RainCondition, clean_condition,
                          identity_spec)
from ..inference import autocast
from ..losses.terms import LossTerms, Step
from ..models import create_derainer
from ..rain import RainParams, Rainy, rain_params
from .config import MODE_STAGES, rain_spec
from .data import split_count
from .training_task import TrainingTask, register_training_task



class TaskData:
    """Training and validation sets of a task mode (see the module docstring).

    Attributes:
        train: :class:`Rainy` training set (call ``set_epoch(epoch + 1)``; epoch 0 is the evaluation rain).
        indices: training indices into ``train``.
        val: :class:`Rainy` validation set or None; ``val_indices`` its indices.
        labels: the detection dataset of the validation images (original labels, for mAP).
        names: class names; ``nc``.
    """

    def __init__(self, config: Dict[str, Any]) -> None:
        d = config["data"]
        preset = d["rain_preset"] if d["rain_intensity"] is None else None
        model = rain_spec(d) if d["rain"] is not None else None  # a rain-zoo model replaces the preset
        letterbox = Letterbox(d["imgsz"], auto=False)
        base = YoloDetectionDataset(d["detection"], d["train_split"])
        self.names, self.nc = base.names, base.nc
        wrap = (lambda ds: WithMasks(ds, d["masks"], d["class_map"])) if d["masks"] else (lambda ds: ds)
        clean = MODE_STAGES[config["mode"]].get("clean", False)
        self.train = Rainy(wrap(base), preset, d["rain_intensity"], seed=d["rain_seed"],
                           p=0.0 if clean else 1.0 - d["clean_prob"], transform=letterbox, model=model)
        if d["val_split_name"] is not None:
            self.labels = YoloDetectionDataset(d["detection"], d["val_split_name"])
            self.indices = list(range(len(base)))
            self.val_indices = list(range(len(self.labels)))
        else:
            held = split_count(len(base), d["val_split"])
            self.labels = base
            self.indices = list(range(len(base) - held))
            self.val_indices = list(range(len(base) - held, len(base)))
        self.imgsz, self.seed = d["imgsz"], d["rain_seed"]
        self.condition = (clean_condition() if clean else
                          RainCondition("train-rain", 1.0, RainParams(), model) if model is not None else
                          RainCondition("train-rain", 1.0, rain_params(preset, d["rain_intensity"])))
        self.val = (EvalData(wrap(self.labels), self.val_indices, dict(self.names), str(d["detection"]),
                             d["val_split_name"] or d["train_split"], masks=d["masks"],
                             labels=[self.labels.records[i] for i in self.val_indices])
                    if self.val_indices else None)

    def set_epoch(self, epoch: int) -> None:
        self.train.set_epoch(epoch + 1)


#: the optim key of each head task's learning rate
HEAD_LR = {"detection": "lr_detector", "segmentation": "lr_segmenter"}


def build_heads(config: Dict[str, Any], nc: Optional[int] = None) -> Dict[str, nn.Module]:
    """The heads of ``config["heads"]`` that the mode keeps, built at the training size
    (``data.imgsz``), frozen or trainable as the mode says (:data:`MODE_STAGES`).

    ``nc``: the data's class count, checked against every detection head's (None: not checked).
    """
    from ..pipeline.build import build_head
    from ..stages.head import head_class

    stages = MODE_STAGES[config["mode"]]
    heads = {}
    for name, spec in config["heads"].items():
        cls = head_class(spec["type"])
        if cls.task not in stages["heads"]:
            continue
        head = build_head(spec, imgsz=config["data"]["imgsz"])  # the training letterbox size
        if cls.task == "detection" and nc is not None and head.nc != nc:
            raise ConfigError(f"train config: 'heads.{name}' detects {head.nc} classes but data.detection "
                              f"({config['data']['detection']}) has {nc}; set heads.{name}.nc={nc} or use matching weights")
        heads[name] = head.unfreeze() if cls.task in stages["train_heads"] else head.freeze()
        if config["freeze_bn"] and not head.frozen:  # small batches: keep the pretrained statistics
            head.freeze_batchnorm()
    return heads


def build_stages(config: Dict[str, Any], nc: Optional[int]) -> Tuple[nn.Module, Dict[str, nn.Module]]:
    """(derainer, {name: head}) of a task mode (the identity derainer where the mode has none)."""
    from ..pipeline.build import build_derainer

    derainer = build_derainer(config["model"], warn_random=False) if MODE_STAGES[config["mode"]]["derainer"] else create_derainer("identity")
    return derainer, build_heads(config, nc)


def trained_stages(config: Dict[str, Any]) -> Tuple[str, ...]:
    """Names of the pipeline stages trained in the config's mode: ``derainer`` and head names (their
    weights go into the checkpoint)."""
    from ..stages.head import head_class

    stages = MODE_STAGES.get(config["mode"])
    if stages is None:  # restoration
        return ("derainer",)
    heads = tuple(n for n, h in config["heads"].items() if head_class(h["type"]).task in stages["train_heads"])
    return (("derainer",) if stages["derainer"] else ()) + heads


def param_groups(pipeline: nn.Module, config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Optimizer param groups (``name``, ``base_lr``) of the trained stages that have parameters:
    the derainer at ``optim.lr``, each head at its task's rate (``optim.lr_detector`` / ``lr_segmenter``)."""
    o = config["optim"]
    groups = []
    for name in trained_stages(config):
        stage = pipeline.derainer if name == "derainer" else pipeline.heads[name]
        params = [p for p in stage.parameters() if p.requires_grad]
        if params:
            lr = o["lr"] if name == "derainer" else o[HEAD_LR[stage.task]]
            groups.append({"params": params, "name": name, "base_lr": lr})
    if not groups:
        raise ConfigError(f"train config: nothing to train in mode {config['mode']!r} (no trainable parameters)")
    return groups


def task_loss(pipeline: nn.Module, batch: Dict[str, Any], terms: LossTerms, device: torch.device,
              amp_dtype: Optional[torch.dtype], step: int = 0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The weighted total loss of one batch and its named parts (before weighting): the derainer
    runs once under autocast, then every term of ``terms`` sees the :class:`~taskderain.losses.terms.Step`."""
    rainy = batch["img"].to(device)
    with autocast(device, amp_dtype):
        derained = pipeline.derainer(rainy)
    clean = batch["clean"].to(device) if "clean" in batch else None
    return terms(Step(pipeline, batch, rainy, derained.float(), clean, step, amp_dtype))


def task_evaluation(pipeline: nn.Module, data: TaskData, amp_dtype: Optional[torch.dtype]) -> Evaluation:
    """The :class:`~taskderain.evaluation.Evaluation` of the pipeline's live stages (every head) on the
    val set; nothing cached: the weights change between validations."""
    derainer, detector = pipeline.derainer, pipeline.detector
    trained = any(True for _ in derainer.parameters())
    spec = DerainerSpec("derainer", "derainer", None, derainer) if trained else identity_spec()
    nms = {k: getattr(detector, k) for k in ("conf", "iou", "max_det")} if detector is not None else {}
    settings = EvalSettings(imgsz=data.imgsz, seed=data.seed, dtype=amp_dtype, samples=0, **nms)
    return Evaluation(data.val, [data.condition], [spec], dict(pipeline.heads), EvalCache(None), settings)


@torch.no_grad()
def validate_task(pipeline: nn.Module, data: TaskData, amp_dtype: Optional[torch.dtype]) -> Dict[str, float]:
    """``{"psnr_y" (with a derainer), "map50_95", "map50", "miou" (with a segmenter)}`` on the val set."""
    was_training = pipeline.training
    pipeline.eval()
    try:
        evaluation = task_evaluation(pipeline, data, amp_dtype)
        record = evaluation.run(progress=False)[0]
    finally:
        pipeline.train(was_training)
    out: Dict[str, float] = {}
    if pipeline.detector is not None:
        out.update(map50_95=record["map50_95"], map50=record["map50"])
    if not evaluation.derainers[0].is_identity and record["psnr_y"] is not None:
        out["psnr_y"] = record["psnr_y"]
    if "miou" in record:
        out["miou"] = record["miou"]
    return out


class TaskDrivenTask(TrainingTask):
    """A pipeline of derainer and heads trained with the config's loss terms, validated by the
    evaluator; which stages train is the preset's data (:data:`~taskderain.train.config.MODE_STAGES`)."""

    def __init__(self, config: Dict[str, Any], device: torch.device) -> None:
        super().__init__(config, device)
        from ..pipeline import Pipeline

        self.data = TaskData(config)
        self.pipeline = self.trained = Pipeline(*build_stages(config, self.data.nc)).to(device)
        self.derainer = self.pipeline.derainer
        try:
            self.terms = LossTerms(config["loss"], self.pipeline)
        except KeyError as exc:
            raise ConfigError(f"train config: {exc.args[0]}") from None
        self.train_set, self.indices, self.val_set = self.data.train, self.data.indices, self.data.val
        has = {"psnr_y": any(True for _ in self.derainer.parameters()), "map50_95": self.pipeline.detector is not None,
               "map50": self.pipeline.detector is not None, "miou": self.pipeline.segmenter is not None}
        self.metric_names = tuple(k for k, on in has.items() if on)

    def param_groups(self) -> List[Dict[str, Any]]:
        return param_groups(self.pipeline, self.config)

    def distribute(self) -> Optional[nn.Module]:
        from . import dist as D

        D.broadcast_module(self.pipeline)  # the same start on every rank; gradients averaged by the loop
        return None

    def loader(self, batches: List[List[int]], epoch: int, workers: int) -> Iterable[Dict[str, Any]]:
        from ..data import collate_batch

        self.data.set_epoch(epoch)
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=batches, num_workers=workers,
                                           collate_fn=collate_batch)

    def loss(self, batch: Dict[str, Any], step: int, amp_dtype: Optional[torch.dtype],
             ddp: Optional[nn.Module] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        return task_loss(self.pipeline, batch, self.terms, self.device, amp_dtype, step)

    def validate(self, amp_dtype: Optional[torch.dtype]) -> Optional[Dict[str, float]]:
        return None if self.val_set is None else validate_task(self.pipeline, self.data, amp_dtype)

    def stage_states(self) -> Dict[str, Dict[str, torch.Tensor]]:
        return {name: {k: v.detach().cpu().clone() for k, v in self.pipeline.heads[name].state_dict().items()}
                for name in trained_stages(self.config) if name != "derainer"}


for _mode in MODE_STAGES:  # the presets: one task, its trained / frozen stages as data
    register_training_task(_mode)(TaskDrivenTask)
