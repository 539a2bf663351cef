"""Detection / segmentation datasets, label checks, letterbox (ultralytics oracle) and collate."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch

from taskderain.data.batching import Letterbox, collate_batch
from taskderain.data.detection import CocoDetectionDataset, YoloDetectionDataset, load_data_yaml
from taskderain.data.labels import LabelError, label_path_for, read_yolo_labels
from taskderain.data.letterbox import letterbox_boxes, letterbox_params, unletterbox_xyxy
from taskderain.data.segmentation import MaskSegmentationDataset, class_map_from_yaml


def make_yolo(tmp_path, labels: dict, sizes=None, nc=3):
    """A tiny YOLO dataset: images/val/*.png, labels/val/*.txt, data.yaml; returns the yaml path."""
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    for name, text in labels.items():
        h, w = (sizes or {}).get(name, (40, 60))
        cv2.imwrite(str(tmp_path / "images" / "val" / f"{name}.png"), np.full((h, w, 3), 100, np.uint8))
        if text is not None:
            (tmp_path / "labels" / "val" / f"{name}.txt").write_text(text)
    yaml_path = tmp_path / "data.yaml"
    names = "\n".join(f"  {i}: c{i}" for i in range(nc))
    yaml_path.write_text(f"path: .\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    return yaml_path


@pytest.mark.parametrize("shape,new,scaleup", [((480, 640), 320, True), ((321, 481), 320, True),
                                               ((100, 37), 64, True), ((50, 60), 640, False), ((1, 300), 320, True)])
def test_letterbox_matches_ultralytics(shape, new, scaleup, rng):
    from ultralytics.data.augment import LetterBox

    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    theirs = LetterBox(new_shape=(new, new), auto=False, scaleup=scaleup)(image=image.copy())
    ours = Letterbox(new, scaleup=scaleup)({"image": image, "bboxes": np.zeros((0, 4), np.float32)})["image"]
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_boxes_survive_letterbox_and_back():
    params = letterbox_params((480, 640), 320)
    xywhn = np.array([[0.5, 0.5, 0.25, 0.5], [0.1, 0.9, 0.2, 0.2]], np.float32)
    boxed = letterbox_boxes(xywhn, params)
    pix = boxed.copy()
    pix[:, [0, 2]] *= 320
    pix[:, [1, 3]] *= 320
    xyxy = np.concatenate([pix[:, :2] - pix[:, 2:] / 2, pix[:, :2] + pix[:, 2:] / 2], 1)
    back = unletterbox_xyxy(xyxy, params)
    expected = np.array([[240, 120, 400, 360], [0, 384, 128, 480]], np.float32)
    assert np.allclose(back, expected, atol=1e-3)


def test_yolo_dataset_reports_every_label_problem(tmp_path, caplog):
    yaml_path = make_yolo(tmp_path, {
        "good": "0 0.5 0.5 0.2 0.2\n",
        "badclass": "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n",
        "outside": "1 1.5 0.5 0.2 0.2\n",
        "crossing": "2 0.95 0.5 0.2 0.2\n",
        "empty": "",
        "nolabel": None,
        "garbage": "person 0.5 0.5 0.2 0.2\n",
    })
    with caplog.at_level(logging.WARNING, logger="taskderain"):
        ds = YoloDetectionDataset(yaml_path, "val")
    ids = sorted(r[0].stem for r in ds.records)
    assert ids == ["crossing", "empty", "good", "nolabel"]
    assert ds.report.background == 2 and ds.report.missing_labels == 1
    text = "\n".join(ds.report.skipped)
    assert "badclass.txt line 2: class id 7 outside 0..2" in text
    assert "outside.txt line 1" in text and "not normalised" in text
    assert "garbage.txt line 1: not numbers" in text
    assert "crossing.txt line 1" in ds.report.clipped[0]
    assert "label problems" in caplog.text
    sample = next(ds[i] for i in range(len(ds)) if ds[i]["id"] == "crossing")
    x, _, w, _ = sample["bboxes"][0]
    assert x + w / 2 == pytest.approx(1.0) and w == pytest.approx(0.15)  # clipped to the border
    with pytest.raises(LabelError, match="badclass.txt line 2"):
        YoloDetectionDataset(yaml_path, "val", strict=True)


def test_unreadable_image_names_the_file(tmp_path):
    yaml_path = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    (tmp_path / "images" / "val" / "a.png").write_bytes(b"junk")
    ds = YoloDetectionDataset(yaml_path, "val")
    with pytest.raises(ValueError, match=r"a\.png"):
        ds[0]


def test_yaml_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_data_yaml(tmp_path / "nope.yaml")
    (tmp_path / "d.yaml").write_text("path: .\nval: images/val\n")
    with pytest.raises(ValueError, match="no 'names'"):
        load_data_yaml(tmp_path / "d.yaml")
    yaml_path = make_yolo(tmp_path, {"a": ""})
    with pytest.raises(ValueError, match="no 'test' split"):
        YoloDetectionDataset(yaml_path, "test")


def test_label_path_rule_matches_ultralytics(tmp_path):
    from ultralytics.data.utils import img2label_paths

    image = tmp_path / "images" / "x" / "images" / "train" / "a.b.jpg"
    assert str(label_path_for(image)) == img2label_paths([str(image)])[0]


def test_segment_lines_become_boxes(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n")
    cls, boxes, _ = read_yolo_labels(path, nc=2)
    assert cls.tolist() == [1] and np.allclose(boxes[0], [0.3, 0.4, 0.4, 0.4])


def test_collate_feeds_ultralytics_loss(tmp_path):
    from ultralytics import YOLO
    from ultralytics.cfg import get_cfg

    yaml_path = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.4 0.4\n1 0.2 0.3 0.1 0.1\n", "b": "", "c": "2 0.5 0.5 1 1\n"},
                          sizes={"a": (40, 60), "b": (64, 32), "c": (30, 30)})
    ds = YoloDetectionDataset(yaml_path, "val", transform=Letterbox(64))
    batch = collate_batch([ds[i] for i in range(len(ds))])
    assert batch["img"].shape == (3, 3, 64, 64) and batch["img"].dtype == torch.float32
    assert batch["batch_idx"].tolist() == [0, 0, 2] and batch["cls"].shape == (3, 1)
    # 60x40 → scaled 64x43 (ratio 16/15), padded 10 px on top: y = (20 * 16/15 + 10) / 64
    assert batch["bboxes"][0].tolist() == pytest.approx([0.5, (20 * 16 / 15 + 10) / 64, 0.4, 0.4 * 40 / 60], abs=1e-6)
    model = YOLO("yolov8n.yaml").model
    model.args = get_cfg()
    model.nc = 3
    img = batch["img"].requires_grad_(True)
    loss, items = model.loss({**batch, "img": img})
    loss.sum().backward()
    assert torch.isfinite(loss).all() and img.grad.abs().sum() > 0


def test_collate_refuses_mixed_sizes(tmp_path):
    yaml_path = make_yolo(tmp_path, {"a": "", "b": ""}, sizes={"a": (10, 10), "b": (12, 10)})
    ds = YoloDetectionDataset(yaml_path, "val")
    with pytest.raises(ValueError, match="different sizes.*letterbox"):
        collate_batch([ds[0], ds[1]])


def test_coco_json_dataset(tmp_path):
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "1.png"), np.zeros((50, 100, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "img" / "2.png"), np.zeros((50, 100, 3), np.uint8))
    ann = {"images": [{"id": 1, "file_name": "1.png", "width": 100, "height": 50},
                      {"id": 2, "file_name": "2.png", "width": 100, "height": 50}],
           "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [10, 10, 20, 10], "iscrowd": 0, "area": 200},
                           {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 100, 50], "iscrowd": 1, "area": 5000},
                           {"id": 3, "image_id": 2, "category_id": 3, "bbox": [150, 10, 20, 10], "iscrowd": 0, "area": 200}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = CocoDetectionDataset(tmp_path / "img", tmp_path / "ann.json")
    assert ds.names == {0: "car", 1: "dog"} and ds.category_ids == [3, 18]
    assert len(ds) == 1 and "image_id 2" in ds.report.skipped[0]  # box outside the image
    sample = ds[0]
    assert sample["cls"].tolist() == [1] and np.allclose(sample["bboxes"][0], [0.2, 0.3, 0.2, 0.2])


def test_mask_dataset_maps_ids_and_checks_sizes(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((4, 5, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "img" / "b.png"), np.zeros((4, 5, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "img" / "c.png"), np.zeros((4, 5, 3), np.uint8))
    mask = np.array([[0, 1, 1, 18, 18], [200, 1, 0, 0, 0], [0] * 5, [0] * 5], np.uint8)
    cv2.imwrite(str(tmp_path / "mask" / "a.png"), mask)
    cv2.imwrite(str(tmp_path / "mask" / "b.png"), np.zeros((5, 5), np.uint8))
    (tmp_path / "classes.yaml").write_text("classes:\n  0: unlabeled\n  1: person\n  3: car\n  18: dog\n")
    class_map, names = class_map_from_yaml(tmp_path / "classes.yaml", keep=["dog", "person"])
    assert class_map == {18: 0, 1: 1} and names == {0: "dog", 1: "person"}
    ds = MaskSegmentationDataset(tmp_path / "img", tmp_path / "mask", class_map, names, ignore_index=255)
    assert len(ds) == 2 and ds.missing_masks == ["c.png"]
    assert ds[0]["mask"][:2].tolist() == [[255, 1, 1, 0, 0], [255, 1, 255, 255, 255]]
    with pytest.raises(ValueError, match=r"mask .*b\.png is 5x5 but its image .*b\.png is 5x4"):
        ds[1]
    with pytest.raises(ValueError, match="'cat'"):
        class_map_from_yaml(tmp_path / "classes.yaml", keep=["cat"])
    lb = Letterbox(8, ignore_index=255)(ds[0])
    assert lb["mask"].shape == (8, 8) and lb["mask"][0, 0] == 255  # padding is ignored


def test_coco128_real(shared):
    ds = YoloDetectionDataset(shared / "data" / "coco128" / "coco128.yaml", "train", transform=Letterbox(320))
    assert len(ds) == 128 and ds.nc == 80 and not ds.report.skipped
    assert sum(len(r[1]) for r in ds.records) == 929  # objects of the 126 labelled images
    assert ds.report.missing_labels == 2  # 000000000250.jpg and 000000000508.jpg have no label file
    seg = MaskSegmentationDataset(shared / "data" / "coco128" / "images" / "train2017",
                                  shared / "data" / "coco128" / "masks" / "train2017")
    assert len(seg) == 100


def test_rainy_wrapper_keeps_targets_and_letterboxes_both_images(tmp_path):
    from taskderain.rain import Rainy, add_rain, image_seed, rain_params

    yaml_path = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.4 0.4\n", "b": "1 0.3 0.3 0.2 0.2\n"}, sizes={"a": (40, 60)})
    base = YoloDetectionDataset(yaml_path, "val")
    rainy = Rainy(base, "heavy", seed=5, transform=Letterbox(64))
    index = next(i for i in range(2) if base[i]["id"] == "a")
    sample, raw = rainy[index], base[index]
    expected, _ = add_rain(raw["image"], rain_params("heavy"), image_seed("a", 5))
    assert np.array_equal(sample["image"], Letterbox(64)({"image": expected})["image"])
    assert np.array_equal(sample["clean"], Letterbox(64)({"image": raw["image"]})["image"])
    assert sample["cls"].tolist() == [0] and sample["bboxes"].shape == (1, 4)
    batch = collate_batch([rainy[0], rainy[1]])
    assert batch["img"].shape == batch["clean"].shape == (2, 3, 64, 64)
    assert not torch.equal(batch["img"], batch["clean"])
    rainy.set_epoch(1)
    assert not np.array_equal(rainy[index]["image"], sample["image"])  # new rain each training epoch
    rainy.set_epoch(0)
    assert np.array_equal(rainy[index]["image"], sample["image"])
    none = Rainy(base, "heavy", seed=5, p=0.0)
    assert all(np.array_equal(none[i]["image"], none[i]["clean"]) for i in range(2))
    with pytest.raises(ValueError, match="probability"):
        Rainy(base, "heavy", p=1.5)
