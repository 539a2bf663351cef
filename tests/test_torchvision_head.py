"""torchvision's detectors as a task head: predictions in input pixels, their own losses through the
derainer (a frozen head keeps its BatchNorm statistics), checkpoints, offline errors, and training
and validation with ``taskderain train`` scored by the same pycocotools evaluator as YOLO."""

from __future__ import annotations

import pytest
import torch

from taskderain.config import ConfigError
from taskderain.metrics import DetectionEvaluator
from taskderain.models import create_derainer
from taskderain.pipeline import Pipeline
from taskderain.stages import Detections
from taskderain.stages.head import create_head, list_heads
from taskderain.stages.offline import WeightsNotFoundError
from taskderain.train import load_train_checkpoint, train

from training_setup import write_yolo_data

pytestmark = pytest.mark.usefixtures("one_thread")
ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
BATCH = {"batch_idx": torch.tensor([0.0, 1.0, 1.0]), "cls": torch.tensor([[0.0], [2.0], [1.0]]),
         "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.5], [0.3, 0.6, 0.3, 0.4], [0.7, 0.3, 0.25, 0.3]])}


def small(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_head("torchvision", arch=ARCH, nc=3, min_size=64, max_size=96, conf=0.0, **options)


def test_registered_and_predicts_in_input_pixels():
    assert "torchvision" in list_heads()
    head = small().eval()
    assert head.task == "detection" and head.nc == 3 and head.imgsz == (64, 96)
    out = head.predict(torch.rand(2, 3, 48, 80))
    assert len(out) == 2 and all(isinstance(d, Detections) for d in out)
    for det in out:
        assert len(det) > 0 and det.boxes.shape[1] == 4
        assert float(det.boxes[:, [0, 2]].max()) <= 80 and float(det.boxes[:, [1, 3]].max()) <= 48
        assert det.classes.min() >= 0 and det.classes.max() < 3  # data classes, not torchvision labels
    head.conf, head.iou, head.max_det = 0.5, 0.4, 7  # written through to the model's postprocessing
    assert (head.model.roi_heads.score_thresh, head.model.roi_heads.nms_thresh, head.model.roi_heads.detections_per_img) == (0.5, 0.4, 7)


def test_frozen_head_loss_reaches_the_derainer_and_keeps_statistics():
    head = small().freeze()
    pipe = Pipeline(create_derainer("mspfn_tiny"), {"detector": head}).train()
    before = {k: v.clone() for k, v in head.state_dict().items()}
    images = torch.rand(2, 3, 64, 64)
    losses, derained = pipe.losses(images, BATCH)
    terms = losses["detector"]
    assert set(terms) == {"classifier", "box_reg", "objectness", "rpn_box_reg"}
    assert all(torch.isfinite(v) and v >= 0 for v in terms.values())
    sum(terms.values()).backward()
    grads = [p.grad for p in pipe.derainer.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in head.parameters())  # frozen: no parameter gradients
    after = head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running statistics unchanged
    assert not head.training and not any(m.training for m in head.modules())


def test_an_unfrozen_head_learns_its_boxes():
    """FCOS (deterministic losses: no anchor sampling) trained alone on one batch."""
    torch.manual_seed(0)
    head = create_head("torchvision", arch="fcos_resnet50_fpn", nc=3, min_size=64, max_size=96).unfreeze().train()
    optimiser = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=1e-4)
    images = torch.rand(2, 3, 64, 64)
    values = []
    for _ in range(6):
        optimiser.zero_grad()
        terms = head.loss(images, BATCH)
        loss = sum(terms.values())
        loss.backward()
        optimiser.step()
        values.append(float(loss.detach()))
    assert set(terms) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert values[-1] < 0.6 * values[0], values


def test_checkpoint_round_trip_and_bad_weights(tmp_path):
    head = small(names={0: "a", 1: "b", 2: "c"}).eval()
    path = head.save(tmp_path / "tv.pt", {"note": "test"})
    again = create_head("torchvision", arch=ARCH, weights=str(path), min_size=64, max_size=96, conf=0.0).eval()
    assert again.names == {0: "a", 1: "b", 2: "c"} and again.nc == 3
    x = torch.rand(1, 3, 64, 64)
    a, b = head.predict(x)[0], again.predict(x)[0]
    torch.testing.assert_close(a.boxes, b.boxes) and torch.testing.assert_close(a.scores, b.scores)
    with pytest.raises(ValueError, match=r"holds a fasterrcnn_mobilenet_v3_large_320_fpn detector, not retinanet"):
        create_head("torchvision", arch="retinanet_resnet50_fpn", weights=str(path))
    with pytest.raises(ValueError, match=r"unknown torchvision detector 'fasterrcnn_tiny'; available: .*fcos_resnet50_fpn"):
        create_head("torchvision", arch="fasterrcnn_tiny")
    with pytest.raises(ValueError, match=r"has no weights 'COCO_V9'; available: DEFAULT, COCO_V1"):
        create_head("torchvision", arch=ARCH, weights="COCO_V9")


def test_torchvision_weights_offline_are_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr("taskderain.stages.torchvision_detector.host_reachable", lambda host: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(WeightsNotFoundError, match=r"not in the torch hub cache .* download.pytorch.org is not reachable"):
        create_head("torchvision", arch=ARCH, weights="DEFAULT")
    with pytest.raises(WeightsNotFoundError, match=r"weights_backbone=null"):
        create_head("torchvision", arch=ARCH, weights_backbone="DEFAULT")


def test_trained_through_the_derainer_with_taskderain_train(tmp_path):
    """A config that names the head by type: cascade (frozen head, derainer trained) and joint
    (both trained), validated by the pycocotools evaluator every head uses."""
    data = write_yolo_data(tmp_path / "yolo")
    head = {"type": "torchvision", "arch": ARCH, "nc": 3, "min_size": 64, "max_size": 96, "conf": 0.001}
    base = {"out": str(tmp_path / "cascade"), "mode": "cascade", "steps": 2, "seed": 1, "device": "cpu",
            "model": {"name": "mspfn_tiny"}, "heads": {"detector": head}, "best_metric": "map50_95",
            "data": {"detection": str(data), "imgsz": 64, "val_split": 2, "batch": 2, "rain_preset": "light"},
            "loss": {"restoration": 1.0, "detection": 0.1}}
    result = train(base)
    assert 0.0 <= result["map50_95"] <= result["map50"] <= 1.0 and result["psnr_y"] > 10
    header = (tmp_path / "cascade" / "log.csv").read_text().splitlines()[0]
    assert header == "step,epoch,lr,loss,loss_restoration,loss_detection,val_psnr_y,val_map50_95,val_map50"
    joint = train({**base, "out": str(tmp_path / "joint"), "mode": "joint"})
    stages = load_train_checkpoint(tmp_path / "joint" / "last.pt")["train"]["stages"]
    assert set(stages) == {"detector"} and joint["step"] == 2
    assert isinstance(small().evaluator({0: "a", 1: "b", 2: "c"}), DetectionEvaluator)
    with pytest.raises(ConfigError, match=r"unknown key 'heads.detector.backbone' for head type 'torchvision'"):
        train({**base, "heads": {"detector": {**head, "backbone": "resnet18"}}})


def test_models_lists_the_head_types_and_loss_terms(capsys):
    from taskderain.cli import main

    assert main(["models", "--heads"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith("loss terms")}
    assert {"yolo", "smp", "torchvision", "restoration", "detection", "segmentation"} <= set(rows)
    assert "detection" in rows["torchvision"] and "min_size" in rows["torchvision"]
    assert {"detector_features", "detection_consistency", "targeted_restoration"} <= set(rows)  # the task terms
    assert {"cascade", "joint", "detector_on_rain", "segmenter"} <= set(rows)  # the training modes


def test_a_plain_coco_state_dict_loads_with_the_coco_label_map(tmp_path):
    """A state_dict of torchvision's 91-label COCO layout (as torchvision's own .pth files hold) maps
    its labels to the 80 data classes; one of our layout loads as is."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    coco = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(coco.state_dict(), tmp_path / "coco.pth")
    head = create_head("torchvision", arch=ARCH, weights=str(tmp_path / "coco.pth"), min_size=64, max_size=96)
    assert head.nc == 80 and head.labels[0] == 1 and head.labels[11] == 13  # COCO ids skip 12 ('N/A')
    mine = small()
    torch.save(mine.model.state_dict(), tmp_path / "mine.pth")
    again = create_head("torchvision", arch=ARCH, nc=3, weights=str(tmp_path / "mine.pth"), min_size=64, max_size=96)
    assert again.labels.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"does not fit fasterrcnn_mobilenet_v3_large_320_fpn with 5 classes"):
        create_head("torchvision", arch=ARCH, nc=5, weights=str(tmp_path / "mine.pth"))
