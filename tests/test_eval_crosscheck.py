"""pycocotools mAP (taskderain eval) against ultralytics' own validator on real COCO128 images and weights."""

from __future__ import annotations

import pytest

from taskderain.evaluation import open_eval_data, ultralytics_crosscheck

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("one_thread")]


def test_coco128_as_shipped_has_unpaired_labels_and_says_which(shared):
    unpaired = r"2 of the 128 label files .* \(000000000656.txt, 000000000659.txt\), and 2 of its 128 images"
    with pytest.raises(ValueError, match=unpaired):
        open_eval_data(shared / "data" / "coco128" / "coco128.yaml", "val")
    data = open_eval_data(shared / "data" / "coco128" / "coco128.yaml", "val", allow_unpaired_labels=True, limit=4)
    assert len(data) == 4 and data.unpaired_labels == 2 and len(data.names) == 80


def _snapshot(folder):
    return sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_pycocotools_and_ultralytics_agree_on_the_same_predictions(shared, tmp_path):
    before = _snapshot(shared / "data" / "coco128")
    result = ultralytics_crosscheck(shared / "weights" / "yolov8n_coco.pt", shared / "data" / "coco128" / "coco128.yaml",
                                    imgsz=320, limit=8, allow_unpaired_labels=True, workdir=tmp_path)
    theirs, same_preds, ours = (result[k]["map50_95"] for k in ("ultralytics", "pycocotools_on_ultralytics", "taskderain"))
    assert result["n_images"] == 8 and result["n_gt"] == 30
    assert 0.4 < theirs < 0.9  # a pretrained detector on clean images, boxes mapped back to the right pixels
    # the metric alone (same predictions): interpolation and matching differ, within 1.5 points
    assert abs(same_preds - theirs) < 0.015
    # taskderain's own evaluator (its geometry, NMS and COCOeval) on the same images: the same predictions
    assert abs(ours - same_preds) <= 0.002
    assert _snapshot(shared / "data" / "coco128") == before  # ultralytics ran on a copy: nothing written there


@pytest.mark.parametrize("imgsz", [640, 320])
def test_evaluator_oracle_on_coco128(shared, tmp_path, imgsz):
    """Issue 12's oracle: identity derainer, clean images -> the evaluator's mAP50-95 equals pycocotools on
    ultralytics' own ``val()`` predictions (default batch 16, its rect canvases) within 0.002, all 128 images."""
    result = ultralytics_crosscheck(shared / "weights" / "yolov8n_coco.pt", shared / "data" / "coco128" / "coco128.yaml",
                                    imgsz=imgsz, allow_unpaired_labels=True, workdir=tmp_path)
    assert result["n_images"] == 128 and result["batch"] == 16
    same_preds, ours = (result[k]["map50_95"] for k in ("pycocotools_on_ultralytics", "taskderain"))
    assert {640: 0.40, 320: 0.30}[imgsz] < same_preds < {640: 0.55, 320: 0.45}[imgsz]
    assert abs(ours - same_preds) <= 0.002
    assert abs(result["taskderain"]["map50"] - result["pycocotools_on_ultralytics"]["map50"]) <= 0.002
