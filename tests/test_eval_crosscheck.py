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
    # taskderain's own path (its resize, letterbox and NMS): the input padding differs by half a stride
    assert abs(ours - theirs) < 0.03
    assert _snapshot(shared / "data" / "coco128") == before  # ultralytics ran on a copy: nothing written there
