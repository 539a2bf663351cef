"""A segmentation-models-pytorch network as a differentiable stage: any-size images in, logits out.

:class:`Segmenter` normalises (B,3,H,W) images in [0,1] with the encoder's mean/std, pads them
(reflect) to the multiple the architecture needs and crops the logits back, so callers (a
derainer, a Pipeline) never see the padding. Its loss is smp's multiclass Dice plus
cross-entropy, both skipping ``ignore_index`` pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..models.base import pad_to_multiple
from .head import TaskHead, register_head
from ..checkpoint import CheckpointError, check_finite
from .offline import host_reachable
from ..types import PathLike

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


def _names_dict(names: Optional[Union[Sequence[str], Mapping[int, str]]], num_classes: int) -> Dict[int, str]:
    if names is None:
        return {i: str(i) for i in range(num_classes)}
    out = {int(k): str(v) for k, v in names.items()} if isinstance(names, Mapping) else dict(enumerate(map(str, names)))
    if sorted(out) != list(range(num_classes)):
        raise ValueError(f"names must cover classes 0..{num_classes - 1}, got ids {sorted(out)}")
    return out


def _is_weights_file(value: Any) -> bool:
    """A path-like encoder_weights value (as opposed to an smp weights name such as "imagenet")."""
    if isinstance(value, os.PathLike):
        return True
    text = str(value)
    return "/" in text or os.sep in text or text.lower().endswith(WEIGHT_SUFFIXES) or Path(text).is_file()


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``'d state_dict (common wrappers removed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = (str(exc).splitlines() or [""])[0]
        raise CheckpointError(f"cannot read encoder weights {path}: {type(exc).__name__}: {detail} "
                              f"(a state_dict or .safetensors file is needed)") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state_dict (a mapping of names to tensors)")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}
    check_finite(state, path, "encoder weights")
    for prefix in ("model.encoder.", "encoder."):  # a whole Segmenter / smp model: keep its encoder
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_encoder_weights(encoder: nn.Module, path: PathLike) -> None:
    """Load an encoder state_dict file into ``encoder`` (strict), naming the mismatches on failure."""
    state = read_state_dict(path)
    try:
        encoder.load_state_dict(dict(state))
    except RuntimeError as exc:
        own = encoder.state_dict()
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # classifier heads are dropped by smp
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k}: file {tuple(v.shape)} vs encoder {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
        parts = [f"encoder weights {path} do not fit the {type(encoder).__name__} encoder:"]
        for label, items in (("shape mismatches", wrong), ("missing keys", missing), ("unexpected keys", unexpected)):
            if items:
                parts.append(f"  {len(items)} {label}, e.g. {', '.join(items[:3])}")
        raise CheckpointError("\n".join(parts)) from exc


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - smp depends on huggingface_hub
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub_reachable() -> bool:
    return host_reachable("huggingface.co")


def _offline_error(encoder: str, weights: str) -> ConnectionError:
    return ConnectionError(
        f"encoder_weights={weights!r} for encoder {encoder!r} must be downloaded from the Hugging Face hub "
        f"(huggingface.co), which is unreachable here: this needs internet. Pass encoder_weights=None "
        f"(random initialisation) or the path of a local encoder weights file (.pth / .safetensors); "
        f"weights already in the Hugging Face cache load with HF_HUB_OFFLINE=1")


def _create_smp(arch: str, encoder: str, num_classes: int, in_channels: int, encoder_weights: Any,
                **kwargs: Any) -> nn.Module:
    """``smp.create_model`` with encoder weights from a local file, smp's hub, or none."""
    import segmentation_models_pytorch as smp

    if encoder_weights is None:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                                classes=num_classes, **kwargs)
    if _is_weights_file(encoder_weights):
        model = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=3,
                                 classes=num_classes, **kwargs)
        load_encoder_weights(model.encoder, encoder_weights)
        if in_channels != 3:
            model.encoder.set_in_channels(in_channels, pretrained=True)
        return model
    if not _hub_offline() and not _hub_reachable():
        raise _offline_error(encoder, str(encoder_weights))
    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights,
                                in_channels=in_channels, classes=num_classes, **kwargs)
    except KeyError as exc:  # smp: unknown weights name (with the available ones), arch or encoder
        message = str(exc.args[0]) if exc.args else str(exc)
        if "pretrained weights" not in message:
            raise
        raise ValueError(f"{message}; or pass encoder_weights=None or a local weights file path") from None
    except OSError as exc:  # huggingface_hub / requests: offline, or not in the cache under HF_HUB_OFFLINE
        raise _offline_error(encoder, str(encoder_weights)) from exc


@register_head("smp")
class Segmenter(TaskHead):
    """Semantic segmentation over segmentation-models-pytorch: the ``smp`` task head.

    Args:
        arch: any ``smp.create_model`` architecture ("Unet", "FPN", "DeepLabV3Plus", ...).
        encoder: any smp encoder name ("resnet18", "mobilenet_v2", "tu-...").
        num_classes: output classes C.
        encoder_weights: ``None`` (random init, no download), a local encoder state_dict file
            (``.pth`` / ``.safetensors``; the encoder part of a whole smp model or segmenter
            checkpoint also works), or an smp weights name such as "imagenet" (downloaded from the
            Hugging Face hub; offline: one clear error).
        ignore_index: mask value of unlabelled pixels, skipped by the loss.
        names: class names (list, or index → name).
        in_channels: input channels (3 for RGB).
        mean, std: per-channel normalisation of the [0,1] input; default ImageNet's (what smp's
            pretrained encoders expect), their channel average when ``in_channels != 3``.
        model_kwargs: further ``smp.create_model`` arguments (``encoder_depth``, ``decoder_channels``...).
    """

    OPTIONS = {
        "arch": ((str, None), None),               # null with weights: the checkpoint's; else "Unet"
        "encoder": ((str,), "resnet18"),
        "num_classes": ((int, None), None),
        "weights": ((str, None), None),            # a segmenter checkpoint (save_segmenter)
        "encoder_weights": ((str, None), None),    # a local encoder file, or "imagenet" (online)
        "ignore_index": ((int,), 255),
    }
    RANGES = {"num_classes": (1, None)}
    task = "segmentation"
    default_name = "segmenter"
    batch_keys = ("semantic",)
    metric_names = ("miou",)

    def __init__(self, arch: str = "Unet", encoder: str = "resnet18", num_classes: Optional[int] = None,
                 encoder_weights: Optional[PathLike] = None, ignore_index: int = 255,
                 names: Optional[Union[Sequence[str], Mapping[int, str]]] = None, in_channels: int = 3,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 **model_kwargs: Any) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        if num_classes is None or int(num_classes) < 1:
            raise ValueError(f"Segmenter needs num_classes >= 1, got {num_classes}")
        num_classes = int(num_classes)
        if mean is None or std is None:
            mean = IMAGENET_MEAN if in_channels == 3 else (sum(IMAGENET_MEAN) / 3,) * in_channels
            std = IMAGENET_STD if in_channels == 3 else (sum(IMAGENET_STD) / 3,) * in_channels
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} values, got {len(mean)} / {len(std)}")
        self.model = _create_smp(arch, encoder, num_classes, in_channels, encoder_weights, **model_kwargs)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.arch, self.encoder_name, self.num_classes = arch, encoder, num_classes
        self.in_channels, self.ignore_index = in_channels, int(ignore_index)
        self.names = _names_dict(names, num_classes)
        self.encoder_weights = None if encoder_weights is None else str(encoder_weights)
        self.config: Dict[str, Any] = {
            "arch": arch, "encoder": encoder, "num_classes": num_classes, "ignore_index": self.ignore_index,
            "names": dict(self.names), "in_channels": in_channels, "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], **model_kwargs}
        divisible = getattr(self.model, "requires_divisible_input_shape", True)
        self.pad_multiple = int(self.model.encoder.output_stride) if divisible else 1
        self.dice = DiceLoss(mode="multiclass", ignore_index=self.ignore_index)
        self.ce = nn.CrossEntropyLoss(ignore_index=self.ignore_index)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B,C_in,H,W) float in [0,1], any H, W → logits (B,num_classes,H,W) at the same resolution."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"Segmenter expects (B,{self.in_channels},H,W) images, got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"Segmenter expects float images in [0, 1], got {images.dtype}; divide uint8 images by 255")
        h, w = images.shape[-2:]
        x = pad_to_multiple((images - self.mean) / self.std, self.pad_multiple)
        logits = self.model(x)
        if isinstance(logits, (tuple, list)):  # models built with aux_params also return class labels
            logits = logits[0]
        return logits[..., :h, :w]

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class-id masks (B,H,W) long of (B,C_in,H,W) float images in [0,1] (eval mode, no autograd)."""
        with self.evaluating():
            return self(images).argmax(1)

    def criterion(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Dice + cross-entropy (weights 1 : 1) of logits (B,C,H,W) against masks (B,H,W) long.

        Dice is smp's ``DiceLoss(mode="multiclass")``: mean over classes of 1 - soft Dice, classes
        absent from the labelled pixels contributing 0. Pixels equal to ``ignore_index`` count in
        neither term; with no labelled pixel at all the loss is 0 (still differentiable).

        Raises:
            ValueError: masks of another shape, or labels outside [0, C) other than ignore_index.
        """
        masks = self.check_masks(logits, masks)
        if not (masks != self.ignore_index).any():
            return logits.sum() * 0.0
        return self.dice(logits, masks) + self.ce(logits, masks)

    def check_masks(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``masks`` as long on the logits' device; ValueError on a shape or label that does not fit."""
        masks = masks.to(logits.device).long()
        if masks.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(f"masks of shape {tuple(masks.shape)} do not match logits {tuple(logits.shape)}; "
                             f"expected (B,H,W) = {(logits.shape[0], *logits.shape[2:])}")
        labelled = masks != self.ignore_index
        bad = labelled & ((masks < 0) | (masks >= logits.shape[1]))
        if bad.any():
            raise ValueError(f"mask values {sorted(set(masks[bad].unique().tolist()))[:10]} are outside the "
                             f"{logits.shape[1]} classes and not ignore_index={self.ignore_index}")
        return masks

    def loss(self, images: torch.Tensor, batch: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """``{"dice", "ce"}`` of (B,C_in,H,W) images in [0,1] against ``batch["semantic"]`` (B,H,W)
        class ids (each a mean over the labelled pixels; their sum is :meth:`criterion`)."""
        logits = self(images)
        masks = self.check_masks(logits, batch["semantic"])
        if not (masks != self.ignore_index).any():
            zero = logits.sum() * 0.0
            return {"dice": zero, "ce": zero}
        return {"dice": self.dice(logits, masks), "ce": self.ce(logits, masks)}

    def save(self, path: PathLike, metadata: Optional[Dict[str, Any]] = None, half: bool = False) -> Any:
        """A taskderain segmenter checkpoint: :func:`~taskderain.stages.save_segmenter`."""
        from .checkpoint import save_segmenter

        return save_segmenter(self, path, metadata, half=half)

    @classmethod
    def complete_spec(cls, spec: Dict[str, Any], key: str) -> Dict[str, Any]:
        """``weights`` (a checkpoint) or ``arch`` + ``num_classes``."""
        if spec["weights"] is None and spec["arch"] is None:
            raise ValueError(f"'{key}.arch' (or '{key}.weights') is required")
        if spec["weights"] is None and spec["num_classes"] is None:
            raise ValueError(f"'{key}.num_classes' is required with '{key}.arch'")
        return spec

    @classmethod
    def from_spec(cls, **options: Any) -> "Segmenter":
        """A spec entry: ``weights`` (a segmenter checkpoint, rebuilt as saved when ``arch`` is null) or
        ``arch`` (default ``Unet``) + ``encoder`` + ``num_classes``."""
        from .checkpoint import create_segmenter, load_segmenter

        options = dict(options)
        arch = options.pop("arch", None)
        if arch is None and options.get("weights") is not None:
            segmenter = load_segmenter(options["weights"])
            wanted = options.get("num_classes")
            if wanted is not None and wanted != segmenter.num_classes:
                raise ValueError(f"{options['weights']} predicts {segmenter.num_classes} classes, not num_classes={wanted}")
            return segmenter
        return create_segmenter(arch=arch or "Unet", **options)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, encoder={self.encoder_name!r}, num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, pad_multiple={self.pad_multiple}")
