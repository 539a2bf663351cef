"""``evaluate_report``: run an evaluation and write its report folder.

The folder holds ``results.json`` (setup, protocol and one record per condition × derainer),
``results.csv`` (the same, flat), ``report.md`` (tables to paste into a paper),
``map_vs_intensity.png`` (task metrics vs rain intensity per derainer), ``samples.png`` (clean |
rainy | derained with boxes) and ``cache/`` (per-image results: a re-run reuses them).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from torch import nn

from ..imageio import write_bytes_atomic
from ..metrics import DETECTION_PROTOCOL, describe_protocol
from .cache import EvalCache
from .conditions import RainCondition
from .dataset import EvalData
from .plots import plot_metrics_vs_intensity, sample_grid
from .report import add_recovery, render_report, write_results_csv, write_results_json
from .runner import IGNORE, Evaluation, EvalSettings
from .stages import DerainerSpec
from ..types import PathLike



def protocol_lines(settings: EvalSettings, segmentation: bool) -> List[str]:
    """The protocol statements every report carries."""
    s = settings
    lines = [
        f"Geometry: ultralytics' validator letterbox — longest side {s.imgsz} px (aspect kept, bilinear, sides "
        f"rounded up, as its validator loads images); the derainer, PSNR/SSIM and the segmenter see that content; "
        f"the detector sees it centred on its rect-batch canvas (images sorted by aspect ratio, {s.batch} per "
        f"canvas, {s.pad} stride of padding, grey border), boxes mapped back with the validator's ratio_pad. "
        f"Synthetic rain (taskderain.rain) is added at the original resolution before the resize, per image with "
        f"seed image_seed(image id, {s.seed}).",
        "Quantisation: derained images are rounded to 8 bits before any metric or task head sees them.",
        f"PSNR-Y / SSIM-Y: {describe_protocol('y', True)}; derained vs clean at the evaluation size, mean over "
        f"images. Derainer precision: {'fp32' if s.dtype is None else str(s.dtype).replace('torch.', '')}"
        + (f", tiles of {s.tile} px" if s.tile else f", images above {s.max_pixels:,} px tiled automatically"
           if s.max_pixels else "") + ".",
        f"Detection: {DETECTION_PROTOCOL}; in-memory COCO ground truth from the dataset's labels at the original "
        f"resolution, detections mapped back to original pixels; NMS: ultralytics' non_max_suppression, "
        f"multi-label, conf {s.conf}, IoU {s.iou}, max {s.max_det} detections, no time limit (its validator's "
        "settings). ultralytics' own validator reports a close but not identical "
        "mAP (it matches by IoU and integrates a linearly interpolated precision envelope with the trapezoid rule; "
        "COCOeval matches greedily by score and averages the step envelope at 101 recall points).",
    ]
    if segmentation:
        lines.append(f"Segmentation: mIoU over classes present in the ground truth, one confusion matrix accumulated "
                     f"over all images (not a mean of per-image IoUs), ignore index {IGNORE}, masks resized with "
                     "nearest neighbour; images without a mask are not scored.")
    lines.append("Recovery = (derained − rainy) / (clean − rainy) per metric, rainy = identity under the same rain, "
                 "clean = identity on clean images: 1 = the whole cost of the rain won back, 0 = nothing; "
                 "'—' where clean = rainy.")
    return lines


def _describe_module(module: Optional[nn.Module], weights: Optional[str]) -> Optional[str]:
    if module is None:
        return None
    return f"`{weights}` ({module.extra_repr()})" if weights else module.extra_repr()


def evaluate_report(data: EvalData, conditions: Sequence[RainCondition], derainers: Sequence[DerainerSpec],
                    out: PathLike, heads: Optional[Mapping[str, nn.Module]] = None,
                    settings: Optional[EvalSettings] = None, cache_dir: Optional[PathLike] = None,
                    weights: Optional[Mapping[str, Optional[str]]] = None,
                    device: str = "cpu", progress: bool = True, extra_meta: Optional[Dict[str, Any]] = None
                    ) -> Dict[str, Any]:
    """Evaluate and write the report folder ``out`` (see the module docstring).

    ``heads``: the task heads by name (every one is scored); ``weights``: head name → the weights
    it was built from (for the report).

    Returns:
        ``{"records": [...], "meta": {...}, "files": {name: path}, "cache": {kind: {"reused", "computed"}}}``.
    """
    settings = settings or EvalSettings()
    out = Path(out)
    cache = EvalCache(cache_dir if cache_dir is not None else out / "cache")
    heads, weights = dict(heads or {}), dict(weights or {})
    evaluation = Evaluation(data, conditions, derainers, heads, cache, settings)
    first = {task: next((n for n, h in heads.items() if h.task == task), None) for task in ("detection", "segmentation")}
    start = time.perf_counter()
    records = add_recovery(evaluation.run(progress=progress))
    gt_counts = Counter(data.names[int(c)] for _, classes, _ in data.labels for c in classes)
    meta = {
        "data": data.describe(),
        "settings": {**dataclasses.asdict(settings), "dtype": str(settings.dtype)},
        "conditions": [c.describe() for c in conditions],
        "derainers": [d.describe() for d in derainers],
        "detector": _describe_module(evaluation.detector, weights.get(first["detection"])),
        "segmenter": _describe_module(evaluation.segmenter, weights.get(first["segmentation"])),
        "heads": {n: {"task": h.task, "description": _describe_module(h, weights.get(n))} for n, h in heads.items()
                  if h.task == "detection" or evaluation.use_masks},
        "protocol": protocol_lines(settings, evaluation.use_masks),
        "gt_per_class": dict(gt_counts),
        "cache": {"dir": str(cache.root), **cache.counts()},
        "device": f"{device} ({platform.processor() or platform.machine()})",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra_meta or {}),
    }
    figures: Dict[str, str] = {}
    files: Dict[str, Path] = {}
    if plot_metrics_vs_intensity(records, out / "map_vs_intensity.png",
                                 f"{Path(data.source).name} [{data.split}], {len(data)} images, imgsz {settings.imgsz}"):
        figures["task metrics vs rain intensity"] = "map_vs_intensity.png"
        files["plot"] = out / "map_vs_intensity.png"
    if sample_grid(evaluation.samples, [c.name for c in conditions], [d.label for d in derainers], data.names,
                   out / "samples.png"):
        figures["sample images (boxes with score ≥ 0.25)"] = "samples.png"
        files["samples"] = out / "samples.png"
    meta["wall_time_s"] = time.perf_counter() - start
    write_results_json(out / "results.json", meta, records)
    write_results_csv(out / "results.csv", records)
    write_bytes_atomic(out / "report.md", render_report(meta, records, figures).encode())
    files.update(json=out / "results.json", csv=out / "results.csv", report=out / "report.md")
    return {"records": records, "meta": meta, "files": files, "cache": cache.counts()}
