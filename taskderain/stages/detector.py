"""An ultralytics YOLO detector as a differentiable stage: tensors in, detections or a loss out.

:class:`Detector` wraps ultralytics' own ``DetectionModel``, detection loss and NMS; only the
pre-processing is ours, done on the tensor (no numpy, PIL or disk round trip), so gradients
reach the images and whatever produced them (a derainer).

Train / eval mode matters for BatchNorm: a *frozen* detector used as a task loss belongs in
eval mode (:meth:`Detector.freeze`). Its loss then still back-propagates to the input while the
BatchNorm running statistics stay fixed; in train mode BatchNorm normalises with batch statistics
and updates the running ones at every forward.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..data.letterbox import LetterboxParams, letterbox_params
from .head import TaskHead, register_head
from ..inference import check_images
from .letterbox import PAD_VALUE, letterbox_tensor, pad_to_stride
from .offline import YOLO_ASSETS_URL, WeightsNotFoundError, host_reachable, import_ultralytics
from .results import Detections
from ..types import PathLike

WEIGHTS_ENV = "TASKDERAIN_YOLO"  # default detector weights for create_detector()


class DetectorOutput(NamedTuple):
    """What :meth:`Detector.forward` returns.

    Attributes:
        preds: eval mode: ultralytics' inference output, (B, 4+nc, A) xywh in letterboxed pixels
            followed by class probabilities (the input of NMS); ``None`` in train mode, where the
            head computes training outputs only.
        raw: the head's training outputs (``{"boxes", "scores", "feats"}`` for YOLOv8 heads), the
            input of the detection loss.
        letterbox: geometry from the input images (``orig_shape``) to the model input (``new_shape``).
    """

    preds: Optional[torch.Tensor]
    raw: Any
    letterbox: LetterboxParams


def check_imgsz(imgsz: Union[int, Sequence[int]], stride: int = 32) -> Tuple[int, int]:
    """(h, w) model input size for ``imgsz``: positive, rounded up to a multiple of ``stride``
    with a notice, as ultralytics' ``check_imgsz`` does.

    Raises:
        ValueError: not a positive whole number (or a pair of them).
    """
    sides = (imgsz, imgsz) if isinstance(imgsz, (int, float)) and not isinstance(imgsz, bool) else tuple(imgsz)
    if len(sides) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sides):
        raise ValueError(f"detector imgsz must be a positive whole number of pixels (or two), got {imgsz!r}")
    rounded = tuple(-(-s // stride) * stride for s in sides)
    if rounded != sides:
        warnings.warn(f"detector imgsz {imgsz} is not a multiple of the stride {stride}: using "
                      f"{rounded[0] if rounded[0] == rounded[1] else rounded}", stacklevel=3)
    return rounded


def check_nms(conf: float, iou: float, max_det: int) -> None:
    """NMS settings as ultralytics accepts them: ``conf`` and ``iou`` in [0, 1], ``max_det`` >= 1.

    Raises:
        ValueError: naming the setting (ultralytics itself fails with a bare AssertionError).
    """
    for name, value in (("conf", conf), ("iou", iou)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"detector {name} must be a number in [0, 1], got {value!r}")
    if not isinstance(max_det, int) or isinstance(max_det, bool) or max_det < 1:
        raise ValueError(f"detector max_det must be a whole number >= 1, got {max_det!r}")


def _names_dict(names: Any, nc: int) -> Dict[int, str]:
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if names is not None:
        return {i: str(n) for i, n in enumerate(names)}
    return {i: str(i) for i in range(nc)}


@register_head("yolo")
class Detector(TaskHead):
    """An ultralytics ``DetectionModel`` behind a tensor API: the ``yolo`` task head.

    Args:
        model: an unfused ultralytics ``DetectionModel`` (see :func:`create_detector`).
        imgsz: inference size in pixels (longest side; rounded up to a multiple of the stride), as
            ``YOLO.predict(imgsz=...)``.
        conf, iou, max_det, classes, agnostic: NMS settings, defaults as ``YOLO.predict``.
        max_time_img: NMS time budget per image in seconds (ultralytics' 0.05 plus 2 s a batch;
            past it ultralytics returns what it has so far). ``None``: no limit — what metrics
            need, so that a loaded machine cannot drop detections.

    Attributes:
        model: the wrapped ``DetectionModel`` (``model.args`` holds ultralytics' default
            hyperparameters, which the loss reads: box 7.5, cls 0.5, dfl 1.5).
        names: class index → name. ``nc``: number of classes. ``stride``: largest stride (px).
        frozen: set by :meth:`freeze`; a frozen detector stays in eval mode under ``.train()``.
    """

    OPTIONS = {
        "weights": ((str, None), None),   # ultralytics checkpoint (or $TASKDERAIN_YOLO)
        "cfg": ((str, None), None),       # OR a model YAML (random init)
        "nc": ((int, None), None),
        "imgsz": ((int,), 640),
        "conf": ((int, float), 0.25),
        "iou": ((int, float), 0.7),
        "max_det": ((int,), 300),
    }
    RANGES = {"conf": (0, 1), "iou": (0, 1), "imgsz": (1, None), "max_det": (1, None)}
    task = "detection"
    default_name = "detector"
    batch_keys = ("batch_idx", "cls", "bboxes")
    metric_names = ("map50_95", "map50")

    def __init__(self, model: nn.Module, imgsz: Union[int, Tuple[int, int]] = 640, conf: float = 0.25,
                 iou: float = 0.7, max_det: int = 300, classes: Optional[Sequence[int]] = None,
                 agnostic: bool = False, max_time_img: Optional[float] = 0.05) -> None:
        super().__init__()
        import_ultralytics()
        from ultralytics.cfg import get_cfg

        self.model = model
        if not hasattr(getattr(model, "args", None), "box"):  # the loss reads attributes, a dict does not do
            model.args = get_cfg()
        self.stride = int(model.stride.max().item()) if hasattr(model, "stride") else 32
        self.nc = int(model.model[-1].nc)
        self.names = _names_dict(getattr(model, "names", None), self.nc)
        self.imgsz = check_imgsz(imgsz, self.stride)
        check_nms(conf, iou, max_det)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.classes, self.agnostic = (list(classes) if classes is not None else None), agnostic
        self.max_time_img = max_time_img
        self.train(model.training)

    # --- modes (freeze / unfreeze / train: see FreezableStage) --------------------------------
    def trainable(self, name: str) -> bool:
        """ultralytics' DFL conv is a fixed projection, never trained."""
        return ".dfl." not in name

    # --- forward -----------------------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> Any:
        """The DetectionModel on a (B,3,H,W) input whose H, W are multiples of the stride."""
        head = self.model.model[-1]
        anchors = getattr(head, "anchors", None)
        if isinstance(anchors, torch.Tensor) and anchors.is_inference() and not torch.is_inference_mode_enabled():
            head.shape = None  # anchors cached under inference_mode cannot enter autograd: rebuild them
        return self.model(x)

    def forward(self, images: torch.Tensor, letterboxed: bool = False) -> DetectorOutput:
        """Letterbox (B,3,H,W) float images in [0,1] (any H, W) to ``imgsz`` and run the model.

        The letterbox is the minimum rectangle (ultralytics' predictor for ``.pt`` models:
        ``LetterBox(imgsz, auto=True, stride)``): bilinear resize, grey (114/255) padding.
        ``letterboxed=True``: the images already are the model's input (H, W multiples of the
        stride, e.g. the evaluator's validator canvas) and go in unchanged.
        Differentiable with respect to ``images``.
        """
        check_images(images, type(self).__name__, finite=False)
        if letterboxed:
            h, w = images.shape[-2:]
            if h % self.stride or w % self.stride:
                raise ValueError(f"letterboxed input must have H, W multiples of the stride {self.stride}, got {h}x{w}")
            x, params = images, letterbox_params((h, w), (h, w), auto=False)
        else:
            x, params = letterbox_tensor(images, self.imgsz, stride=self.stride, auto=True)
        out = self._run(x)
        if isinstance(out, tuple):  # eval: (inference output, training outputs)
            return DetectorOutput(out[0], out[1], params)
        return DetectorOutput(None, out, params)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, conf: Optional[float] = None, iou: Optional[float] = None,
                max_det: Optional[int] = None, multi_label: bool = False,
                time_limit: bool = True, letterboxed: bool = False) -> List[Detections]:
        """Detect objects in (B,3,H,W) (or one (3,H,W)) float images in [0,1] (eval mode, no autograd).

        NMS is ultralytics' ``non_max_suppression`` with this detector's settings (or the
        arguments given here); boxes are mapped back to the pixels of ``images`` as ultralytics'
        ``scale_boxes`` does. ``multi_label=True`` lets one box carry several classes, as
        ultralytics' validator scores mAP (the default keeps the best class, as its predictor);
        ``time_limit=False`` lifts the NMS time budget (``max_time_img``), as metrics need;
        ``letterboxed``: see :meth:`forward`. Returns one :class:`Detections` per image.
        """
        from ultralytics.utils.ops import scale_boxes

        try:
            from ultralytics.utils.nms import non_max_suppression
        except ImportError:  # ultralytics < 8.3.x
            from ultralytics.utils.ops import non_max_suppression

        if images.ndim == 3:
            images = images[None]
        with self.evaluating():
            out = self(images, letterboxed=letterboxed)
        check_nms(self.conf if conf is None else conf, self.iou if iou is None else iou,
                  self.max_det if max_det is None else max_det)
        budget = self.max_time_img if time_limit else None
        kept = non_max_suppression(out.preds, self.conf if conf is None else conf, self.iou if iou is None else iou,
                                   self.classes, self.agnostic, multi_label=multi_label,
                                   max_det=self.max_det if max_det is None else max_det, nc=0,
                                   max_time_img=math.inf if budget is None else budget,
                                   end2end=bool(getattr(self.model, "end2end", False)))
        results = []
        for det in kept:
            boxes = scale_boxes(out.letterbox.new_shape, det[:, :4].clone(), out.letterbox.orig_shape)
            results.append(Detections(boxes.float(), det[:, 4].float(), det[:, 5].long(), self.names))
        return results

    def predict_for_metrics(self, images: torch.Tensor, letterboxed: bool = False) -> List[Detections]:
        """:meth:`predict` as ultralytics' validator scores mAP: multi-label NMS, no time limit
        (a loaded machine must not drop detections); ``conf`` / ``iou`` / ``max_det`` as set."""
        return self.predict(images, multi_label=True, time_limit=False, letterboxed=letterboxed)

    # --- loss --------------------------------------------------------------------------------
    def loss(self, images: torch.Tensor, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """``{"box", "cls", "dfl"}``: ultralytics' loss terms (default gains) per image, see
        :meth:`ultralytics_loss` for the arguments; their sum is what ultralytics' trainer
        back-propagates, divided by the batch size."""
        loss, _ = self.ultralytics_loss(images, batch)
        per_image = loss / images.shape[0]
        return {"box": per_image[0], "cls": per_image[1], "dfl": per_image[2]}

    def ultralytics_loss(self, images: torch.Tensor, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Any]:
        """ultralytics' detection loss of (B,3,H,W) float images in [0,1] against their labels.

        Args:
            images: the images the labels refer to (e.g. a derainer's output), already at the
                training size; H, W that are not multiples of the stride are padded bottom/right
                with grey (boxes are rescaled to match). No resize.
            batch: ``collate_batch``'s dict; reads ``batch_idx`` (N,), ``cls`` (N,1) and
                ``bboxes`` (N,4) normalised xywh relative to ``images``.

        Returns:
            ``(loss, items)``: loss (3,) = (box, cls, dfl) with the default gains, already
            multiplied by the batch size (backpropagate ``loss.sum()``); items = ultralytics'
            detached loss items. Works in both modes: in eval mode BatchNorm statistics stay fixed.
        """
        check_images(images, type(self).__name__, finite=False)
        h, w = images.shape[-2:]
        x = pad_to_stride(images, self.stride, PAD_VALUE)
        device = x.device
        bboxes = batch["bboxes"].to(device, torch.float32).view(-1, 4)
        if x.shape[-2:] != images.shape[-2:]:
            gain_w, gain_h = w / x.shape[-1], h / x.shape[-2]
            bboxes = bboxes * bboxes.new_tensor([gain_w, gain_h, gain_w, gain_h])
        targets = {"img": x, "batch_idx": batch["batch_idx"].to(device).view(-1),
                   "cls": batch["cls"].to(device).view(-1, 1), "bboxes": bboxes}
        criterion = getattr(self.model, "criterion", None)
        if criterion is not None and getattr(criterion, "device", device) != next(self.model.parameters()).device:
            self.model.criterion = None  # the model moved since the criterion was built
        return self.model.loss(targets, self._run(x))

    def extra_repr(self) -> str:
        return (f"nc={self.nc}, imgsz={self.imgsz}, stride={self.stride}, conf={self.conf}, iou={self.iou}, "
                f"max_det={self.max_det}, frozen={self.frozen}")


    def feature_layers(self) -> List[int]:
        """Indices of the layers whose outputs the detection head reads (the neck's outputs:
        P3, P4, P5 for YOLOv8, layers 15, 18, 21)."""
        return [int(i) for i in self.model.model[-1].f]

    def features(self, images: torch.Tensor, layers: Optional[Sequence[int]] = None) -> List[torch.Tensor]:
        """Feature maps of ``layers`` (default :meth:`feature_layers`) for (B,3,H,W) images in [0,1],
        already at the training size (padded to the stride as :meth:`loss` does, no resize).
        Differentiable with respect to ``images``; BatchNorm follows the module's mode.

        Raises:
            ValueError: a layer index outside the model (the head itself excluded).
        """
        layers = self.feature_layers() if layers is None else [int(i) for i in layers]
        count = len(self.model.model) - 1
        bad = [i for i in layers if not 0 <= i < count]
        if bad:
            raise ValueError(f"feature layers {bad} are outside the model's layers 0..{count - 1} (the head is {count})")
        check_images(images, type(self).__name__, finite=False)
        captured: Dict[int, torch.Tensor] = {}
        hooks = [self.model.model[i].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out))
                 for i in layers]
        try:
            self._run(pad_to_stride(images, self.stride, PAD_VALUE))
        finally:
            for hook in hooks:
                hook.remove()
        return [captured[i] for i in layers]

    def save(self, path: PathLike, metadata: Optional[Dict[str, Any]] = None, half: bool = False) -> Path:
        """An ultralytics checkpoint (``YOLO(path)`` loads it): :func:`~taskderain.stages.save_detector`."""
        from .checkpoint import save_detector

        return save_detector(self, path, metadata, half=half)

    @classmethod
    def complete_spec(cls, spec: Dict[str, Any], key: str) -> Dict[str, Any]:
        """``weights`` or ``cfg``, not both; neither: ``$TASKDERAIN_YOLO``."""
        if spec["weights"] is not None and spec["cfg"] is not None:
            raise ValueError(f"'{key}.weights' and '{key}.cfg' exclude each other; set one")
        if spec["weights"] is None and spec["cfg"] is None:
            spec = {**spec, "weights": os.environ.get(WEIGHTS_ENV) or None}
            if spec["weights"] is None:
                raise ValueError(f"'{key}' needs 'weights' (a YOLO checkpoint) or 'cfg' (a model YAML); "
                                 f"or set {WEIGHTS_ENV} to a checkpoint path")
        return spec

    @classmethod
    def from_spec(cls, **options: Any) -> "Detector":
        """:func:`create_detector` of a spec entry (``weights`` or ``cfg``, ``nc``, ``imgsz``, NMS settings)."""
        return create_detector(**options)


# --- factory -------------------------------------------------------------------------------------
def _missing_weights(name: str, looked: List[Path], reason: str) -> WeightsNotFoundError:
    places = ", ".join(str(p) for p in looked)
    return WeightsNotFoundError(
        f"YOLO weights {name!r} not found (looked in: {places}; {reason}). Pass the path of an ultralytics "
        f"detection checkpoint as weights=... or set ${WEIGHTS_ENV} to it: official ones (e.g. yolov8n.pt) are at "
        f"{YOLO_ASSETS_URL}, download them on a machine with internet; or build an untrained detector with "
        f"cfg='yolov8n.yaml'")


def _resolve_weights(weights: PathLike) -> Path:
    """A local checkpoint file for ``weights``: as given, in ultralytics' weights_dir, or downloaded.

    Only bare names of official assets (``"yolov8n.pt"``) are downloaded, and only when
    github.com resolves; anything else must exist on disk.
    """
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    path = Path(weights).expanduser()
    if path.is_file():
        return path
    looked = [path.resolve()]
    bare = path.parent == Path(".")
    if bare:
        in_dir = Path(SETTINGS["weights_dir"]) / path.name
        looked.append(in_dir)
        if in_dir.is_file():
            return in_dir
    if not bare or path.name not in GITHUB_ASSETS_NAMES:
        reason = "not a file" if not bare else "not an official ultralytics asset name, so not downloadable"
        raise _missing_weights(str(weights), looked, reason)
    if not host_reachable("github.com"):
        raise _missing_weights(str(weights), looked, "no download: github.com is unreachable (offline?)")
    try:
        return Path(attempt_download_asset(path.name))
    except Exception as exc:  # ultralytics raises ConnectionError and others on failed downloads
        raise _missing_weights(str(weights), looked, f"download failed: {exc}") from exc


def create_detector(weights: Optional[PathLike] = None, cfg: Optional[PathLike] = None, nc: Optional[int] = None,
                    names: Optional[Union[Sequence[str], Dict[int, str]]] = None, **kwargs: Any) -> Detector:
    """Build a :class:`Detector` from an ultralytics checkpoint or a model YAML.

    Args:
        weights: a checkpoint path (e.g. ``../shared/weights/yolov8n_coco.pt``) or an official
            name (``"yolov8n.pt"``: found in the working directory or ultralytics' weights_dir,
            else downloaded when online). Defaults to ``$TASKDERAIN_YOLO`` when neither
            ``weights`` nor ``cfg`` is given. The model is loaded unfused (fusing loses the conv
            biases for training) in fp32, on the CPU, in eval mode.
        cfg: a model YAML (``"yolov8n.yaml"``): random initialisation, train mode.
        nc: number of classes for ``cfg`` (default: the YAML's).
        names: class names (index → name, or a list) replacing the model's.
        kwargs: :class:`Detector` settings (``imgsz``, ``conf``, ``iou``, ``max_det``, ...).

    Raises:
        WeightsNotFoundError: (a FileNotFoundError) the checkpoint is missing and cannot be
            downloaded; the message says where it looked and how to get one.
        ValueError: both or neither of ``weights`` / ``cfg``, or a checkpoint that is not a detector.
    """
    import_ultralytics()
    if weights is None and cfg is None:
        weights = os.environ.get(WEIGHTS_ENV) or None
        if weights is None:
            raise ValueError(f"create_detector needs weights=<checkpoint .pt> or cfg=<model .yaml>, "
                             f"or ${WEIGHTS_ENV} set to a checkpoint path")
    if weights is not None and cfg is not None:
        raise ValueError("pass either weights= (a trained checkpoint) or cfg= (a model YAML), not both")
    if cfg is not None:
        from ultralytics.nn.tasks import DetectionModel, yaml_model_load

        spec = yaml_model_load(str(cfg))
        if nc is not None:
            spec["nc"] = int(nc)
        model = DetectionModel(spec, nc=nc, verbose=False)
    else:
        from ultralytics.nn.tasks import load_checkpoint

        path = _resolve_weights(weights)
        try:
            model, _ = load_checkpoint(path, device="cpu", fuse=False)
        except Exception as exc:
            raise ValueError(f"cannot load {path} as an ultralytics checkpoint: {type(exc).__name__}: {exc}") from exc
        from ..checkpoint import check_finite

        check_finite(model.state_dict(), path, "detector checkpoint")
        task = getattr(model, "task", None)
        if task != "detect":
            raise ValueError(f"{path} holds a {task!r} model ({type(model).__name__}); a detection model is needed")
        if nc is not None and nc != int(model.model[-1].nc):
            raise ValueError(f"{path} detects {int(model.model[-1].nc)} classes, not nc={nc}; "
                             f"fine-tune it with ultralytics to change the classes")
    if names is not None:
        model.names = _names_dict(names, int(model.model[-1].nc))
        if len(model.names) != int(model.model[-1].nc):
            raise ValueError(f"{len(model.names)} names given for a model with {int(model.model[-1].nc)} classes")
    return Detector(model, **kwargs)
