"""Comparison helpers shared by tests (not a test module): taskderain vs ultralytics outputs."""

from __future__ import annotations

import torch

from taskderain.stages import Detections


def match_detections(ours: Detections, boxes, scores, classes, conf: float):
    """Per-detection differences after matching ours to the reference by class and IoU.

    Detections on only one side must lie within 0.01 of the confidence threshold (a 0.25 vs
    0.249 flip); returns (max box diff px, max score diff, matched count).
    """
    from torchvision.ops import box_iou

    box_diff, score_diff, used = 0.0, 0.0, set()
    iou = box_iou(boxes, ours.boxes) if len(ours) else torch.zeros(len(boxes), 0)
    for i in scores.argsort(descending=True).tolist():
        candidates = [j for j in range(len(ours)) if j not in used and ours.classes[j] == classes[i]]
        j = max(candidates, key=lambda j: iou[i, j], default=None)
        if j is None or iou[i, j] < 0.9:
            assert scores[i] < conf + 0.01, f"reference detection {i} (score {scores[i]:.3f}) not found"
            continue
        used.add(j)
        box_diff = max(box_diff, (ours.boxes[j] - boxes[i]).abs().max().item())
        score_diff = max(score_diff, abs(ours.scores[j] - scores[i]).item())
    for j in set(range(len(ours))) - used:
        assert ours.scores[j] < conf + 0.01, f"extra detection {j} (score {ours.scores[j]:.3f})"
    return box_diff, score_diff, len(used)
