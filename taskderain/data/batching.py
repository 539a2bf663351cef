"""Sample transforms and the collate that builds ultralytics' batch dict (plus clean images and masks)."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch

from .letterbox import letterbox_boxes, letterbox_image, letterbox_mask, letterbox_params

IMAGE_KEYS = ("image", "clean")


class Letterbox:
    """Letterbox every image of a sample (rainy and clean alike), its boxes and its mask.

    Geometry, interpolation and the grey (114) padding follow ultralytics' ``LetterBox``; masks
    are resized with nearest neighbour and padded with ``ignore_index``. ``sample["ratio_pad"]``
    maps predictions back to the original image as ultralytics' ``scale_boxes`` expects.
    """

    def __init__(self, imgsz: int = 640, scaleup: bool = True, auto: bool = False, stride: int = 32,
                 pad_value: int = 114, ignore_index: int = 255) -> None:
        self.imgsz, self.scaleup, self.auto, self.stride = imgsz, scaleup, auto, stride
        self.pad_value, self.ignore_index = pad_value, ignore_index

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        params = letterbox_params(sample["image"].shape[:2], self.imgsz, scaleup=self.scaleup,
                                  auto=self.auto, stride=self.stride)
        out = dict(sample)
        for key in IMAGE_KEYS:
            if key in out:
                out[key] = letterbox_image(out[key], params, self.pad_value)
        if "mask" in out:
            out["mask"] = letterbox_mask(out["mask"], params, self.ignore_index)
        if "bboxes" in out:
            out["bboxes"] = letterbox_boxes(out["bboxes"], params)
        out["ratio_pad"] = params.ratio_pad
        return out


def _stack_images(samples: List[Dict[str, Any]], key: str) -> torch.Tensor:
    shapes = {s[key].shape for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch images of different sizes {sorted(shapes)} "
                         f"({', '.join(s['id'] for s in samples)}); letterbox them to one size first")
    array = np.stack([s[key] for s in samples])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255)


def collate_batch(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Samples → ultralytics' batch dict, images as float in [0, 1].

    Returns keys ``img`` (B,3,H,W) (the rainy image for :class:`~taskderain.rain.Rainy` samples),
    ``clean`` (B,3,H,W) when present, ``batch_idx`` (N,), ``cls`` (N,1) float, ``bboxes`` (N,4)
    normalised xywh, ``semantic`` (B,H,W) int64 class ids when present (not ultralytics' instance
    ``masks``), and ``im_file``, ``id``,
    ``ori_shape``, ``ratio_pad`` lists.
    """
    batch: Dict[str, Any] = {"img": _stack_images(samples, "image")}
    if "clean" in samples[0]:
        batch["clean"] = _stack_images(samples, "clean")
    if "cls" in samples[0]:
        batch["batch_idx"] = torch.cat([torch.full((len(s["cls"]),), i, dtype=torch.float32)
                                        for i, s in enumerate(samples)])
        batch["cls"] = torch.cat([torch.as_tensor(s["cls"], dtype=torch.float32).view(-1, 1) for s in samples])
        batch["bboxes"] = torch.cat([torch.as_tensor(s["bboxes"], dtype=torch.float32).view(-1, 4) for s in samples])
    if "mask" in samples[0]:
        batch["semantic"] = torch.from_numpy(np.stack([s["mask"] for s in samples])).long()
    batch["im_file"] = [s["path"] for s in samples]
    batch["id"] = [s["id"] for s in samples]
    batch["ori_shape"] = [tuple(s["ori_shape"]) for s in samples]
    batch["ratio_pad"] = [s.get("ratio_pad") for s in samples]
    return batch
