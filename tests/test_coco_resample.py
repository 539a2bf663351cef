"""CocoResampler: the bootstrap's fast COCO mAP equals pycocotools on the resampled images."""

import math

import numpy as np
import pytest

from taskderain.metrics import DetectionEvaluator, coco_map
from taskderain.metrics.coco_resample import CocoResampler


def _scene(rng, images=24, classes=5):
    """Images with a few boxes each, detections near (hits), off (misses) and duplicated, tied
    scores included; some images without ground truth, one class never in the ground truth."""
    gt, preds, sizes = [], [], []
    for i in range(images):
        h, w = int(rng.integers(200, 500)), int(rng.integers(200, 500))
        n = 0 if i % 7 == 3 else int(rng.integers(1, 6))
        xy = rng.uniform(0, 0.6, (n, 2)) * [w, h]
        wh = rng.uniform(0.05, 0.4, (n, 2)) * [w, h]
        boxes = np.concatenate([xy, xy + wh], 1)
        cls = rng.integers(0, classes - 1, n)  # class classes-1 only ever predicted
        shift = rng.normal(0, 6, (n, 2))
        jitter = boxes + np.concatenate([shift, shift], 1)
        off = rng.uniform(0, 0.6, (3, 2)) * [w, h]
        noise = np.concatenate([off, off + 30], 1)
        pb = np.concatenate([jitter, jitter[:1], noise])
        pc = np.concatenate([np.where(rng.random(n) < 0.8, cls, (cls + 1) % classes), cls[:1],
                             rng.integers(0, classes, 3)])
        ps = np.round(rng.uniform(0.001, 1, len(pb)), 2)  # rounded: ties between images
        gt.append((cls, boxes))
        preds.append((pb, ps, pc))
        sizes.append((h, w))
    return gt, preds, sizes


def test_resamples_equal_pycocotools_on_the_resampled_images():
    rng = np.random.default_rng(0)
    gt, preds, sizes = _scene(rng)
    names = {c: f"c{c}" for c in range(5)}
    resampler = CocoResampler(gt, preds, sizes, names)
    draws = [list(range(len(gt)))] + [rng.integers(0, len(gt), len(gt)).tolist() for _ in range(12)]
    draws.append([3, 10, 17])  # only images without ground truth: nan
    draws.append([0, 0, 0, 5])
    for idx in draws:
        want = coco_map([gt[i] for i in idx], [preds[i] for i in idx], [sizes[i] for i in idx], names)
        got = resampler.compute(idx)
        for key in ("map50_95", "map50", "map75"):
            if math.isnan(want[key]):
                assert math.isnan(got[key]), (idx, key)
            else:
                assert got[key] == pytest.approx(want[key], abs=1e-12), (idx, key)
    assert resampler.compute(None)["map50_95"] == pytest.approx(coco_map(gt, preds, sizes, names)["map50_95"], abs=1e-12)


def test_no_detections_and_bad_indices():
    gt = [(np.array([0]), np.array([[0.0, 0.0, 10.0, 10.0]])), (np.array([], int), np.zeros((0, 4)))]
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    resampler = CocoResampler(gt, [empty, empty], [(20, 20), (20, 20)], {0: "a"})
    assert resampler.compute([0, 1])["map50_95"] == 0.0
    assert math.isnan(resampler.compute([1, 1])["map50"])
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        resampler.compute([0, 2])


def test_evaluator_resampled_follows_added_images():
    rng = np.random.default_rng(1)
    gt, preds, sizes = _scene(rng, images=10)
    ev = DetectionEvaluator({c: str(c) for c in range(5)})
    for i in range(6):
        ev.add(i, gt[i][0], gt[i][1], preds[i], sizes[i])
    idx = [5, 1, 1, 0]
    assert ev.resampled(idx)["map50_95"] == pytest.approx(ev.compute(idx)["map50_95"], abs=1e-12)
    for i in range(6, 10):  # the resampler is rebuilt once images are added
        ev.add(i, gt[i][0], gt[i][1], preds[i], sizes[i])
    idx = [9, 7, 7, 2]
    assert ev.resampled(idx)["map50_95"] == pytest.approx(ev.compute(idx)["map50_95"], abs=1e-12)
