"""torchvision's detection models (Faster R-CNN, RetinaNet, FCOS, SSD) as a task head: ``torchvision``.

A second detector family beside ultralytics YOLO, built from ``torchvision.models.detection`` and
trained with its own losses: the model's ``GeneralizedRCNNTransform`` (or SSD's) resizes and
normalises the [0, 1] images on the tensor, so gradients reach the derainer, and its
postprocessing maps boxes back to the input pixels, so :class:`~taskderain.stages.Detections` and
the pycocotools evaluator are the YOLO head's.

Classes: data class ``c`` is torchvision label ``c + 1`` (label 0 is the background), so
``num_classes = nc + 1``; with torchvision's COCO weights (91 labels: COCO category ids) the 80
COCO classes map through ultralytics' ``coco80_to_coco91_class``.

Weights (``weights=``): ``None`` (random initialisation, no download; also no backbone weights
unless ``weights_backbone`` names them), a file (this head's :meth:`TorchvisionDetector.save`
checkpoint, or a plain state_dict of the same architecture), or a torchvision weights name such
as ``"DEFAULT"`` or ``"COCO_V1"`` (downloaded by torchvision when online, found in the torch hub
cache when not; offline without a cache: one clear error).

A frozen head (:meth:`freeze`) still gives its training losses: :meth:`loss` switches the
detection logic to training (torchvision computes losses only then) while every BatchNorm stays
in eval mode, so the statistics never move.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
from torch import nn

from ..inference import check_images
from .head import TaskHead, register_head
from .offline import WeightsNotFoundError, host_reachable
from ..types import PathLike
from .results import Detections

FORMAT = "taskderain.torchvision_detector/1"


def _coco91() -> List[int]:
    """COCO category id (torchvision's label) of each of the 80 COCO class indices: ultralytics' map."""
    from .offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.converter import coco80_to_coco91_class

    return [int(i) for i in coco80_to_coco91_class()]


def _builder(arch: str):
    from torchvision.models import detection, get_model_builder, list_models

    names = list_models(module=detection)
    if arch not in names or arch.startswith(("maskrcnn", "keypointrcnn")):
        usable = [n for n in names if not n.startswith(("maskrcnn", "keypointrcnn"))]
        raise ValueError(f"unknown torchvision detector {arch!r}; available: {', '.join(usable)}")
    return get_model_builder(arch)


def _weights_enum(build: Any, param: str) -> Any:
    """The weights enum a torchvision builder's ``param`` (``weights`` / ``weights_backbone``) takes."""
    import inspect
    import typing

    annotation = inspect.signature(build).parameters[param].annotation
    return next(a for a in typing.get_args(annotation) if isinstance(a, type))


def _hub_weights(build: Any, param: str, name: str) -> Any:
    """torchvision's weights ``name`` (``DEFAULT``, ``COCO_V1``...) for ``param``; offline only from the cache."""
    enum = _weights_enum(build, param)
    try:
        weights = enum.DEFAULT if name == "DEFAULT" else enum[name]
    except KeyError:
        raise ValueError(f"{enum.__name__} has no weights {name!r}; available: DEFAULT, "
                         f"{', '.join(m.name for m in enum)}" + (", or a checkpoint file" if param == "weights" else "")) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and not host_reachable("download.pytorch.org"):
        raise WeightsNotFoundError(f"torchvision weights {enum.__name__}.{weights.name} are not in the torch hub cache "
                                   f"({cached}) and download.pytorch.org is not reachable; download them online once, "
                                   f"or pass {param}=<a checkpoint file> (weights only) or {param}=null")
    return weights


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.modules.dropout._DropoutNd))


@contextlib.contextmanager
def _detection_logic(model: nn.Module, training: bool) -> Iterator[None]:
    """The model's detection logic (transform, RPN, heads, postprocessing) in ``training`` mode inside
    the block while BatchNorm and dropout keep their own mode; every mode restored after it."""
    was = {m: m.training for m in model.modules()}
    for m in model.modules():
        if not _is_norm(m):
            m.training = training
    try:
        yield
    finally:
        for m, mode in was.items():
            m.training = mode


class _PostSetting:
    """A head setting stored on the torchvision model's postprocessing (``roi_heads`` for the
    two-stage models, the model itself otherwise), so it is never out of sync with it."""

    def __init__(self, attribute: str, kind: type) -> None:
        self.attribute, self.kind = attribute, kind

    def __get__(self, head: Any, owner: Any = None) -> Any:
        if head is None:
            return self
        return self.kind(getattr(_postprocessing(head.model), self.attribute))

    def __set__(self, head: Any, value: Any) -> None:
        setattr(_postprocessing(head.model), self.attribute, self.kind(value))


def _postprocessing(model: nn.Module) -> Any:
    return model.roi_heads if hasattr(model, "roi_heads") else model


@register_head("torchvision")
class TorchvisionDetector(TaskHead):
    """A ``torchvision.models.detection`` model behind the :class:`TaskHead` API.

    Args:
        model: a torchvision detection model (Faster R-CNN, RetinaNet, FCOS, SSD).
        names: class index → name (``nc`` entries).
        label_map: torchvision label of each class index (default ``c + 1``).
        conf, iou, max_det: score threshold, NMS IoU and detections per image of the model's
            postprocessing (kept in sync with the model).
        config: how the model was built (for checkpoints and digests).
    """

    OPTIONS = {
        "arch": ((str,), "fasterrcnn_mobilenet_v3_large_320_fpn"),
        "nc": ((int, None), None),                 # classes (default 80, or the checkpoint's)
        "weights": ((str, None), None),            # null, a checkpoint file, or DEFAULT / COCO_V1 (torchvision)
        "weights_backbone": ((str, None), None),   # torchvision backbone weights name (online), e.g. DEFAULT
        "min_size": ((int,), 320),                 # the model's own resize: short side ...
        "max_size": ((int,), 640),                 # ... and long-side cap (px)
        "conf": ((int, float), 0.05),
        "iou": ((int, float), 0.5),
        "max_det": ((int,), 300),
    }
    RANGES = {"conf": (0, 1), "iou": (0, 1), "max_det": (1, None), "min_size": (1, None), "max_size": (1, None),
              "nc": (1, None)}
    task = "detection"
    default_name = "detector"
    batch_keys = ("batch_idx", "cls", "bboxes")
    metric_names = ("map50_95", "map50")

    def __init__(self, model: nn.Module, names: Mapping[int, str], label_map: Optional[Sequence[int]] = None,
                 conf: float = 0.05, iou: float = 0.5, max_det: int = 300,
                 config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.model = model
        self.names = {int(k): str(v) for k, v in names.items()}
        self.nc = len(self.names)
        labels = list(label_map) if label_map is not None else [c + 1 for c in range(self.nc)]
        if len(labels) != self.nc:
            raise ValueError(f"label_map has {len(labels)} entries for {self.nc} classes")
        self.register_buffer("labels", torch.tensor(labels, dtype=torch.long), persistent=False)
        inverse = torch.full((max(labels) + 1,), -1, dtype=torch.long)
        inverse[torch.tensor(labels)] = torch.arange(self.nc)
        self.register_buffer("classes_of_label", inverse, persistent=False)
        self.config: Dict[str, Any] = dict(config or {})
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.train(model.training)

    # --- postprocessing settings, written through to the torchvision model -------------------
    conf = _PostSetting("score_thresh", float)
    iou = _PostSetting("nms_thresh", float)
    max_det = _PostSetting("detections_per_img", int)

    @property
    def imgsz(self) -> tuple:
        """(short side, long-side cap) of the model's own resize."""
        t = self.model.transform
        size = t.min_size[0] if isinstance(t.min_size, (tuple, list)) else t.min_size
        return (int(size), int(getattr(t, "max_size", size)))

    # --- forward / predict ----------------------------------------------------------------------
    def _inputs(self, images: torch.Tensor) -> List[torch.Tensor]:
        check_images(images, type(self).__name__, finite=False)
        return list(images.float().unbind(0))

    def forward(self, images: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        """torchvision's detections (``boxes`` xyxy in the pixels of ``images``, ``scores``,
        ``labels``) of (B,3,H,W) float images in [0,1], with the module's BatchNorm mode; training
        losses come from :meth:`loss`."""
        with _detection_logic(self.model, training=False):  # torchvision returns detections only in eval mode
            return self.model(self._inputs(images))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> List[Detections]:
        """One :class:`Detections` per image (eval mode), boxes in the pixels of ``images``."""
        if images.ndim == 3:
            images = images[None]
        with self.evaluating():
            out = self(images)
        results = []
        for det in out:
            classes = self.classes_of_label[det["labels"].clamp(0, len(self.classes_of_label) - 1)]
            keep = classes >= 0  # labels that are no data class (other COCO ids, the background)
            results.append(Detections(det["boxes"][keep].float(), det["scores"][keep].float(), classes[keep], self.names))
        return results

    def predict_for_metrics(self, images: torch.Tensor, letterboxed: bool = False) -> List[Detections]:
        """:meth:`predict`: torchvision's own transform resizes any input, a canvas included."""
        return self.predict(images)

    # --- loss -------------------------------------------------------------------------------------
    def targets(self, images: torch.Tensor, batch: Mapping[str, Any]) -> List[Dict[str, torch.Tensor]]:
        """torchvision targets (``boxes`` xyxy px, ``labels``) of ultralytics' batch keys; boxes
        narrower or lower than 1 px are dropped (torchvision refuses them)."""
        b, _, h, w = images.shape
        device = images.device
        index = batch["batch_idx"].to(device).view(-1).long()
        cls = batch["cls"].to(device).view(-1).long()
        xywh = batch["bboxes"].to(device, torch.float32).view(-1, 4) * torch.tensor([w, h, w, h], device=device)
        xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        xyxy = torch.stack([xyxy[:, 0].clamp(0, w), xyxy[:, 1].clamp(0, h), xyxy[:, 2].clamp(0, w), xyxy[:, 3].clamp(0, h)], 1)
        if cls.numel() and (cls.min() < 0 or cls.max() >= self.nc):
            raise ValueError(f"labels {sorted(set(cls.tolist()))[:10]} are outside the detector's {self.nc} classes")
        valid = ((xyxy[:, 2] - xyxy[:, 0]) >= 1) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1)
        labels = self.labels.to(device)[cls] if cls.numel() else cls
        return [{"boxes": xyxy[(index == i) & valid], "labels": labels[(index == i) & valid]} for i in range(b)]

    def loss(self, images: torch.Tensor, batch: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """torchvision's own training losses (``classifier``, ``box_reg``, ``objectness``,
        ``rpn_box_reg`` for Faster R-CNN; ``classification``, ``bbox_regression``(, ``bbox_ctrness``)
        for RetinaNet / FCOS / SSD), each a mean over the sampled anchors or proposals of the batch.
        Differentiable with respect to ``images``; BatchNorm keeps the module's mode (a frozen head
        keeps its statistics)."""
        targets = self.targets(images, batch)
        with _detection_logic(self.model, training=True):  # torchvision gives losses only in training
            losses = self.model(self._inputs(images), targets)
        return {k[5:] if k.startswith("loss_") else k: v for k, v in losses.items()}

    # --- checkpoints ----------------------------------------------------------------------------
    def save(self, path: PathLike, metadata: Optional[Dict[str, Any]] = None, half: bool = False) -> Path:
        """A checkpoint ``weights=path`` loads back (architecture, classes, settings, weights)."""
        from ..checkpoint import write_checkpoint

        fields = {"format": FORMAT, "config": {**self.config, "weights": None}, "names": dict(self.names),
                  "label_map": self.labels.tolist(), "settings": {"conf": self.conf, "iou": self.iou, "max_det": self.max_det}}
        return write_checkpoint(path, fields, self.model, dict(metadata or {}), half=half)

    def extra_repr(self) -> str:
        return f"arch={self.config.get('arch')!r}, nc={self.nc}, imgsz={self.imgsz}, conf={self.conf}, iou={self.iou}"

    @classmethod
    def from_spec(cls, **options: Any) -> "TorchvisionDetector":
        return create_torchvision_detector(**options)


def create_torchvision_detector(arch: str = "fasterrcnn_mobilenet_v3_large_320_fpn", nc: Optional[int] = None,
                                weights: Optional[PathLike] = None, weights_backbone: Optional[str] = None,
                                min_size: int = 320, max_size: int = 640, conf: float = 0.05, iou: float = 0.5,
                                max_det: int = 300, names: Optional[Mapping[int, str]] = None) -> TorchvisionDetector:
    """Build a :class:`TorchvisionDetector` (see the module docstring for ``weights``).

    Args:
        arch: a ``torchvision.models.detection`` builder name (not the mask / keypoint models).
        nc: number of classes (default: the checkpoint's, else 80).
        weights_backbone: torchvision backbone weights name (e.g. ``DEFAULT``) for a random head.
        min_size, max_size: the model's own resize (short side, long-side cap) in pixels.
        conf, iou, max_det: postprocessing score threshold, NMS IoU, detections per image.
        names: class names (index → name).

    Raises:
        ValueError: an unknown architecture or weights name, a checkpoint of another architecture
            or class count. WeightsNotFoundError: torchvision weights offline and not cached.
        CheckpointError: an unreadable or non-finite checkpoint file.
    """
    from ..checkpoint import check_finite, read_checkpoint

    build = _builder(arch)
    config = {"arch": arch, "min_size": min_size, "max_size": max_size, "weights_backbone": weights_backbone}
    state, label_map, hub, categories = None, None, None, None
    if weights is not None and (Path(str(weights)).is_file() or Path(str(weights)).suffix in (".pt", ".pth")):
        obj = read_checkpoint(weights, what="torchvision detector checkpoint")
        if obj.get("format") == FORMAT:
            if obj["config"]["arch"] != arch:
                raise ValueError(f"{weights} holds a {obj['config']['arch']} detector, not {arch}")
            state, label_map = obj["state_dict"], list(obj["label_map"])
            names = names or {int(k): v for k, v in obj["names"].items()}
            nc = len(label_map) if nc is None else nc
            if nc != len(label_map):
                raise ValueError(f"{weights} detects {len(label_map)} classes, not nc={nc}")
        else:  # a plain state_dict of the architecture
            state = obj.get("state_dict", obj)
        check_finite(state, weights, "torchvision detector checkpoint")
    elif weights is not None:
        hub = _hub_weights(build, "weights", str(weights))
        if nc not in (None, 80):
            raise ValueError(f"torchvision's {hub} weights detect the 80 COCO classes; nc={nc} needs fine-tuned "
                             "weights (a checkpoint file) or weights=null")
        label_map, categories = _coco91(), hub.meta.get("categories")
    plain = state is not None and label_map is None
    nc = 80 if nc is None else int(nc)
    # label layouts to try: ours (class c -> c + 1), then, for a plain COCO state_dict, torchvision's 91 COCO labels
    layouts = [label_map] if label_map is not None else [[c + 1 for c in range(nc)]]
    if plain and nc == 80:
        layouts.append(_coco91())
    backbone = _hub_weights(build, "weights_backbone", weights_backbone) if weights_backbone and hub is None else None
    for attempt, layout in enumerate(layouts):
        labels = max(layout) + 1  # ours: nc + 1; torchvision's COCO layout: 91
        model = build(weights=hub, weights_backbone=backbone, num_classes=labels, min_size=min_size, max_size=max_size)
        if state is None:
            break
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
            break
        except RuntimeError as exc:
            if attempt == len(layouts) - 1:
                raise ValueError(f"{weights} does not fit {arch} with {nc} classes ({labels} labels): "
                                 f"{(str(exc).splitlines() or [''])[0]}") from None
    label_map = layout
    if names is None:
        names = ({c: categories[label] for c, label in enumerate(label_map)} if categories
                 else {c: str(c) for c in range(nc)})
    return TorchvisionDetector(model.eval(), names, label_map, conf, iou, max_det, config)
