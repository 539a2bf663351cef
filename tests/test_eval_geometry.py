"""The evaluation geometry against ultralytics' own validator dataset (its rect batches, resize and border)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from taskderain.evaluation.geometry import ValidatorGeometry, image_shape, plan_geometries, validator_canvases

# aspect ratios on both sides of 1, ties across a batch boundary, a tiny and an exact-imgsz image
SIZES = [(480, 640), (640, 480), (427, 640), (480, 640), (500, 500), (640, 427), (100, 37), (320, 320),
         (480, 640), (333, 999)]


def _validator_dataset(folder, imgsz, batch):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "task": "detect"})
    return build_yolo_dataset(cfg, str(folder / "images"), batch, {"names": {0: "thing"}, "channels": 3}, mode="val",
                              rect=True, stride=32)


@pytest.fixture
def images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        cv2.imwrite(str(tmp_path / "images" / f"im{i:02d}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        (tmp_path / "labels" / f"im{i:02d}.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    return tmp_path


@pytest.mark.parametrize("imgsz,batch", [(320, 4), (640, 16), (320, 1)])
def test_geometry_is_the_validators_pixel_for_pixel(images, imgsz, batch):
    ds = _validator_dataset(images, imgsz, batch)
    paths = sorted((images / "images").iterdir())
    plans = dict(zip(map(str, paths), plan_geometries([image_shape(p) for p in paths], imgsz, batch)))
    assert len({tuple(s) for s in ds.batch_shapes}) > 1 or batch == 16  # several canvases: the batching matters
    for i in range(len(ds)):
        item = ds[i]
        g = plans[item["im_file"]]
        original = cv2.imread(item["im_file"])
        canvas = g.pad(g.resize(original))
        theirs = item["img"].numpy().transpose(1, 2, 0)[..., ::-1]  # CHW RGB -> HWC BGR
        assert canvas.shape == theirs.shape, item["im_file"]
        np.testing.assert_array_equal(canvas, theirs)
        (gain, pad), (their_gain, their_pad) = g.ratio_pad, item["ratio_pad"]
        assert gain == pytest.approx(their_gain) and pad == tuple(their_pad)
        assert g.orig_shape == tuple(item["ori_shape"]) and g.canvas == tuple(item["resized_shape"])


def test_boxes_map_back_as_scale_boxes_does():
    import torch
    from ultralytics.utils.ops import scale_boxes

    g = plan_geometries([(427, 640), (640, 480)], 320, batch=2)[1]
    boxes = np.array([[10.0, 20.0, 200.0, 300.0], [-5, -5, 500, 500]])
    theirs = scale_boxes(g.canvas, torch.tensor(boxes), g.orig_shape, ratio_pad=g.ratio_pad).numpy()
    np.testing.assert_allclose(g.to_original(boxes), theirs, rtol=1e-6)


def test_canvases_refuse_a_bad_batch_and_keep_the_given_order():
    with pytest.raises(ValueError, match="batch must be >= 1"):
        validator_canvases([(10, 20)], 320, batch=0)
    one = validator_canvases([(480, 640), (640, 480)], 320, batch=1)
    assert one == [(256, 352), (352, 256)]  # ceil(ar * 320 / 32 + 0.5) * 32 on the short side, 352 on the long


def test_resize_refuses_an_image_of_another_shape():
    g = ValidatorGeometry.plan((480, 640), 320, (256, 352))
    with pytest.raises(ValueError, match=r"shape \(100, 100\) given to the geometry of a \(480, 640\) image"):
        g.resize(np.zeros((100, 100, 3), np.uint8))
