"""Detector (ultralytics YOLO): tensor letterbox, predict == YOLO.predict, loss, freezing, offline errors."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from torch import nn

from taskderain.imageio import read_rgb
from taskderain.inference import to_tensor
from taskderain.stages import Detections, Detector, WeightsNotFoundError, create_detector
from taskderain.stages import detector as detector_module
from taskderain.stages.letterbox import PAD_VALUE, letterbox_tensor
from oracles import match_detections  # noqa: E402  (tests/ helper module)

ultralytics = pytest.importorskip("ultralytics")
from ultralytics.utils import ASSETS  # noqa: E402

IMAGES = ("bus.jpg", "zidane.jpg")


def small_detector(nc: int = 3, imgsz: int = 128, **kwargs) -> Detector:
    return create_detector(cfg="yolov8n.yaml", nc=nc, imgsz=imgsz, **kwargs)


def calibrated_random_detector(images, imgsz: int) -> Detector:
    """A seeded yolov8n.yaml whose BatchNorm statistics fit ``images`` and whose class scores spread
    over (0, 1) — untrained models otherwise score every box ~1e-5, far below any threshold."""
    torch.manual_seed(0)
    det = small_detector(nc=3, imgsz=imgsz)
    for module in det.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration images
    with torch.no_grad():
        for image in images:
            det(image)
        for branch in det.model.model[-1].cv3:
            branch[-1].weight.mul_(0.3)
            branch[-1].bias.fill_(-1.5)
    return det.freeze()


def batch_of(boxes, classes, image_index):
    return {"batch_idx": torch.tensor(image_index, dtype=torch.float32),
            "cls": torch.tensor(classes, dtype=torch.float32).view(-1, 1),
            "bboxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4)}


BATCH = batch_of([[0.5, 0.5, 0.3, 0.4], [0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.3]], [0, 1, 2], [0, 1, 1])


def bn_buffers(module: nn.Module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


# --- letterbox --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("imgsz", [320, 640])
def test_tensor_letterbox_matches_ultralytics(name, imgsz):
    from ultralytics.data.augment import LetterBox

    rgb = read_rgb(ASSETS / name)
    reference = LetterBox(imgsz, auto=True, stride=32)(image=rgb)  # the predictor's geometry for .pt models
    ours, params = letterbox_tensor(to_tensor(rgb), imgsz, stride=32)
    assert ours.shape[-2:] == reference.shape[:2] == params.new_shape
    diff = (ours[0].permute(1, 2, 0) * 255 - torch.from_numpy(reference).float()).abs()
    assert diff.max() < 1.0  # only cv2's uint8 rounding differs
    assert diff.mean() < 0.3


def test_letterbox_pads_grey_and_keeps_gradients():
    x = torch.rand(1, 3, 40, 100, requires_grad=True)
    out, params = letterbox_tensor(x, 128, stride=32)
    assert out.shape[-2:] == (64, 128) and params.resized == (128, 51)
    assert params.top + params.bottom == 13
    torch.testing.assert_close(out[..., :params.top, :], torch.full_like(out[..., :params.top, :], PAD_VALUE))
    out.sum().backward()
    assert x.grad.abs().sum() > 0


# --- predict == YOLO.predict (matching in tests/oracles.py) ------------------------------------
@pytest.mark.shared
def test_predict_matches_yolo_predict_pretrained(shared):
    weights = shared / "weights" / "yolov8n_coco.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} is absent")
    from ultralytics import YOLO

    det = create_detector(weights).freeze()
    reference = YOLO(str(weights))  # its predictor fuses its own copy
    counts = {}
    for name in IMAGES:
        ours = det.predict(to_tensor(read_rgb(ASSETS / name)))[0]
        ref = reference.predict(str(ASSETS / name), verbose=False)[0].boxes
        box_diff, score_diff, matched = match_detections(ours, ref.xyxy, ref.conf, ref.cls.long(), 0.25)
        assert box_diff <= 1.0 and score_diff <= 0.01, (name, box_diff, score_diff)
        counts[name] = matched
    assert counts["bus.jpg"] >= 5 and counts["zidane.jpg"] >= 3  # bus + 4 persons; 2 persons + tie


@pytest.mark.parametrize("name,crop", [("bus.jpg", (slice(300, 550), slice(200, 520))),
                                       ("zidane.jpg", (slice(100, 300), slice(500, 820)))])
def test_predict_matches_yolo_predict_random_model(name, crop):
    """Without ../shared: a seeded model on crops whose long side is imgsz (no resize, so no
    uint8 resampling noise an untrained model would amplify) — the padding, model, NMS and
    box mapping must then agree with ultralytics' predictor detection for detection."""
    from ultralytics import YOLO

    rgb = np.ascontiguousarray(read_rgb(ASSETS / name)[crop])
    x = to_tensor(rgb)
    det = calibrated_random_detector([x], imgsz=320)
    reference = YOLO("yolov8n.yaml")
    reference.model = copy.deepcopy(det.model)
    ref = reference.predict(np.ascontiguousarray(rgb[:, :, ::-1]), imgsz=320, conf=0.1, max_det=20,
                            verbose=False)[0].boxes
    ours = det.predict(x, conf=0.1, max_det=20)[0]
    assert len(ref) == len(ours) == 20
    torch.testing.assert_close(ours.boxes, ref.xyxy, atol=0.1, rtol=0)
    torch.testing.assert_close(ours.scores, ref.conf, atol=1e-3, rtol=0)
    assert torch.equal(ours.classes, ref.cls.long())


@pytest.mark.parametrize("size", [(1, 1), (37, 101), (101, 37)])
def test_predict_any_size_boxes_inside_the_image(size):
    det = calibrated_random_detector([torch.rand(1, 3, 64, 64)], imgsz=128)
    out = det(torch.rand(2, 3, *size))
    assert out.letterbox.new_shape[0] % 32 == 0 and out.letterbox.new_shape[1] % 32 == 0
    assert out.preds.shape[:2] == (2, 4 + 3)
    results = det.predict(torch.rand(2, 3, *size), conf=0.0, max_det=7)
    assert len(results) == 2
    for result in results:
        assert len(result) == 7 and result.boxes.dtype == torch.float32 and result.classes.dtype == torch.long
        assert (result.boxes[:, [0, 2]] <= size[1]).all() and (result.boxes[:, [1, 3]] <= size[0]).all()
        assert (result.boxes >= 0).all() and (result.boxes[:, 2:] >= result.boxes[:, :2]).all()


def test_predict_keeps_mode_and_rejects_uint8():
    det = small_detector()
    assert det.training
    det.predict(torch.rand(1, 3, 64, 64))
    assert det.training and det.model.training
    with pytest.raises(TypeError, match=r"images.float\(\) / 255"):
        det.predict(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# --- loss -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_loss_reaches_the_input(mode):
    det = small_detector()
    det.train(mode == "train")
    x = torch.rand(2, 3, 96, 128, requires_grad=True)
    loss, items = det.ultralytics_loss(x, BATCH)
    assert loss.shape == (3,) and torch.isfinite(loss).all() and (loss > 0).all()
    assert set(items) == {"box_loss", "cls_loss", "dfl_loss"}
    torch.testing.assert_close(torch.stack(list(items.values())) * 2, loss.detach())  # × batch size
    loss.sum().backward()
    assert x.grad.abs().sum() > 0
    terms = det.loss(x.detach(), BATCH)  # the TaskHead form: ultralytics' terms per image
    assert set(terms) == {"box", "cls", "dfl"}
    torch.testing.assert_close(torch.stack([terms["box"], terms["cls"], terms["dfl"]]), loss.detach() / 2)


def test_loss_pads_odd_sizes_and_rescales_boxes():
    det = small_detector().eval()
    x = torch.rand(2, 3, 100, 90)
    padded = torch.full((2, 3, 128, 96), PAD_VALUE)
    padded[..., :100, :90] = x
    scaled = dict(BATCH, bboxes=BATCH["bboxes"] * torch.tensor([90 / 96, 100 / 128, 90 / 96, 100 / 128]))
    torch.testing.assert_close(det.ultralytics_loss(x, BATCH)[0], det.ultralytics_loss(padded, scaled)[0])
    assert not torch.allclose(det.ultralytics_loss(x, BATCH)[0], det.ultralytics_loss(padded, BATCH)[0])  # boxes do matter


def test_eval_mode_keeps_batchnorm_statistics_train_mode_does_not():
    det = small_detector().eval()
    before = bn_buffers(det)
    det.ultralytics_loss(torch.rand(2, 3, 64, 64), BATCH)[0].sum().backward()
    assert all(torch.equal(v, bn_buffers(det)[k]) for k, v in before.items())
    det.train()
    det.ultralytics_loss(torch.rand(2, 3, 64, 64), BATCH)
    assert any(not torch.equal(v, bn_buffers(det)[k]) for k, v in before.items())


def test_loss_after_predict_at_the_same_size():
    """predict runs under inference_mode; its cached anchors must not break a later loss."""
    det = small_detector().freeze()
    x = torch.rand(2, 3, 128, 128, requires_grad=True)
    det.predict(x)
    det.ultralytics_loss(x, BATCH)[0].sum().backward()
    assert x.grad.abs().sum() > 0


def test_frozen_detector_trains_only_the_preprocessor():
    det = small_detector().freeze()
    det.train()  # a Pipeline's .train() must not unfreeze BatchNorm
    assert not det.training and not det.model.training
    pre = nn.Conv2d(3, 3, 3, padding=1)
    params = {k: v.clone() for k, v in det.state_dict().items()}
    pre_before = pre.weight.detach().clone()
    optimiser = torch.optim.SGD(pre.parameters(), lr=0.1)
    loss, _ = det.ultralytics_loss(pre(torch.rand(2, 3, 64, 96)), BATCH)
    loss.sum().backward()
    assert all(p.grad is None for p in det.parameters())
    optimiser.step()
    assert not torch.equal(pre.weight, pre_before)
    assert all(torch.equal(v, det.state_dict()[k]) for k, v in params.items())
    det.unfreeze().train()
    assert det.training and det.model.training and det.model.model[0].conv.weight.requires_grad


# --- factory and errors -----------------------------------------------------------------------
def test_yaml_detector_attributes():
    with pytest.warns(UserWarning, match="imgsz 100 is not a multiple of the stride 32: using 128"):
        det = small_detector(nc=5, names=["a", "b", "c", "d", "e"], imgsz=100)
    assert det.nc == 5 and det.stride == 32 and det.imgsz == (128, 128)
    assert det.names == {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}
    assert hasattr(det.model.args, "box") and det.model.args.box == 7.5  # ultralytics' default gains
    assert all(p.requires_grad for n, p in det.named_parameters() if ".dfl." not in n)  # DFL is fixed by design


def test_missing_checkpoint_path_fails_at_once_with_directions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        create_detector(tmp_path / "nope" / "yolov8n.pt")
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert str(tmp_path / "nope" / "yolov8n.pt") in message
    assert "https://github.com/ultralytics/assets/releases" in message and "TASKDERAIN_YOLO" in message
    assert isinstance(info.value, FileNotFoundError)


def test_official_name_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(detector_module, "host_reachable", lambda host, port=443: False)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match=r"'yolov8x-oiv7.pt' not found.*github.com is unreachable"):
        create_detector("yolov8x-oiv7.pt")
    assert time.perf_counter() - start < 2
    assert not (tmp_path / "yolov8x-oiv7.pt").exists()


def test_default_weights_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TASKDERAIN_YOLO", str(tmp_path / "from_env.pt"))
    with pytest.raises(WeightsNotFoundError, match="from_env.pt"):
        create_detector()
    monkeypatch.delenv("TASKDERAIN_YOLO")
    with pytest.raises(ValueError, match="TASKDERAIN_YOLO"):
        create_detector()


def test_checkpoint_roundtrip_through_ultralytics_format(tmp_path):
    """A local ultralytics checkpoint loads unfused, in eval mode, with the same outputs."""
    det = small_detector(nc=2).eval()
    torch.save({"model": copy.deepcopy(det.model).half(), "train_args": {}}, tmp_path / "tiny.pt")
    loaded = create_detector(tmp_path / "tiny.pt", imgsz=128)
    assert not loaded.training and not loaded.model.is_fused()
    assert any(m.bias is None for m in loaded.modules() if isinstance(m, nn.Conv2d))  # BN not folded
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).preds, det.half().float()(x).preds, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="detects 2 classes, not nc=3"):
        create_detector(tmp_path / "tiny.pt", nc=3)


def test_detections_to_coco_rows():
    dets = Detections(torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 5.5, 5.25]]), torch.tensor([0.9, 0.123456]),
                      torch.tensor([0, 2]), {0: "person", 2: "car"})
    assert len(dets) == 2
    assert dets.to_coco(7) == [
        {"image_id": 7, "category_id": 0, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9},
        {"image_id": 7, "category_id": 2, "bbox": [0.0, 0.0, 5.5, 5.25], "score": 0.12346}]
    rows = dets.to_coco("a", category_ids={0: 1, 2: 3})
    assert [r["category_id"] for r in rows] == [1, 3] and rows[0]["image_id"] == "a"
    assert Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)).to_coco(1) == []


def test_metrics_lift_the_nms_time_budget(monkeypatch):
    """ultralytics' NMS returns what it has after max_time_img·B + 2 s: a loaded machine would drop
    detections, so metric callers pass time_limit=False; predictions keep the budget."""
    import math

    import ultralytics.utils.nms as nms

    seen = []
    real = nms.non_max_suppression

    def spy(*args, **kwargs):
        seen.append((kwargs["max_time_img"], kwargs["multi_label"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(nms, "non_max_suppression", spy)
    det = small_detector(imgsz=64)
    x = torch.rand(2, 3, 64, 64)
    det.predict(x)
    det.predict(x, multi_label=True, time_limit=False)
    assert seen == [(0.05, False), (math.inf, True)]
    from taskderain.evaluation.geometry import plan_geometries
    from taskderain.evaluation.tasks import detect_uint8

    image = (x[0].permute(1, 2, 0) * 255).byte().numpy()
    detect_uint8(det, image, plan_geometries([image.shape[:2]], 64)[0])
    assert seen[-1] == (math.inf, True)


def test_features_are_the_neck_outputs_and_carry_gradients():
    det = small_detector().freeze()
    assert det.feature_layers() == [15, 18, 21]  # YOLOv8's P3, P4, P5: what Detect reads
    x = torch.rand(2, 3, 64, 96, requires_grad=True)
    feats = det.features(x)
    assert [tuple(f.shape[-2:]) for f in feats] == [(8, 12), (4, 6), (2, 3)]  # strides 8, 16, 32
    sum(f.abs().mean() for f in feats).backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in det.parameters())  # frozen: input grads only
    one = det.features(x.detach(), layers=[4])
    assert len(one) == 1 and one[0].shape[-2:] == (8, 12)
    with pytest.raises(ValueError, match=r"outside the model's layers 0..21"):
        det.features(x, layers=[22])
