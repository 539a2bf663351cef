"""Pipeline: detections equal ultralytics' through the identity derainer, task losses train the
derainer only, predict's inputs, YAML configs, `taskderain run` and `taskderain demo`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from ultralytics.utils import ASSETS

from oracles import match_detections
from taskderain.cli import main
from taskderain.models import create_derainer
from taskderain.pipeline import ConfigError, Pipeline, load_config
from taskderain.stages import create_detector, create_segmenter

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def small_pipeline(segmenter: bool = False) -> Pipeline:
    torch.manual_seed(0)
    detector = create_detector(cfg="yolov8n.yaml", nc=3, imgsz=64).freeze()
    seg = create_segmenter("Unet", "resnet18", num_classes=3, encoder_depth=3,
                           decoder_channels=(32, 16, 8)) if segmenter else None
    if seg is not None:
        seg.freeze()
    return Pipeline(create_derainer("mspfn_tiny"), [detector, seg])


@pytest.mark.shared
def test_identity_pipeline_equals_yolo_predict(shared):
    from ultralytics import YOLO

    weights = shared / "weights" / "yolov8n_coco.pt"
    pipeline = Pipeline(create_derainer("identity"), create_detector(weights))
    results = pipeline.predict([ASSETS / "bus.jpg", ASSETS / "zidane.jpg"])
    reference = YOLO(str(weights))
    for result in results:
        ref = reference.predict(str(ASSETS / f"{result.name}.jpg"), verbose=False)[0].boxes
        box_diff, score_diff, matched = match_detections(result.detections, ref.xyxy, ref.conf, ref.cls.long(), 0.25)
        assert box_diff <= 1.0 and score_diff <= 0.01 and matched >= 3, (result.name, box_diff, score_diff)
        assert torch.equal(result.derained, result.rainy)


def _batch(h=64, w=64):
    images = torch.rand(2, 3, h, w)
    return images, {"batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[0.0], [2.0]]),
                    "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.6, 0.2, 0.3]]),
                    "semantic": torch.randint(0, 3, (2, h, w))}


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_one_step_on_a_task_loss_trains_only_the_derainer(task):
    pipeline = small_pipeline(segmenter=True).train()
    images, batch = _batch()
    frozen = {k: v.clone() for k, v in {**pipeline.detector.state_dict(), **pipeline.segmenter.state_dict()}.items()}
    before = {k: v.clone() for k, v in pipeline.derainer.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in pipeline.parameters() if p.requires_grad], lr=0.1)
    losses, derained = pipeline.losses(images, batch)
    assert set(losses) == {"detector", "segmenter"} and derained.shape == images.shape
    assert set(losses["detector"]) == {"box", "cls", "dfl"} and set(losses["segmenter"]) == {"dice", "ce"}
    sum(losses["detector" if task == "detection" else "segmenter"].values()).backward()
    optimiser.step()
    changed = [k for k, v in pipeline.derainer.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.5 * len(before)
    after = {**pipeline.detector.state_dict(), **pipeline.segmenter.state_dict()}
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # weights and BatchNorm statistics


def test_forward_outputs():
    pipeline = small_pipeline(segmenter=True).eval()
    out = pipeline(torch.rand(1, 3, 50, 70))
    assert out["derained"].shape == (1, 3, 50, 70) and out["segmenter"].shape == (1, 3, 50, 70)
    assert out["detector"].preds is not None


def test_predict_accepts_paths_arrays_pil_tensors(tmp_path):
    pipeline = small_pipeline(segmenter=True)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgb[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[:, :, 0])
    rgba = np.concatenate([rgb[:, :, ::-1], np.full((40, 56, 1), 9, np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    from_path = pipeline.predict(tmp_path / "a.png")[0]
    from_rgb = pipeline.predict(rgb, color="rgb")[0]
    from_bgr = pipeline.predict(rgb[:, :, ::-1].copy(), color="bgr")[0]
    from_pil = pipeline.predict(Image.fromarray(rgb))[0]
    from_tensor = pipeline.predict(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)[0]
    for other in (from_rgb, from_bgr, from_pil, from_tensor):
        assert torch.equal(other.derained, from_path.derained) and torch.equal(other.mask, from_path.mask)
    assert from_path.name == "a" and from_path.mask.shape == (40, 56)
    gray, rgba_result = pipeline.predict([tmp_path / "gray.png", tmp_path / "rgba.png"])
    assert gray.derained.shape == (3, 40, 56) and torch.equal(rgba_result.rainy, from_path.rainy)
    with pytest.raises(ValueError, match="color='rgb' or color='bgr'"):
        pipeline.predict(rgb)
    batched = pipeline.predict([rgb, rgb], color="rgb", batch=2)
    assert torch.allclose(batched[1].derained, from_rgb.derained, atol=1e-6)


@pytest.mark.parametrize("name", ["mspfn-yolov8n.yaml", "prenet-yolov8n.yaml", "mspfn-yolov8n-unet.yaml"])
def test_ready_pipelines_validate(name):
    config = load_config(REPO / "pipelines" / name, ["heads.detector.conf=0.4", "half=true"])
    assert config["heads"]["detector"]["conf"] == 0.4 and config["half"] is True
    assert config["heads"]["detector"]["type"] == "yolo"
    legacy = load_config(REPO / "pipelines" / name, ["detector.conf=0.3"])  # the pre-heads override form
    assert legacy["heads"]["detector"]["conf"] == 0.3 and legacy["heads"]["detector"]["weights"] == "yolov8n.pt"
    assert config["rain"]["preset"] == "heavy"


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("derainer:\n  name: identity\ndetector:\n  cfg: yolov8n.yaml\n  imgsz: big\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 'heads.detector.imgsz' must be int, got str 'big'"):
        load_config(bad)
    bad.write_text("derainer:\n  name: identity\nheads:\n  det: {type: yolo, cfg: yolov8n.yaml, confidence: 0.2}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'heads.det.confidence' for head type 'yolo'"):
        load_config(bad)
    bad.write_text("derainer:\n  name: identity\nheads:\n  det: {type: yollo}\n")
    with pytest.raises(ConfigError, match=r"'heads.det.type': unknown head type 'yollo'; available: .*smp.*yolo"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"'heads.detector.conf' must be in \[0, 1\], got 1.5"):
        load_config(None, ["detector.cfg=yolov8n.yaml", "detector.conf=1.5"])
    bad.write_text("derainer:\n  name: identity\n  weigths: x.pt\n")
    with pytest.raises(ConfigError, match=r"unknown key 'derainer.weigths'"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"unknown key 'colour'"):
        load_config(None, ["colour=red"])
    with pytest.raises(ConfigError, match="'half' must be bool"):
        load_config(None, ["half=3"])
    assert load_config(None, ["detector.cfg=yolov8n.yaml", "detector.conf=1e-1"])["heads"]["detector"]["conf"] == 0.1
    assert load_config(REPO / "pipelines" / "mspfn-yolov8n-unet.yaml", ["segmenter=null"])["heads"].keys() == {"detector"}


def test_missing_detector_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere/yolo\.pt"):
        Pipeline.from_config(load_config(None, [f"detector.weights={tmp_path}/nowhere/yolo.pt"]))


def test_run_cli_writes_every_output_and_reports_bad_files(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "g.png"), rng.integers(0, 256, (30, 30), dtype=np.uint8))
    (folder / "bad.png").write_bytes(b"garbage")
    config = tmp_path / "p.yaml"
    config.write_text("derainer: {name: mspfn_tiny}\ndetector: {cfg: yolov8n.yaml, nc: 3, imgsz: 64, conf: 0.0001, "
                      "max_det: 5}\nsegmenter: {arch: Unet, encoder: resnet18, num_classes: 4}\ndevice: cpu\n")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="random weights"):
        rc = main(["run", str(config), str(folder), "--out", str(out), "segmenter.encoder=resnet18"])
    assert rc == 1 and "bad.png" in capsys.readouterr().err
    for sub in ("derained", "annotated", "masks"):
        assert sorted(p.stem for p in (out / sub).iterdir()) == ["a", "b", "g"]
    mask = cv2.imread(str(out / "masks" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (48, 64) and mask.max() < 4
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and {"image_id", "category_id", "bbox", "score"} <= set(rows[0])
    assert {r["image_id"] for r in rows} == {"a", "b", "g"}


@pytest.mark.shared
def test_demo_end_to_end(shared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TASKDERAIN_SHARED", str(shared))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--size", "256"]) == 0
    out = capsys.readouterr().out
    assert "derainer: mspfn_lite" in out and "yolov8n_coco.pt" in out and "derained (mspfn_lite)" in out
    assert (tmp_path / "demo" / "demo_panel.png").exists()
    rows = json.loads((tmp_path / "demo" / "demo.json").read_text())["rows"]
    assert len(rows) == 6 and all(r["detections"] is not None for r in rows)
    for image in ("bus.jpg", "zidane.jpg"):
        rainy, derained = [r["psnr_y"] for r in rows if r["image"] == image][1:]
        assert derained > rainy + 5  # the shipped MSPFN-lite removes most of the medium rain


def test_demo_without_shared_uses_the_shipped_derainer_and_says_how_to_add_a_detector(tmp_path, capsys,
                                                                                          monkeypatch):
    monkeypatch.setenv("TASKDERAIN_SHARED", "")
    monkeypatch.delenv("TASKDERAIN_YOLO", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--size", "128"]) == 0
    captured = capsys.readouterr()
    assert "derainer: mspfn_lite" in captured.out and "--yolo PATH or TASKDERAIN_YOLO" in captured.err
    assert (tmp_path / "demo" / "derained" / "bus.png").exists()
    rows = json.loads((tmp_path / "demo" / "demo.json").read_text())["rows"]
    rainy, derained = [r["psnr_y"] for r in rows if r["image"] == "bus.jpg"][1:]
    assert derained > rainy + 3
    assert main(["demo", "--out", str(tmp_path / "heavy"), "--size", "128", "--preset", "heavy"]) == 0
    assert "weights='allweather' shipped with taskderain for heavy rain" in capsys.readouterr().out
    heavy = json.loads((tmp_path / "heavy" / "demo.json").read_text())
    assert heavy["weights"] == "allweather"
    for image in ("bus.jpg", "zidane.jpg"):  # heavy streaks: the all-weather weights win back > 5 dB
        rainy, derained = [r["psnr_y"] for r in heavy["rows"] if r["image"] == image][1:]
        assert derained > rainy + 5
