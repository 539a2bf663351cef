"""Paired bootstrap intervals of a metric difference between two models scored on the same images.

``paired_bootstrap(variant, baseline, metric)`` resamples the images with replacement, scores
both arms on the *same* resample (paired: image difficulty cancels) and returns the percentile
interval of ``mean(metric(variant arms)) − mean(metric(baseline arms))``. Several arms per side
(e.g. training seeds) are averaged inside each resample, so the interval covers the image sample;
the seed spread is reported beside it. Corpus-level metrics such as COCO mAP are recomputed on
every resample, not averaged per image (:meth:`DetectionEvaluator.resampled`: COCOeval's
per-image matching once, its pooling per resample).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

import numpy as np

Metric = Callable[[Any, Sequence[int]], float]


def coco_map50_95(evaluator: Any, indices: Sequence[int]) -> float:
    """mAP50-95 of a :class:`~taskderain.metrics.DetectionEvaluator` on a resample."""
    return float(evaluator.resampled(indices)["map50_95"])


def paired_bootstrap(variant: Sequence[Any], baseline: Sequence[Any], metric: Metric = coco_map50_95,
                     n: int = 1000, seed: int = 0, level: float = 0.95) -> Dict[str, float]:
    """``{"diff", "low", "high", "resamples", "images"}``: the difference on all images and its
    ``level`` percentile interval over ``n`` paired resamples.

    Args:
        variant, baseline: arms scored on the same images in the same order (``len(arm)`` images each).
        metric: ``metric(arm, indices) -> float``.

    Raises:
        ValueError: no arms, or arms over different numbers of images.
    """
    arms = [*variant, *baseline]
    if not variant or not baseline:
        raise ValueError("paired_bootstrap needs at least one arm on each side")
    counts = {len(a) for a in arms}
    if len(counts) != 1:
        raise ValueError(f"the arms hold different numbers of images ({sorted(counts)}): not paired")
    count = counts.pop()
    rng = np.random.default_rng(seed)

    def diff(idx: Sequence[int]) -> float:
        return float(np.mean([metric(a, idx) for a in variant]) - np.mean([metric(b, idx) for b in baseline]))

    diffs = [diff(rng.integers(0, count, count).tolist()) for _ in range(n)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {"diff": diff(list(range(count))), "low": float(low), "high": float(high), "resamples": n,
            "images": count}
