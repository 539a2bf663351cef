"""The evaluation loop: every image × rain condition × derainer, cached, scored, timed.

For each image, each condition's rain is synthesised at most once and shared by the derainers;
each (condition, derainer) pair accumulates its own PSNR-Y/SSIM-Y, COCO mAP
(:class:`~taskderain.metrics.DetectionEvaluator`) and mIoU
(:class:`~taskderain.metrics.SegmentationEvaluator`). Derained images, detections and predicted
masks go through :class:`~taskderain.evaluation.cache.EvalCache`, so re-running after a kill only
computes what is missing. Wall time is kept per stage (rain, derain, detect, segment, metrics);
a cached result keeps the time it took when it was computed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..inference import DEFAULT_MAX_PIXELS, NonFiniteOutputError, check_tiling, choose_tile, derain_array
from ..metrics import DetectionEvaluator, SegmentationEvaluator, psnr, ssim
from ..stages.detector import check_nms
from .cache import EvalCache, cache_key
from .conditions import RainCondition
from .dataset import EvalData
from .geometry import ValidatorGeometry, image_shape, plan_geometries
from .stages import DerainerSpec, file_sha256, module_digest
from .tasks import detect_uint8, segment_uint8

STAGES = ("rain", "derain", "detect", "segment", "metrics")
IGNORE = 255


@dataclass
class EvalSettings:
    """Evaluation knobs that change results (all are stated in the report).

    Attributes:
        imgsz: longest image side the derainer and the task heads see, px.
        batch, pad: ultralytics' validator rect batching (:mod:`~taskderain.evaluation.geometry`):
            images sorted by aspect ratio, ``batch`` of them share one canvas, padded by ``pad``
            strides; the detector sees each image on its canvas, as ``YOLO.val(batch=...)`` does.
        seed: rain seed (per image: ``image_seed(image id, seed)``).
        conf, iou, max_det: detector NMS for mAP (defaults = ultralytics' validator: 0.001, 0.7, 300).
        dtype: autocast dtype for the derainer (None = fp32). ``tile``: derain in tiles of N px;
            ``None``: tiled automatically above ``max_pixels`` (:func:`~taskderain.inference.choose_tile`,
            the policy of every command), ``overlap`` px shared by neighbouring tiles.
        samples: how many images to keep (with their results) for the sample grid.
    """

    imgsz: int = 640
    batch: int = 16
    pad: float = 0.5
    seed: int = 0
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    dtype: Optional[torch.dtype] = None
    tile: Optional[int] = None
    overlap: int = 64
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    samples: int = 3

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap, self.max_pixels)
        if not isinstance(self.imgsz, int) or isinstance(self.imgsz, bool) or self.imgsz < 1:
            raise ValueError(f"imgsz must be a positive number of pixels, got {self.imgsz!r}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise ValueError(f"batch (images per validator canvas group) must be >= 1, got {self.batch!r}")
        if not 0 <= self.pad <= 2:
            raise ValueError(f"pad must be in [0, 2] strides, got {self.pad!r}")
        check_nms(self.conf, self.iou, self.max_det)


@dataclass
class Accumulator:
    """Running scores of one (condition, derainer) pair; one metric accumulator per head (by name)."""

    detections: Dict[str, DetectionEvaluator]
    segmentations: Dict[str, SegmentationEvaluator]
    psnr: List[float] = field(default_factory=list)
    ssim: List[float] = field(default_factory=list)
    time: Dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    computed: Dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES[:4]})
    images: int = 0

    @property
    def detection(self) -> Optional[DetectionEvaluator]:
        """The first detection head's accumulator (None without one)."""
        return next(iter(self.detections.values()), None)

    @property
    def segmentation(self) -> Optional[SegmentationEvaluator]:
        return next(iter(self.segmentations.values()), None)


@dataclass
class SampleView:
    """What the sample grid draws for one image: the clean image and each (condition, derainer) output."""

    image_id: str
    geometry: ValidatorGeometry
    clean: np.ndarray
    outputs: Dict[Tuple[str, str], Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(
        default_factory=dict)


def _mean(values: Sequence[float]) -> Optional[float]:
    """Mean of finite values; None when empty or any value is infinite (identical images)."""
    if not values or any(math.isinf(v) for v in values):
        return None
    return float(np.mean(values))


class Evaluation:
    """Runs one evaluation; :meth:`run` returns the records (one per condition × derainer).

    Args:
        data: the checked evaluation set.
        conditions: rain conditions (clean first).
        derainers: specs (identity first).
        heads: the task heads by name (:class:`~taskderain.stages.TaskHead`: detection heads get
            the NMS of ``settings``; segmentation heads are scored where masks exist). Every head is
            scored on the same derained images; records carry each head's metrics under ``heads``
            and the first head of each task's at the top level.
        cache: where per-image results are kept.
    """

    def __init__(self, data: EvalData, conditions: Sequence[RainCondition], derainers: Sequence[DerainerSpec],
                 heads: Mapping[str, nn.Module], cache: EvalCache, settings: EvalSettings) -> None:
        self.data, self.conditions, self.derainers = data, list(conditions), list(derainers)
        self.cache, self.settings = cache, settings
        self.detectors = {n: h for n, h in heads.items() if h.task == "detection"}
        self.segmenters = {n: h for n, h in heads.items() if h.task == "segmentation"} if data.masks is not None else {}
        for det in self.detectors.values():
            if hasattr(det, "max_det"):
                det.conf, det.iou, det.max_det = settings.conf, settings.iou, settings.max_det
        self.use_masks = bool(self.segmenters)
        self.digests = {n: module_digest(h) for n, h in {**self.detectors, **self.segmenters}.items()}
        # the canvases are multiples of every detector's stride
        self.stride = max([int(getattr(d, "stride", 32) or 32) for d in self.detectors.values()] or [32])
        self.samples: List[SampleView] = []
        #: per (condition name, derainer label): the per-image scores of the last :meth:`run`
        self.accumulators: Dict[Tuple[str, str], Accumulator] = {}

    def geometries(self) -> Dict[int, ValidatorGeometry]:
        """The validator geometry of every evaluated image (dataset index → geometry), planned over
        the whole set in ultralytics' dataset order (sorted paths), from the image headers."""
        paths = {index: path for index, (path, _, _) in zip(self.data.indices, self.data.labels)}
        order = sorted(paths, key=lambda i: str(paths[i]))
        shapes = []
        for index in order:
            try:
                shapes.append(image_shape(paths[index]))
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for unreadable files
                raise ValueError(f"cannot read the size of image {paths[index]}: {exc}") from None
        s = self.settings
        planned = plan_geometries(shapes, s.imgsz, s.batch, self.stride, s.pad)
        return dict(zip(order, planned))

    @property
    def detector(self) -> Optional[nn.Module]:
        """The first detection head (None without one)."""
        return next(iter(self.detectors.values()), None)

    @property
    def segmenter(self) -> Optional[nn.Module]:
        """The first segmentation head scored (None without one, or without masks)."""
        return next(iter(self.segmenters.values()), None)

    def _accumulators(self) -> Dict[Tuple[str, str], Accumulator]:
        out = {}
        for c in self.conditions:
            for d in self.derainers:
                det = {n: DetectionEvaluator(self.data.names) for n in self.detectors}
                seg = {n: SegmentationEvaluator(h.num_classes, IGNORE, self.data.mask_names or h.names)
                       for n, h in self.segmenters.items()}
                out[(c.name, d.label)] = Accumulator(det, seg)
        return out

    def _derained(self, spec: DerainerSpec, cond: RainCondition, sample: Dict[str, Any], image_sha: str,
                  geometry: ValidatorGeometry, rain: Dict[str, Any], acc: Accumulator) -> Tuple[np.ndarray, str]:
        s = self.settings
        tile = choose_tile(*geometry.resized, s.tile, s.max_pixels, s.overlap)  # what the derainer sees
        key = cache_key(kind="derained", derainer=spec.digest, rain=cond.rain_key(),
                        seed=None if cond.is_clean else s.seed, image_id=str(sample["id"]), image=image_sha,
                        imgsz=s.imgsz, resize="validator", tile=tile, dtype=str(s.dtype),
                        **({"overlap": s.overlap} if tile is not None and s.overlap != 64 else {}))
        hit = self.cache.get_image("derained", key)
        if hit is not None:
            derained, meta = hit
        else:
            if "image" not in rain:  # once per (image, condition), shared by the derainers
                start = time.perf_counter()
                rainy = cond.apply(sample["image"], str(sample["id"]), s.seed)
                rain["image"] = geometry.resize(rainy)
                rain["time"] = time.perf_counter() - start
                acc.computed["rain"] += 1
            start = time.perf_counter()
            try:
                derained = rain["image"] if spec.is_identity else derain_array(spec.model, rain["image"], tile=tile,
                                                                                    overlap=s.overlap, dtype=s.dtype)
            except NonFiniteOutputError as exc:
                raise NonFiniteOutputError(f"image {sample['id']} ({cond.name}), derainer {spec.label}: {exc}") from None
            meta = {"rain_s": rain["time"], "derain_s": time.perf_counter() - start}
            self.cache.put_image("derained", key, derained, meta)
            acc.computed["derain"] += not spec.is_identity
        acc.time["rain"] += meta["rain_s"]
        acc.time["derain"] += meta["derain_s"]
        return derained, key

    def _detections(self, name: str, derained: np.ndarray, dkey: str, geometry: ValidatorGeometry,
                    acc: Accumulator):
        s = self.settings
        key = cache_key(kind="detections", derained=dkey, detector=self.digests[name], conf=s.conf, iou=s.iou,
                        max_det=s.max_det, nms="multi_label", **geometry.key())
        entry = self.cache.get_json("detections", key)
        if entry is None:
            start = time.perf_counter()
            boxes, scores, classes = detect_uint8(self.detectors[name], derained, geometry)
            entry = {"boxes": boxes.tolist(), "scores": scores.tolist(), "classes": classes.tolist(),
                     "detect_s": time.perf_counter() - start}
            self.cache.put_json("detections", key, entry)
            acc.computed["detect"] += 1
        acc.time["detect"] += entry["detect_s"]
        return (np.asarray(entry["boxes"], np.float64).reshape(-1, 4), np.asarray(entry["scores"], np.float64),
                np.asarray(entry["classes"], np.int64))

    def _mask(self, name: str, derained: np.ndarray, dkey: str, acc: Accumulator) -> np.ndarray:
        key = cache_key(kind="masks", derained=dkey, segmenter=self.digests[name])
        hit = self.cache.get_image("masks", key, mask=True)
        if hit is not None:
            mask, meta = hit
        else:
            start = time.perf_counter()
            mask = segment_uint8(self.segmenters[name], derained)
            meta = {"segment_s": time.perf_counter() - start}
            self.cache.put_image("masks", key, mask, meta, mask=True)
            acc.computed["segment"] += 1
        acc.time["segment"] += meta["segment_s"]
        return mask

    def run(self, progress: bool = True) -> List[Dict[str, Any]]:
        """Evaluate every image; returns one record per (condition, derainer) in table order."""
        accs = self.accumulators = self._accumulators()
        self.samples = []
        s = self.settings
        geometries = self.geometries()
        for index in tqdm(self.data.indices, desc="eval", unit="img", disable=not progress):
            sample = self.data.dataset[index]
            geometry = geometries[index]
            if tuple(sample["image"].shape[:2]) != geometry.orig_shape:  # header and decoded pixels disagree
                geometry = ValidatorGeometry.plan(sample["image"].shape[:2], s.imgsz, geometry.canvas)
            clean = geometry.resize(sample["image"])
            gt_mask = None
            if self.use_masks and "mask" in sample:
                gt_mask = geometry.resize_mask(sample["mask"])
                if not (gt_mask != IGNORE).any():
                    gt_mask = None  # no labelled pixel (no mask file): nothing to score
            view = None
            if len(self.samples) < s.samples and len(sample["cls"]):
                view = SampleView(str(sample["id"]), geometry, clean)
                self.samples.append(view)
            image_sha = file_sha256(sample["path"])
            for cond in self.conditions:
                rain: Dict[str, Any] = {}
                reference = clean
                if cond.changes_tone:  # the reference needs the rain's draws: render both once, now
                    start = time.perf_counter()
                    rainy, reference = cond.pair(sample["image"], str(sample["id"]), s.seed)
                    rain.update(image=geometry.resize(rainy), time=time.perf_counter() - start)
                    reference = geometry.resize(reference)
                    accs[(cond.name, self.derainers[0].label)].computed["rain"] += 1
                for spec in self.derainers:
                    acc = accs[(cond.name, spec.label)]
                    derained, dkey = self._derained(spec, cond, sample, image_sha, geometry, rain, acc)
                    dets = {n: self._detections(n, derained, dkey, geometry, acc) for n in self.detectors}
                    masks = {n: self._mask(n, derained, dkey, acc) for n in self.segmenters} if gt_mask is not None else {}
                    start = time.perf_counter()
                    if spec.is_identity and cond.is_clean:
                        acc.psnr.append(math.inf)  # the reference itself
                    else:
                        acc.psnr.append(psnr(derained, reference))
                        acc.ssim.append(ssim(derained, reference))
                    for name, found in dets.items():
                        acc.detections[name].add_sample(sample, found)
                    for name, mask in masks.items():
                        acc.segmentations[name].add(mask, gt_mask)
                    acc.time["metrics"] += time.perf_counter() - start
                    acc.images += 1
                    if view is not None and dets:
                        view.outputs[(cond.name, spec.label)] = (derained, next(iter(dets.values())))
        return [self._record(cond, spec, accs[(cond.name, spec.label)])
                for cond in self.conditions for spec in self.derainers]

    def _record(self, cond: RainCondition, spec: DerainerSpec, acc: Accumulator) -> Dict[str, Any]:
        start = time.perf_counter()
        record: Dict[str, Any] = {
            "condition": cond.name, "intensity": cond.intensity, "derainer": spec.label,
            "reference": cond.is_clean and spec.is_identity, "n_images": acc.images,
            "psnr_y": _mean(acc.psnr), "ssim_y": _mean(acc.ssim) if acc.ssim else None,
        }
        heads: Dict[str, Dict[str, Any]] = {}
        for name, evaluator in acc.detections.items():
            coco = evaluator.compute()
            heads[name] = dict(task="detection", map50_95=coco["map50_95"], map50=coco["map50"], map75=coco["map75"],
                               per_class_ap=coco["per_class"], n_gt=coco["n_gt"], n_det=coco["n_det"])
        for name, evaluator in acc.segmentations.items():
            seg = evaluator.compute()
            heads[name] = dict(task="segmentation", miou=seg["miou"], pixel_acc=seg["pixel_acc"],
                               per_class_iou=seg["per_class"], n_seg_images=seg["n_images"])
        for first in (next(iter(acc.detections), None), next(iter(acc.segmentations), None)):
            if first is not None:  # the first head of each task: the report's columns
                record.update({k: v for k, v in heads[first].items() if k != "task"})
        record["heads"] = heads
        acc.time["metrics"] += time.perf_counter() - start
        n = max(acc.images, 1)
        record["time_s"] = {k: v for k, v in acc.time.items()}
        record["time_per_image_s"] = {k: v / n for k, v in acc.time.items()}
        record["computed"] = dict(acc.computed)
        record["rain"] = cond.describe()
        record["derainer_spec"] = spec.describe()
        return record
