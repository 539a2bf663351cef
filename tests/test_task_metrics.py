"""Downstream-task metrics: COCO box mAP (pycocotools COCOeval) and accumulated mIoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taskderain.metrics import (DetectionEvaluator, SegmentationEvaluator, coco_map, confusion_matrix,
                                miou_from_confusion, pixel_accuracy)
from taskderain.stages.results import Detections

NAMES = {0: "cat", 1: "dog"}
BOX = [0.0, 0.0, 100.0, 100.0]


def one_image(det_boxes, scores, classes, gt_classes=(0,), gt_boxes=(BOX,), names=NAMES):
    gt = [(np.asarray(gt_classes), np.asarray(gt_boxes, np.float64).reshape(-1, 4))]
    pred = [(np.asarray(det_boxes, np.float64).reshape(-1, 4), np.asarray(scores), np.asarray(classes))]
    return coco_map(gt, pred, [(200, 300)], names)


# ---------------------------------------------------------------- detection: known answers

def test_perfect_predictions_score_one():
    dog = [150, 20, 190, 90]
    out = one_image([BOX, dog], [0.9, 0.8], [0, 1], gt_classes=(0, 1), gt_boxes=(BOX, dog))
    assert out["map50_95"] == pytest.approx(1.0) and out["map50"] == pytest.approx(1.0)
    assert out["map75"] == pytest.approx(1.0)
    assert out["per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0})
    assert (out["n_images"], out["n_gt"], out["n_det"]) == (1, 2, 2)
    assert "COCOeval" in out["protocol"] and "101-point" in out["protocol"]


def test_wrong_class_scores_zero():
    out = one_image([BOX], [0.9], [1])
    assert out["map50_95"] == 0.0 and out["map50"] == 0.0
    assert out["per_class"] == {"cat": 0.0}  # dog has no ground truth: not averaged, not listed


def test_iou_between_060_and_065_passes_three_of_ten_thresholds():
    # GT [0,0,100,100] vs the same box shifted 23 px right: IoU = 77/123 = 0.626, which clears
    # the IoU thresholds .50, .55, .60 (AP 1 each) and fails .65 ... .95 (AP 0) → 3/10.
    assert 0.60 < 77 / 123 < 0.65
    out = one_image([[23, 0, 123, 100]], [0.9], [0])
    assert out["map50"] == pytest.approx(1.0, abs=1e-6)
    assert out["map50_95"] == pytest.approx(0.3, abs=1e-6)
    assert out["map75"] == pytest.approx(0.0, abs=1e-6)


def test_ranked_list_matches_hand_computed_101_point_ap():
    # 3 GT boxes, 5 detections in score order: TP, FP, TP, FP, TP (IoU 1 or 0 → same at every threshold).
    # recall    = 1/3, 1/3, 2/3, 2/3, 1;  precision = 1, 1/2, 2/3, 1/2, 3/5
    # envelope (max to the right) = 1, 2/3, 2/3, 3/5, 3/5
    # 101 recall points: r ≤ 1/3 (0..0.33, 34 points) → 1; 1/3 < r ≤ 2/3 (0.34..0.66, 33) → 2/3;
    # r > 2/3 (0.67..1.00, 34) → 3/5.  AP = (34 + 33·2/3 + 34·3/5) / 101 = 76.4 / 101.
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    dets = [gt[0], [100, 100, 110, 110], gt[1], [120, 100, 130, 110], gt[2]]
    out = one_image(dets, [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5, gt_classes=(0, 0, 0), gt_boxes=gt)
    expected = 76.4 / 101
    assert out["map50_95"] == pytest.approx(expected, abs=1e-9)
    assert out["map50"] == pytest.approx(expected, abs=1e-9)
    assert abs(expected - (1 + 2 / 3 + 3 / 5) / 3) > 5e-4  # not the area under the envelope (0.7556)


def test_no_detections_is_zero_without_crashing():
    ev = DetectionEvaluator(NAMES)
    ev.add("a", [0, 1], [BOX, [10, 10, 50, 50]], Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0).long()),
           (200, 300))
    ev.add("b", [], np.zeros((0, 4)), (np.zeros((0, 4)), np.zeros(0), np.zeros(0)), (200, 300))
    out = ev.compute()
    assert (out["map50_95"], out["map50"], out["map75"]) == (0.0, 0.0, 0.0)
    assert out["per_class"] == {"cat": 0.0, "dog": 0.0}
    assert (out["n_images"], out["n_gt"], out["n_det"]) == (2, 2, 0)


def test_no_ground_truth_at_all_is_nan():
    out = coco_map([(np.zeros(0), np.zeros((0, 4)))], [(np.asarray([BOX]), [0.5], [0])], [(200, 300)])
    assert math.isnan(out["map50_95"]) and out["n_gt"] == 0 and out["per_class"] == {}


@pytest.mark.parametrize("fp_score,expected", [(0.95, 0.5), (0.5, 1.0)])
def test_false_positive_on_image_without_gt(fp_score, expected):
    # Image 1: one GT, detected exactly (score 0.9). Image 2: no GT, one false positive.
    # FP ranked first: precision 0, 1/2 at recall 0, 1 → envelope 1/2 everywhere → AP 0.5.
    # FP ranked last: recall reaches 1 at precision 1 before it → AP 1 (COCO ignores trailing FPs).
    ev = DetectionEvaluator(NAMES)
    ev.add(1, [0], [BOX], (torch.tensor([BOX]), torch.tensor([0.9]), torch.tensor([0])), (200, 300))
    ev.add(2, [], [], (torch.tensor([[50.0, 50, 150, 150]]), torch.tensor([fp_score]), torch.tensor([0])), (200, 300))
    out = ev.compute()
    assert out["map50_95"] == pytest.approx(expected, abs=1e-9)
    assert out["n_images"] == 2 and out["n_det"] == 2


def test_per_class_ap_and_mean_over_classes_with_gt():
    names = {0: "cat", 1: "dog", 2: "bird"}
    gt_boxes = [BOX, [150, 0, 250, 100]]
    # cat found exactly; dog box shifted by 23 px (IoU 0.626 → AP 0.3); bird: no GT, one FP.
    out = one_image([BOX, [173, 0, 273, 100], [0, 120, 50, 180]], [0.9, 0.8, 0.7], [0, 1, 2],
                    gt_classes=(0, 1), gt_boxes=gt_boxes, names=names)
    assert out["per_class"] == pytest.approx({"cat": 1.0, "dog": 0.3}, abs=1e-6)
    assert out["map50_95"] == pytest.approx(0.65, abs=1e-6)
    assert out["map50"] == pytest.approx(1.0, abs=1e-6)


def test_detections_object_equals_tuple_and_xyxy_is_converted_to_xywh():
    # A box far from the origin: a missing xyxy → xywh conversion would give IoU 0 (or a ValueError).
    box = [200.0, 150.0, 260.0, 190.0]
    ev_obj, ev_tuple = DetectionEvaluator(NAMES), DetectionEvaluator(NAMES)
    det = Detections(torch.tensor([box, [0.0, 0, 30, 30]]), torch.tensor([0.8, 0.3]), torch.tensor([1, 1]), NAMES)
    ev_obj.add("x", [1], [box], det, (240, 320))
    ev_tuple.add("x", np.array([1]), np.array([box]), (det.boxes.numpy(), det.scores.numpy(), det.classes.numpy()),
                 (240, 320))
    a, b = ev_obj.compute(), ev_tuple.compute()
    assert a["map50_95"] == pytest.approx(1.0) and a == b


def test_add_sample_scales_normalised_xywh_by_width_and_height():
    # ori_shape (H=100, W=200): xywhn (0.25, 0.5, 0.1, 0.2) → centre (50, 50), size 20x20 px.
    sample = {"id": "img", "ori_shape": (100, 200), "cls": np.array([1], np.int64),
              "bboxes": np.array([[0.25, 0.5, 0.1, 0.2]], np.float32)}
    ev = DetectionEvaluator(NAMES)
    ev.add_sample(sample, (np.array([[40.0, 40, 60, 60]]), np.array([0.7]), np.array([1])))
    assert ev.compute()["map50_95"] == pytest.approx(1.0)
    ev.reset()
    assert len(ev) == 0
    swapped = [[15.0, 90, 35, 110]]  # where H and W exchanged would put it
    ev.add_sample(sample, (np.array(swapped), np.array([0.7]), np.array([1])))
    assert ev.compute()["map50"] == 0.0


def test_evaluator_errors_name_the_problem():
    ev = DetectionEvaluator(NAMES)
    ev.add("a", [0], [BOX], (np.zeros((0, 4)), [], []), (200, 300))
    with pytest.raises(ValueError, match="'a' was already added"):
        ev.add("a", [0], [BOX], (np.zeros((0, 4)), [], []), (200, 300))
    with pytest.raises(ValueError, match="xyxy"):
        ev.add("b", [0], [[50, 50, 10, 10]], (np.zeros((0, 4)), [], []), (200, 300))
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        ev.add("c", [0], [BOX], (np.array([BOX, BOX]), [0.5], [0, 0]), (200, 300))
    ev.add("d", [7], [BOX], (np.zeros((0, 4)), [], []), (200, 300))
    with pytest.raises(ValueError, match=r"\[7\] not in names"):
        ev.compute()


def _reference_coco_ap(gt, preds, classes, thresholds=np.linspace(0.5, 0.95, 10)):
    """Independent COCO-style AP: greedy matching by score, 101-point interpolated precision."""

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    recall_points = np.linspace(0, 1, 101)
    aps = {}
    for c in classes:
        n_gt = sum(int((g_cls == c).sum()) for g_cls, _ in gt)
        if n_gt == 0:
            continue
        ap_t = []
        for t in thresholds:
            hits = []  # (score, is_tp)
            for (g_cls, g_box), (d_box, d_score, d_cls) in zip(gt, preds):
                g = [b for b, k in zip(g_box, g_cls) if k == c]
                used = [False] * len(g)
                for j in np.argsort(-d_score, kind="stable"):
                    if d_cls[j] != c:
                        continue
                    ious = [iou(d_box[j], b) if not used[k] else -1 for k, b in enumerate(g)]
                    k = int(np.argmax(ious)) if ious else -1
                    ok = k >= 0 and ious[k] >= t
                    if ok:
                        used[k] = True
                    hits.append((d_score[j], ok))
            hits.sort(key=lambda h: -h[0])
            tp = np.cumsum([h[1] for h in hits])
            recall = tp / n_gt
            precision = tp / np.arange(1, len(hits) + 1)
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            idx = np.searchsorted(recall, recall_points, side="left")
            ap_t.append(np.mean([envelope[i] if i < len(hits) else 0.0 for i in idx]))
        aps[c] = float(np.mean(ap_t))
    return aps


def test_random_scenes_match_an_independent_implementation(rng):
    gt, preds = [], []
    for _ in range(6):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        g_box = np.concatenate([xy, xy + rng.uniform(10, 60, (n, 2))], axis=1)
        g_cls = rng.integers(0, 3, n)
        # detections: jittered copies of most GT boxes (some with the wrong class) plus clutter
        keep = rng.random(n) < 0.8
        jitter = g_box[keep] + rng.normal(0, 6, (int(keep.sum()), 4))
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        m = int(rng.integers(0, 4))
        xy = rng.uniform(0, 200, (m, 2))
        clutter = np.concatenate([xy, xy + rng.uniform(5, 50, (m, 2))], axis=1)
        d_box = np.concatenate([jitter, clutter])
        d_cls = np.concatenate([np.where(rng.random(int(keep.sum())) < 0.85, g_cls[keep], 2 - g_cls[keep]),
                                rng.integers(0, 3, m)])
        gt.append((g_cls, g_box))
        preds.append((d_box, rng.random(len(d_box)), d_cls))
    names = {0: "a", 1: "b", 2: "c"}
    out = coco_map(gt, preds, [(300, 300)] * len(gt), names)
    ref = _reference_coco_ap(gt, preds, range(3))
    assert out["per_class"] == pytest.approx({names[c]: v for c, v in ref.items()}, abs=1e-9)
    assert out["map50_95"] == pytest.approx(np.mean(list(ref.values())), abs=1e-9)
    assert 0.05 < out["map50_95"] < 0.95  # a non-trivial case


def test_coco128_labels_through_add_sample(shared):
    """Real COCO128 labels: GT echoed as detections except every person → person AP 0, others 1."""
    from taskderain.data.detection import YoloDetectionDataset

    data = YoloDetectionDataset(shared / "data" / "coco128" / "coco128.yaml", "val")
    ev = DetectionEvaluator(data.names)
    n_gt = 0
    for i in range(24):
        s = data[i]
        h, w = s["ori_shape"]
        cx, cy, bw, bh = (s["bboxes"] * np.array([w, h, w, h])).T
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        keep = s["cls"] != 0
        ev.add_sample(s, (boxes[keep], np.full(int(keep.sum()), 0.9), s["cls"][keep]))
        n_gt += len(s["cls"])
    out = ev.compute()
    present = len(out["per_class"])
    assert out["n_images"] == 24 and out["n_gt"] == n_gt and present > 3
    assert out["per_class"]["person"] == 0.0
    assert all(v == pytest.approx(1.0) for k, v in out["per_class"].items() if k != "person")
    assert out["map50_95"] == pytest.approx((present - 1) / present)


# ---------------------------------------------------------------- segmentation

TARGET = np.array([[0, 0, 1],
                   [1, 2, 2]])
PRED = np.array([[0, 1, 1],
                 [1, 2, 0]])


def test_hand_computed_three_class_example():
    # rows = target, cols = prediction
    expected_cm = np.array([[1, 1, 0],   # target 0: one right, one predicted as 1
                            [0, 2, 0],   # target 1: both right
                            [1, 0, 1]])  # target 2: one right, one predicted as 0
    cm = confusion_matrix(PRED, TARGET, 3)
    assert isinstance(cm, np.ndarray) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected_cm)
    miou, iou = miou_from_confusion(cm)
    # IoU0 = 1/(1+1+1), IoU1 = 2/(2+1+0), IoU2 = 1/(1+0+1)
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    assert miou == pytest.approx(0.5)
    assert pixel_accuracy(cm) == pytest.approx(4 / 6)
    out = SegmentationEvaluator(3, names=["sky", "road", "car"])
    out.add(PRED, TARGET)
    res = out.compute()
    assert res["per_class"] == pytest.approx({"sky": 1 / 3, "road": 2 / 3, "car": 1 / 2})
    assert res["miou"] == pytest.approx(0.5) and res["pixel_acc"] == pytest.approx(4 / 6)
    assert res["n_images"] == 1 and "ignore index 255" in res["protocol"]


def test_ignored_pixels_do_not_count_even_with_bad_predictions():
    target = np.concatenate([TARGET, np.full((2, 2), 255)], axis=1)
    pred = np.concatenate([PRED, np.array([[2, 7], [-1, 0]])], axis=1)  # 7 and -1 only under ignore
    np.testing.assert_array_equal(confusion_matrix(pred, target, 3), confusion_matrix(PRED, TARGET, 3))
    with pytest.raises(ValueError, match="target has class ids"):  # without an ignore index, 255 is a bad id
        confusion_matrix(pred, target, 3, ignore_index=None)


def test_accumulated_over_images_not_mean_of_per_image_miou():
    # image 1: 4 pixels of class 0, all right → per-image mIoU 1 (class 1 absent).
    # image 2: target [0, 1], pred [1, 1] → IoU0 = 0, IoU1 = 1/2 → per-image mIoU 1/4.
    # mean of per-image = 0.625; accumulated cm [[4, 1], [0, 1]] → IoU0 = 4/5, IoU1 = 1/2 → 0.65.
    ev = SegmentationEvaluator(2)
    ev.add(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))
    ev.add(torch.tensor([[1, 1]]), torch.tensor([[0, 1]]))
    res = ev.compute()
    np.testing.assert_array_equal(res["confusion"], [[4, 1], [0, 1]])
    assert res["miou"] == pytest.approx(0.65)
    assert res["n_images"] == 2
    ev.reset()
    assert ev.compute()["n_images"] == 0 and math.isnan(ev.compute()["miou"])


def test_classes_absent_from_ground_truth_are_left_out():
    # 4 classes; class 3 is predicted once but never in the ground truth, class 2 appears nowhere.
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 3, 1, 1]])
    cm = confusion_matrix(pred, target, 4)
    miou, iou = miou_from_confusion(cm)
    np.testing.assert_allclose(iou, [0.5, 1.0, np.nan, np.nan])
    assert miou == pytest.approx(0.75)
    miou_all, iou_all = miou_from_confusion(cm, present_only=False)  # class 3: IoU 0 counts; class 2 still nan
    np.testing.assert_allclose(iou_all, [0.5, 1.0, np.nan, 0.0])
    assert miou_all == pytest.approx(0.5)
    ev = SegmentationEvaluator(4)
    ev.add(pred, target)
    assert set(ev.compute()["per_class"]) == {"0", "1"}


def test_bad_inputs_raise_helpful_errors():
    with pytest.raises(ValueError, match=r"pred has class ids outside \[0, 3\).*\[-1, 5\]"):
        confusion_matrix(np.array([[0, 5, -1]]), np.array([[0, 1, 2]]), 3)
    with pytest.raises(ValueError, match=r"target has class ids outside \[0, 3\).*\[9\].*ignore_index is 255"):
        confusion_matrix(np.array([[0, 1]]), np.array([[0, 9]]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 3)
    with pytest.raises(TypeError, match="argmax"):
        SegmentationEvaluator(3).add(torch.rand(3, 4, 4), torch.zeros(3, 4, 4).long())


def test_torch_and_numpy_inputs_agree_and_match_a_direct_count(rng):
    c = 5
    target = rng.integers(0, c, (3, 17, 23))
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, c, (3, 17, 23))
    reference = np.zeros((c, c), np.int64)
    valid = target != 255
    np.add.at(reference, (target[valid], pred[valid]), 1)

    cm_np = confusion_matrix(pred, target, c)
    cm_t = confusion_matrix(torch.from_numpy(pred).int(), torch.from_numpy(target), c)
    assert isinstance(cm_t, torch.Tensor) and cm_t.dtype == torch.int64
    np.testing.assert_array_equal(cm_np, reference)
    np.testing.assert_array_equal(cm_t.numpy(), reference)

    ev_np, ev_t = SegmentationEvaluator(c), SegmentationEvaluator(c)
    for i in range(3):
        ev_np.add(pred[i], target[i])
    ev_t.add(torch.from_numpy(pred), torch.from_numpy(target))  # one (B, H, W) batch
    a, b = ev_np.compute(), ev_t.compute()
    np.testing.assert_array_equal(a["confusion"], b["confusion"])
    assert a["miou"] == b["miou"] == pytest.approx(miou_from_confusion(reference)[0])
    assert a["n_images"] == b["n_images"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_counts_on_device(rng):
    target = torch.from_numpy(rng.integers(0, 4, (2, 32, 32)))
    pred = torch.from_numpy(rng.integers(0, 4, (2, 32, 32)))
    cm = confusion_matrix(pred.cuda(), target.cuda(), 4)
    assert cm.device.type == "cuda"
    np.testing.assert_array_equal(cm.cpu().numpy(), confusion_matrix(pred.numpy(), target.numpy(), 4))
    ev = SegmentationEvaluator(4)
    ev.add(pred.cuda(), target.numpy())
    assert ev.compute()["miou"] == pytest.approx(miou_from_confusion(cm)[0])


# ---- paired bootstrap (taskderain.metrics.bootstrap) ------------------------------------------
def _evaluator(hit_every: int, images: int = 30):
    """Detections that find each image's one box on every ``hit_every``-th image (else a miss)."""
    from taskderain.metrics import DetectionEvaluator

    ev = DetectionEvaluator({0: "thing"})
    for i in range(images):
        gt = np.array([[10.0, 10.0, 50.0, 60.0]])
        box = gt if i % hit_every == 0 else np.array([[70.0, 70.0, 90.0, 90.0]])
        ev.add(i, np.array([0]), gt, (box, np.array([0.9]), np.array([0])), (100, 100))
    return ev


def test_paired_bootstrap_resolves_a_real_difference_and_not_a_null_one():
    from taskderain.metrics import paired_bootstrap

    good, poor = _evaluator(1), _evaluator(3)
    better = paired_bootstrap([good], [poor], n=200)
    assert better["diff"] == pytest.approx(good.compute()["map50_95"] - poor.compute()["map50_95"])
    assert 0 < better["low"] <= better["diff"] <= better["high"] and better["images"] == 30
    same = paired_bootstrap([poor], [poor], n=50)
    assert same["diff"] == same["low"] == same["high"] == 0.0  # paired: the same model never differs
    # a resample with repeats is what compute(indices) scores
    assert good.compute([0, 0, 1])["n_images"] == 3
    with pytest.raises(ValueError, match="different numbers of images"):
        paired_bootstrap([good], [_evaluator(1, images=5)], n=2)
    with pytest.raises(ValueError, match="method must be 'BCa' or 'percentile'"):
        paired_bootstrap([good], [poor], n=2, method="normal")


def test_paired_bootstrap_of_a_mean_matches_the_normal_interval():
    """For a per-image mean (a smooth statistic) BCa, percentile and the textbook normal interval
    diff ± 1.96·sd/√n agree; seeds (arms) are averaged inside each resample."""
    from taskderain.metrics import paired_bootstrap

    rng = np.random.default_rng(3)
    base = rng.normal(0.5, 0.2, 400)
    variants = [base + 0.05 + rng.normal(0, 0.1, 400) for _ in range(2)]
    mean = lambda arm, idx: float(np.mean(arm[idx]))  # noqa: E731
    gaps = np.mean(variants, axis=0) - base
    half = 1.96 * gaps.std(ddof=1) / np.sqrt(len(gaps))
    for method in ("BCa", "percentile"):
        ci = paired_bootstrap(variants, [base], metric=mean, n=2000, method=method)
        assert ci["diff"] == pytest.approx(gaps.mean()) and ci["method"] == method
        assert ci["low"] == pytest.approx(gaps.mean() - half, abs=0.15 * half)
        assert ci["high"] == pytest.approx(gaps.mean() + half, abs=0.15 * half)
        assert ci["mean"] == pytest.approx(gaps.mean(), abs=0.2 * half)
