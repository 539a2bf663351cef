"""Task-driven training modes (cascade, joint, detector_on_rain) on a tiny synthetic YOLO dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskderain.config import ConfigError
from taskderain.train import Trainer, load_train_checkpoint, load_train_config, train

from training_setup import write_yolo_data


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory) -> Path:
    return write_yolo_data(tmp_path_factory.mktemp("yolo"))


def config(data: Path, out: Path, mode: str = "cascade", **top) -> dict:
    c = {"mode": mode, "out": str(out), "steps": 2, "seed": 1, "device": "cpu", "model": {"name": "mspfn_tiny"},
         "data": {"detection": str(data), "imgsz": 64, "val_split": 2, "batch": 2, "rain_preset": "light"},
         "detector": {"cfg": "yolov8n.yaml", "nc": 3}}
    c.update(top)
    return c


def _det_state(trainer: Trainer) -> dict:
    return {k: v.clone() for k, v in trainer.pipeline.detector.state_dict().items()}


def _changed(before: dict, after: dict) -> set:
    return {k for k in before if not torch.equal(before[k], after[k])}


# -- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, overrides, match", [
    ({"mode": "cascade", "steps": 1, "detector": {"cfg": "yolov8n.yaml"}}, [], r"'data.detection' .* required"),
    (None, ["data.imgsz=50"], r"'data.imgsz' must be a positive multiple of 32"),
    (None, ["data.images=x"], r"'data.images' is for mode 'restoration'"),
    (None, ["detector.cfg=null"], r"'heads.detector' needs 'weights' \(a YOLO checkpoint\) or 'cfg'"),
    (None, ["loss.detection=-1"], r"'loss.detection' weight must be a number >= 0"),
    (None, ["loss.detektion=1"], r"unknown key 'loss.detektion'"),
    (None, ["optim.lr_detector=0"], r"'optim.lr_detector' must be > 0"),
    (None, ["best_metric=miou"], r"'best_metric' 'miou' needs a segmenter"),
    (None, ["segmenter.arch=Unet", "segmenter.num_classes=3"], r"'data.masks' .* required"),
    (None, ["mode=detector_on_rain", "best_metric=psnr_y"], r"'best_metric' 'psnr_y' needs a derainer"),
    (None, ["data.clean_prob=2"], r"'data.clean_prob' must be a probability"),
])
def test_task_config_errors_name_the_key(yolo_data, tmp_path, raw, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_train_config(raw if raw is not None else config(yolo_data, tmp_path / "r"), overrides)


def test_restoration_rejects_task_metric(tmp_path):
    with pytest.raises(ConfigError, match=r"'best_metric' mode 'restoration' validates psnr_y only"):
        load_train_config({"steps": 1, "data": {"images": "x"}, "best_metric": "map50"})


def test_detector_class_count_must_match_data(yolo_data, tmp_path):
    with pytest.raises(ConfigError, match=r"'heads.detector' detects 5 classes .* has 3"):
        Trainer(load_train_config(config(yolo_data, tmp_path / "r"), ["detector.nc=5"]))


# -- modes -----------------------------------------------------------------------------------------
def test_cascade_trains_derainer_only_and_validates(yolo_data, tmp_path):
    trainer = Trainer(load_train_config(config(yolo_data, tmp_path / "run")))
    assert trainer.pipeline.detector.frozen and not trainer.pipeline.detector.training
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["derainer"]
    det0 = _det_state(trainer)
    der0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert result["step"] == 2 and result["epoch"] == 1
    assert _changed(der0, trainer.model.state_dict())
    assert not _changed(det0, trainer.pipeline.detector.state_dict())  # weights and BN buffers alike
    for key in ("psnr_y", "map50_95", "map50", "best_psnr_y"):
        assert key in result
    assert 0.0 <= result["map50_95"] <= result["map50"] <= 1.0 and result["psnr_y"] > 10
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,lr,loss,loss_restoration,loss_detection,val_psnr_y,val_map50_95,val_map50"
    step_row = rows[1].split(",")  # every term logged unweighted; the total is their weighted sum
    loss, restoration, detection = (float(v) for v in step_row[3:6])
    assert restoration > 0 and detection > 0 and loss == pytest.approx(restoration + 0.01 * detection, rel=1e-5)
    assert rows[-1].split(",")[6] != "" and len(rows) == 4  # 2 steps, 1 validation
    ckpt = load_train_checkpoint(result["last"])
    assert ckpt["train"]["stages"] == {}  # frozen detector not stored


def test_joint_trains_every_stage_with_its_lr(yolo_data, tmp_path):
    trainer = Trainer(load_train_config(config(yolo_data, tmp_path / "run", mode="joint"),
                                        ["optim.lr=1e-3", "optim.lr_detector=2e-5", "optim.min_lr=0",
                                         "best_metric=map50"]))
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert set(groups) == {"derainer", "detector"}
    assert trainer.pipeline.detector.training and not trainer.pipeline.detector.frozen
    det0, der0 = _det_state(trainer), {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert groups["derainer"]["lr"] == pytest.approx(1e-3 * 0.8 ** (1 / 20000))  # lr of the last step
    assert groups["detector"]["lr"] == pytest.approx(2e-5 * 0.8 ** (1 / 20000))
    changed = _changed(det0, trainer.pipeline.detector.state_dict())
    assert any(k.endswith(".weight") for k in changed) and any(k.endswith("running_mean") for k in changed)
    assert _changed(der0, trainer.model.state_dict())
    assert "best_map50" in result
    stages = load_train_checkpoint(result["last"])["train"]["stages"]
    assert set(stages) == {"detector"}
    assert all(torch.equal(stages["detector"][k], v) for k, v in trainer.pipeline.detector.state_dict().items())


def test_joint_freeze_bn_trains_weights_and_keeps_batchnorm_statistics(yolo_data, tmp_path):
    trainer = Trainer(load_train_config(config(yolo_data, tmp_path / "run", mode="joint", freeze_bn=True)))
    detector = trainer.pipeline.detector
    det0 = _det_state(trainer)
    trainer.fit()
    changed = _changed(det0, detector.state_dict())
    assert any(k.endswith(".weight") for k in changed)  # convolutions and BN affine parameters learn
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)
    detector.train()  # what the loop calls every epoch: the stage trains, its BatchNorm layers do not
    norms = [m for m in detector.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert detector.training and norms and not any(m.training for m in norms)
    with pytest.raises(Exception, match=r"'freeze_bn' differs"):  # a resume keeps the setting
        Trainer(load_train_config(config(yolo_data, tmp_path / "run", mode="joint", resume=True))).fit()


def test_detector_on_rain_trains_detector_only(yolo_data, tmp_path):
    trainer = Trainer(load_train_config(config(yolo_data, tmp_path / "run", mode="detector_on_rain",
                                               best_metric="map50_95")))
    assert trainer.model.arch == "identity"
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["detector"]
    det0 = _det_state(trainer)
    result = trainer.fit()
    assert _changed(det0, trainer.pipeline.detector.state_dict())
    assert "psnr_y" not in result and {"map50_95", "map50", "best_map50_95"} <= set(result)
    assert (tmp_path / "run" / "log.csv").read_text().splitlines()[0] == "step,epoch,lr,loss,loss_detection,val_map50_95,val_map50"


def test_cascade_with_segmenter_reports_miou(yolo_data, tmp_path):
    root = yolo_data.parent
    c = config(yolo_data, tmp_path / "run", mode="joint", best_metric="miou", steps=1)
    c["data"].update(masks=str(root / "masks"), class_map=str(root / "classes.yaml"))
    c["segmenter"] = {"arch": "Unet", "encoder": "resnet18", "num_classes": 3}
    trainer = Trainer(load_train_config(c, ["loss.segmentation=1.0"]))
    assert {g["name"] for g in trainer.optimizer.param_groups} == {"derainer", "detector", "segmenter"}
    seg0 = {k: v.clone() for k, v in trainer.pipeline.segmenter.state_dict().items()}
    result = trainer.fit()
    assert 0.0 <= result["miou"] <= 1.0 and "best_miou" in result
    assert _changed(seg0, trainer.pipeline.segmenter.state_dict())
    assert set(load_train_checkpoint(result["last"])["train"]["stages"]) == {"detector", "segmenter"}
    # the trained stages come back as a pipeline and as stand-alone files that reproduce it
    from taskderain.models import load_derainer
    from taskderain.stages import create_detector, load_segmenter
    from taskderain.train import export_stages, load_trained_pipeline

    pipe = load_trained_pipeline(result["last"])
    x = torch.rand(1, 3, 64, 64)
    trained = trainer.pipeline.eval()
    with torch.no_grad():
        assert torch.equal(pipe.segmenter(x), trained.segmenter(x))
        assert torch.equal(pipe.derainer(x), trained.derainer(x))
    files = export_stages(result["last"], tmp_path / "export", half=False)
    assert set(files) == {"derainer", "detector", "segmenter"}
    detector = create_detector(weights=files["detector"], imgsz=64)
    with torch.no_grad():
        torch.testing.assert_close(detector.eval()(x).preds, trained.detector(x).preds)
        torch.testing.assert_close(load_segmenter(files["segmenter"]).eval()(x), trained.segmenter(x))
        torch.testing.assert_close(load_derainer(files["derainer"]).eval()(x), trained.derainer(x))
    from ultralytics import YOLO

    assert len(YOLO(str(files["detector"])).names) == 3  # a real ultralytics checkpoint


def test_joint_resume_equals_uninterrupted(yolo_data, tmp_path):
    """2 steps per epoch: stop after 3 (mid epoch 1, last.pt saved every step), resume to 4 == 4 straight."""
    ref = train(config(yolo_data, tmp_path / "ref", mode="joint", steps=4, best_metric="map50"))
    part = config(yolo_data, tmp_path / "cut", mode="joint", steps=3, best_metric="map50", save_every=1)
    train(part)
    assert load_train_checkpoint(tmp_path / "cut" / "last.pt")["train"]["step"] == 3
    resumed = train({**part, "steps": 4, "resume": True})
    assert resumed["step"] == ref["step"] == 4
    a, b = (load_train_checkpoint(tmp_path / r / "last.pt") for r in ("ref", "cut"))
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    da, db = a["train"]["stages"]["detector"], b["train"]["stages"]["detector"]
    for key in da:
        assert torch.equal(da[key], db[key]), key
    assert resumed["map50"] == ref["map50"]


def test_validation_maps_boxes_to_original_pixels(yolo_data, tmp_path, monkeypatch):
    """A detector that returns the ground truth on its canvas scores mAP 1: the evaluator's geometry
    (ultralytics' validator letterbox) and its mapping back to original pixels are right."""
    from taskderain.stages.results import Detections
    from taskderain.train.tasks import task_evaluation, validate_task

    trainer = Trainer(load_train_config(config(yolo_data, tmp_path / "run"), ["data.imgsz=32"]))
    task, detector = trainer.task.data, trainer.pipeline.detector
    geometries = task_evaluation(trainer.pipeline, task, None).geometries()
    truth = iter([(task.val.dataset[i], geometries[i]) for i in task.val_indices])

    def predict(images, **kwargs):
        # as ultralytics' validator: load-independent multi-label NMS, on the canvas it was given
        assert kwargs == {"multi_label": True, "time_limit": False, "letterboxed": True}
        sample, g = next(truth)
        assert tuple(images.shape[-2:]) == g.canvas
        (gain_h, gain_w), (left, top) = g.ratio_pad
        h0, w0 = g.orig_shape
        xywh = torch.as_tensor(sample["bboxes"]) * torch.tensor([w0 * gain_w, h0 * gain_h, w0 * gain_w, h0 * gain_h])
        xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1) + torch.tensor(
            [left, top, left, top])
        return [Detections(xyxy, torch.ones(len(xyxy)), torch.as_tensor(sample["cls"]).long(), detector.names)]

    monkeypatch.setattr(detector, "predict", predict)
    metrics = validate_task(trainer.pipeline, task, None)
    assert metrics["map50_95"] == pytest.approx(1.0) and metrics["map50"] == pytest.approx(1.0)


def test_segmenter_mode_trains_segmenter_on_clean_images(yolo_data, tmp_path):
    root = yolo_data.parent
    c = config(yolo_data, tmp_path / "run", mode="segmenter", best_metric="miou", detector={})
    c["data"].update(masks=str(root / "masks"), class_map=str(root / "classes.yaml"))
    c["segmenter"] = {"arch": "Unet", "encoder": "resnet18", "num_classes": 3}
    trainer = Trainer(load_train_config(c))
    assert trainer.pipeline.detector is None and trainer.model.arch == "identity"
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["segmenter"]
    sample = trainer.train_set[0]
    assert np.array_equal(sample["image"], sample["clean"])  # no rain in this mode
    seg0 = {k: v.clone() for k, v in trainer.pipeline.segmenter.state_dict().items()}
    result = trainer.fit()
    assert _changed(seg0, trainer.pipeline.segmenter.state_dict())
    assert set(result) >= {"miou", "best_miou"} and "map50" not in result
    assert (tmp_path / "run" / "log.csv").read_text().splitlines()[0] == "step,epoch,lr,loss,loss_segmentation,val_miou"
    with pytest.raises(ConfigError, match=r"'heads.detector' \(a detection head\) is not used in mode 'segmenter'"):
        load_train_config(c, ["detector.cfg=yolov8n.yaml"])


def test_task_resume_checks_stage_settings(yolo_data, tmp_path):
    out = tmp_path / "run"
    train(config(yolo_data, out, mode="detector_on_rain", steps=1, best_metric="map50"))
    with pytest.raises(Exception, match=r"'loss.detection' differs"):
        train(config(yolo_data, out, mode="detector_on_rain", steps=2, best_metric="map50", resume=True),
              ["loss.detection=0.5"])
    result = train(config(yolo_data, out, mode="detector_on_rain", steps=2, best_metric="map50", resume=True))
    assert result["step"] == 2


def test_a_runs_config_yaml_works_with_run_and_eval(yolo_data, tmp_path, capsys):
    """`taskderain run` / `eval` take the config.yaml a joint run wrote, as it is: the run's derainer
    checkpoint and its trained detector (exported once beside the run), its rain for eval."""
    from taskderain.cli import main
    from taskderain.train import load_trained_pipeline
    from taskderain.train.export import run_pipeline_config

    train(config(yolo_data, tmp_path / "run", mode="joint", steps=2, best_metric="map50"))
    run_yaml = tmp_path / "run" / "config.yaml"
    spec = run_pipeline_config(run_yaml)
    assert spec["derainer"]["weights"] == str(tmp_path / "run" / "best.pt")
    assert spec["heads"]["detector"]["weights"] == str(tmp_path / "run" / "stages-best" / "detector.pt")
    assert spec["rain"] == {"preset": "light", "intensity": None, "seed": 0}
    images = yolo_data.parent / "images" / "train"
    assert main(["run", str(run_yaml), str(images / "im0.png"), "--out", str(tmp_path / "out"),
                 "heads.detector.conf=0.001", "heads.detector.imgsz=64"]) == 0
    import json

    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    trained = load_trained_pipeline(tmp_path / "run" / "best.pt")
    trained.detector.conf, trained.detector.imgsz = 0.001, (64, 64)
    expected = trained.predict(images / "im0.png")[0].detections
    assert len(rows) == len(expected) > 0  # the trained detector's boxes, not the start weights'
    assert abs(max(r["score"] for r in rows) - float(expected.scores.max())) < 1e-3
    assert main(["eval", str(run_yaml), "--data", str(yolo_data), "--imgsz", "64", "--out", str(tmp_path / "eval"),
                 "--quiet", "--samples", "0"]) == 0
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {r["condition"] for r in result["records"]} == {"clean", "light"}
    assert {r["derainer"] for r in result["records"]} >= {"identity", "mspfn_tiny"}
