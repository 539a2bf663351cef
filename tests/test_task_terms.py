"""The task-driven loss terms (taskderain.losses.task_terms): what each computes, that gradients reach
the derained image, and that a training run logs them."""

from __future__ import annotations

import pytest
import torch

from taskderain.losses.task_terms import (detection_consistency, detector_features, pseudo_labels,
                                          targeted_restoration, targeted_target)
from taskderain.losses.terms import Step, list_loss_terms
from taskderain.models import create_derainer
from taskderain.pipeline import Pipeline
from taskderain.stages import create_detector
from taskderain.stages.results import Detections

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    det = create_detector(cfg="yolov8n.yaml", nc=3, imgsz=64, conf=0.001).freeze()
    return Pipeline(create_derainer("mspfn_tiny"), {"detector": det})


def _batch():
    return {"batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[1.0], [2.0]]),
            "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.3, 0.6, 0.2, 0.5]])}


def _step(pipeline, derained, clean):
    return Step(pipeline, _batch(), clean, derained, clean)


def test_terms_are_registered():
    assert {"detector_features", "detection_consistency", "targeted_restoration"} <= set(list_loss_terms())


def test_detector_features_is_zero_on_the_clean_image_and_has_gradients(pipeline):
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert float(detector_features(_step(pipeline, clean.clone(), clean))) == pytest.approx(0.0, abs=1e-7)
    derained = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1).requires_grad_(True)
    value = detector_features(_step(pipeline, derained, clean))
    value.backward()
    assert value > 0 and derained.grad is not None and derained.grad.abs().sum() > 0
    one = detector_features(_step(pipeline, derained.detach(), clean), layers=[15])
    assert one > 0 and not torch.isclose(one, value.detach())  # layers select the features


def test_terms_leave_out_a_pipeline_without_a_detector():
    bare = Pipeline(create_derainer("mspfn_tiny"), {})
    x = torch.rand(1, 3, 32, 32)
    assert detector_features(_step(bare, x, x)) is None and detection_consistency(_step(bare, x, x)) is None
    assert not detector_features.applies(bare) and targeted_restoration(_step(bare, x, x)) is None


def test_pseudo_labels_are_the_detections_in_normalised_xywh():
    dets = [Detections(torch.tensor([[8.0, 16.0, 40.0, 48.0]]), torch.tensor([0.9]), torch.tensor([2])),
            Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))]
    labels = pseudo_labels(dets, (64, 128), torch.device("cpu"))
    assert labels["batch_idx"].tolist() == [0.0] and labels["cls"].tolist() == [[2.0]]
    assert labels["bboxes"].tolist() == [[24 / 128, 32 / 64, 32 / 128, 32 / 64]]


def test_detection_consistency_needs_no_labels_and_has_gradients(pipeline):
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    derained = (clean * 0.8).requires_grad_(True)
    step = Step(pipeline, {}, clean, derained, clean)  # an unlabelled batch
    value = detection_consistency(step, conf=0.0)  # a random detector: keep its weak detections as labels
    value.backward()
    assert torch.isfinite(value) and derained.grad.abs().sum() > 0


def test_targeted_target_is_bounded_and_lowers_the_detection_loss(pipeline):
    det = pipeline.heads["detector"]
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    eps = 4 / 255
    target = targeted_target(det, clean, _batch(), eps, steps=2)
    assert (target - clean).abs().max() <= eps + 1e-6 and target.min() >= 0 and target.max() <= 1
    assert not target.requires_grad and (target != clean).any()
    before, after = (float(sum(det.loss(x, _batch()).values())) for x in (clean, target))
    assert after < before
    derained = clean.clone().requires_grad_(True)
    value = targeted_restoration(Step(pipeline, _batch(), clean, derained, clean), epsilon=eps)
    value.backward()
    assert value > 0 and derained.grad.abs().sum() > 0  # the clean image is no longer the target
