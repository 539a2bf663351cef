"""Bad input as a new user meets it, over every command and the Python API: each case either
gives a clear error (exit 2, nothing written, inputs untouched) or the right result — never a
silently wrong one. One section per reliability bug of the issue that listed them."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from ultralytics.utils import ASSETS

from taskderain.cli import main
from taskderain.config import ConfigError
from taskderain.imageio import image_size, read_rgb, write_rgb
from taskderain.inference import (AUTO_TILE, NonFiniteOutputError, check_tiling, choose_tile, derain_array,
                                  derain_tensor, to_tensor)
from taskderain.models import CheckpointError, create_derainer, load_derainer, save_derainer
from taskderain.pipeline import Pipeline, load_config

from training_setup import tiny_train_config, write_clean_images

pytestmark = pytest.mark.usefixtures("one_thread")

EXIF_ROTATE_CW = 6  # stored rotated: turn 90° clockwise to display


def cli(*args) -> int:
    return main([str(a) for a in args])


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (inputs must come out untouched)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_exif_rotated(upright: np.ndarray, path: Path, quality: int = 95) -> Path:
    """Store an (H, W, 3) RGB image rotated 90° counter-clockwise with EXIF Orientation 6, as a
    phone camera does: viewers (and cv2.imread, ultralytics) show it upright again."""
    exif = Image.Exif()
    exif[0x0112] = EXIF_ROTATE_CW
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=quality)
    return path


def add_png_exif(path: Path, orientation: int) -> Path:
    """Insert an eXIf chunk with ``orientation`` after the IHDR of a PNG file (PIL cannot write 16-bit RGB)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    tiff = exif.tobytes()[6:]  # without the "Exif\0\0" header
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    data = path.read_bytes()
    path.write_bytes(data[:33] + chunk + data[33:])  # signature (8) + IHDR chunk (25)
    return path


@pytest.fixture
def tiny_derainer(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_derainer(create_derainer("mspfn_tiny"), tmp_path / "tiny.pt")


@pytest.fixture
def pipeline_yaml(tmp_path, tiny_derainer) -> Path:
    """mspfn_tiny + a seeded 3-class YOLOv8n, both from files (a `cfg:` detector is new random weights each run)."""
    from taskderain.stages import create_detector, save_detector

    torch.manual_seed(0)
    detector = save_detector(create_detector(cfg="yolov8n.yaml", nc=3), tmp_path / "det.pt")
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump({"derainer": {"name": "mspfn_tiny", "weights": str(tiny_derainer)},
                                    "detector": {"weights": str(detector), "imgsz": 64, "conf": 0.0001,
                                                 "max_det": 5}, "device": "cpu"}))
    return path


def images_in(folder: Path, names=("a.png", "b.png"), size=(40, 56)) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


# --- 1. EXIF orientation ----------------------------------------------------------------------------
def test_read_rgb_applies_exif_orientation_as_cv2_imread_color(tmp_path):
    upright = read_rgb(ASSETS / "bus.jpg")
    path = write_exif_rotated(upright, tmp_path / "phone.jpg")
    image = read_rgb(path)
    assert image.shape == upright.shape == (1080, 810, 3)  # displayed orientation, not the stored 810x1080
    assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])
    assert np.abs(image.astype(int) - upright).mean() < 3  # the same picture (JPEG re-encoding aside)
    assert read_rgb(path, as_float=True).shape == image.shape
    assert image_size(path) == (1080, 810)


def test_16bit_png_with_exif_orientation_keeps_precision(tmp_path):
    deep = (np.arange(20 * 30 * 3).reshape(20, 30, 3) * 37 % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep[:, :, ::-1])
    add_png_exif(path, EXIF_ROTATE_CW)
    image = read_rgb(path, as_float=True)
    expected = np.rot90(deep, k=-1).astype(np.float32) / 65535  # clockwise
    assert image.shape == (30, 20, 3) and np.array_equal(image, expected)
    assert image_size(path) == (30, 20)


def test_derain_and_synth_outputs_keep_the_displayed_orientation(tmp_path):
    upright = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    src = tmp_path / "in"
    src.mkdir()
    write_exif_rotated(upright, src / "phone.jpg")
    assert cli("derain", src, "--model", "identity", "--out", tmp_path / "derained") == 0
    assert read_rgb(tmp_path / "derained" / "phone.png").shape == (48, 80, 3)
    assert cli("synth", src, "--preset", "light", "--out", tmp_path / "rainy") == 0
    assert read_rgb(tmp_path / "rainy" / "phone.png").shape == (48, 80, 3)


def test_exif_rotated_file_detects_as_the_upright_image(tmp_path):
    """Without ../shared: the same seeded detector finds the same boxes on the EXIF-rotated file as
    on the decoded upright pixels, through Pipeline.predict(path)."""
    from taskderain.stages import create_detector

    path = write_exif_rotated(read_rgb(ASSETS / "bus.jpg"), tmp_path / "phone.jpg")
    torch.manual_seed(0)
    pipe = Pipeline(create_derainer("identity"), create_detector(cfg="yolov8n.yaml", nc=3, imgsz=160, conf=0.0,
                                                                 max_det=20))
    from_file = pipe.predict(path)[0]
    from_pixels = pipe.predict(cv2.imread(str(path), cv2.IMREAD_COLOR), color="bgr")[0]
    assert from_file.rainy.shape == (3, 1080, 810)
    assert torch.equal(from_file.detections.boxes, from_pixels.detections.boxes)


@pytest.mark.shared
def test_run_on_exif_rotated_photo_gives_yolo_predict_boxes(shared, tmp_path):
    """The oracle: `taskderain run` (identity derainer) on a phone-style EXIF-rotated bus.jpg finds
    what YOLO(w).predict finds on that file, within 1 px (the bus and the 4 persons)."""
    from ultralytics import YOLO

    weights = shared / "weights" / "yolov8n_coco.pt"
    src = tmp_path / "in"
    src.mkdir()
    # quality 100: at 95 the re-encoding makes the person cut by the right border a coin toss between
    # two NMS candidates 8 px apart for any resampling (uint8 there, float here), rotated or not
    path = write_exif_rotated(read_rgb(ASSETS / "bus.jpg"), src / "phone.jpg", quality=100)
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"derainer": {"name": "identity"}, "detector": {"weights": str(weights)},
                                      "device": "cpu"}))
    assert cli("run", config, path, "--out", tmp_path / "out") == 0
    ours = json.loads((tmp_path / "out" / "predictions.json").read_text())
    ref = YOLO(str(weights)).predict(str(path), verbose=False)[0].boxes
    names = YOLO(str(weights)).names
    assert sorted(names[int(c)] for c in ref.cls).count("person") >= 4 and "bus" in [names[int(c)] for c in ref.cls]
    confident = [r for r in ours if r["score"] >= 0.26]
    assert len(confident) == sum(float(s) >= 0.26 for s in ref.conf)
    for row in confident:
        x, y, w, h = row["bbox"]
        diffs = (ref.xyxy - torch.tensor([x, y, x + w, y + h])).abs().max(dim=1).values
        j = int(diffs.argmin())
        assert diffs[j] <= 1.0 and int(ref.cls[j]) == row["category_id"], (row, ref.xyxy[j])


# --- 2. non-finite weights, inputs and outputs ------------------------------------------------------
def poisoned_derainer(tmp_path) -> Path:
    model = create_derainer("mspfn_tiny")
    name = next(n for n, _ in model.named_parameters())
    with torch.no_grad():
        dict(model.named_parameters())[name].view(-1)[3] = float("nan")
    return save_derainer(model, tmp_path / "nan.pt")


def test_nan_derainer_checkpoint_is_refused_naming_file_and_tensor(tmp_path, capsys):
    path = poisoned_derainer(tmp_path)
    tensor = next(n for n, _ in create_derainer("mspfn_tiny").named_parameters())
    for load in (lambda: create_derainer("mspfn_tiny", weights=path), lambda: load_derainer(path)):
        with pytest.raises(CheckpointError, match=rf"nan\.pt holds non-finite values: tensor '{tensor}' has 1 NaN"):
            load()
    images_in(tmp_path / "in", ["a.png"])
    assert cli("derain", tmp_path / "in", "--model", "mspfn_tiny", "--weights", path, "--out", tmp_path / "out") == 2
    assert "non-finite" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_nan_detector_and_segmenter_checkpoints_are_refused(tmp_path):
    from taskderain.stages import create_detector, create_segmenter, save_detector, save_segmenter

    detector = create_detector(cfg="yolov8n.yaml", nc=3)
    with torch.no_grad():
        detector.model.model[0].conv.weight.view(-1)[0] = float("inf")
    save_detector(detector, tmp_path / "det.pt")
    with pytest.raises(CheckpointError, match=r"det\.pt holds non-finite values: tensor 'model\.0\.conv\.weight'"):
        create_detector(weights=tmp_path / "det.pt")
    segmenter = create_segmenter("Unet", "resnet18", num_classes=2, encoder_depth=3, decoder_channels=(16, 8, 4))
    with torch.no_grad():
        next(segmenter.parameters()).view(-1)[0] = float("nan")
    save_segmenter(segmenter, tmp_path / "seg.pt")
    with pytest.raises(CheckpointError, match=r"seg\.pt holds non-finite values"):
        create_segmenter("Unet", "resnet18", weights=tmp_path / "seg.pt", encoder_depth=3, decoder_channels=(16, 8, 4))


def test_training_from_nan_weights_is_refused_before_any_step(tmp_path):
    from taskderain.train import train

    config = tiny_train_config(write_clean_images(tmp_path / "clean", 4), tmp_path / "run", steps=1,
                               model={"name": "mspfn_tiny", "weights": str(poisoned_derainer(tmp_path))})
    with pytest.raises(CheckpointError, match=r"nan\.pt holds non-finite values"):
        train(config)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_nan_input_tensors_are_refused():
    images = torch.rand(1, 3, 16, 16)
    images[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"1 pixel value\(s\) are NaN or Inf"):
        derain_tensor(create_derainer("identity"), images)
    with pytest.raises(ValueError, match="NaN or Inf"):
        Pipeline(create_derainer("identity")).predict(images)


def test_non_finite_output_is_never_written_as_an_image(tmp_path, capsys):
    """Finite but overflowing weights make the output Inf/NaN: the image fails by name, nothing is written."""
    model = create_derainer("mspfn_tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e30)
    path = save_derainer(model, tmp_path / "huge.pt")
    with pytest.raises(NonFiniteOutputError, match="NaN/Inf"):
        derain_array(create_derainer("mspfn_tiny", weights=path), np.zeros((16, 16, 3), np.uint8))
    images_in(tmp_path / "in", ["a.png"])
    with pytest.raises(NonFiniteOutputError, match=r"^a: the derainer \(mspfn_tiny\) produced NaN/Inf"):
        Pipeline(create_derainer("mspfn_tiny", weights=path)).predict(tmp_path / "in" / "a.png")
    assert cli("derain", tmp_path / "in", "--model", "mspfn_tiny", "--weights", path, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "a.png" in err and "NaN/Inf" in err and not list((tmp_path / "out").iterdir())


def test_text_file_named_pt_is_described_as_such(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a PyTorch file \(a text file\?\)"):
        create_derainer("mspfn_tiny", weights=path)


# --- 3. one tiling policy -----------------------------------------------------------------------------
def test_choose_tile_is_the_one_policy():
    assert choose_tile(1080, 1920, None) is None  # at the default limit: whole image
    assert choose_tile(4000, 6000, None) == AUTO_TILE
    assert choose_tile(4000, 6000, None, max_pixels=0) is None
    assert choose_tile(100, 100, 96, overlap=16) == 96
    assert choose_tile(4000, 6000, None, overlap=300) == 600


def test_run_and_predict_tile_images_above_max_pixels(tmp_path, pipeline_yaml, tiny_derainer):
    """A 600x520 image above max_pixels is derained in AUTO_TILE tiles by `run` and Pipeline.predict,
    exactly as derain_array(tile=AUTO_TILE) does, and not as one whole-image pass."""
    src = images_in(tmp_path / "in", ["big.png"], size=(520, 600))
    image = read_rgb(src / "big.png")
    model = create_derainer("mspfn_tiny", weights=tiny_derainer)
    tiled, whole = derain_array(model, image, tile=AUTO_TILE), derain_array(model, image)
    assert not np.array_equal(tiled, whole)
    assert cli("run", pipeline_yaml, src, "--out", tmp_path / "out", "max_pixels=100000") == 0
    assert np.array_equal(read_rgb(tmp_path / "out" / "derained" / "big.png"), tiled)
    pipe = Pipeline.from_yaml(pipeline_yaml)
    assert np.array_equal(pipe.predict(src / "big.png", max_pixels=100000)[0].derained_uint8(), tiled)
    assert np.array_equal(pipe.predict(src / "big.png", max_pixels=0)[0].derained_uint8(), whole)


# --- 4./5. outputs never collide with each other or with the inputs ---------------------------------
@pytest.mark.parametrize("command", ["derain", "run", "synth"])
def test_same_stem_inputs_are_refused(command, tmp_path, pipeline_yaml, capsys):
    src = images_in(tmp_path / "in", ["photo.jpg", "photo.png"])
    args = {"derain": ["derain", src, "--model", "identity"], "run": ["run", pipeline_yaml, src],
            "synth": ["synth", src]}[command]
    assert cli(*args, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "collide" in err and "photo.jpg" in err and "photo.png" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize("command", ["derain", "run", "synth", "synth --overwrite"])
@pytest.mark.parametrize("inside", [False, True])
def test_out_in_the_source_folder_is_refused_and_inputs_stay(command, inside, tmp_path, pipeline_yaml, capsys):
    src = images_in(tmp_path / "in", ["a.png", "b.jpg"])
    before = snapshot(src)
    out = src / "out" if inside else src
    args = {"derain": ["derain", src, "--model", "identity"], "run": ["run", pipeline_yaml, src],
            "synth": ["synth", src], "synth --overwrite": ["synth", src, "--overwrite"]}[command]
    assert cli(*args, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and str(src.resolve()) in err
    assert snapshot(src) == before


def test_out_as_the_folder_of_input_files_is_refused(tmp_path, capsys):
    src = images_in(tmp_path / "in", ["a.png"])
    assert cli("derain", src / "a.png", "--model", "identity", "--out", src) == 2
    assert "folder of the input images" in capsys.readouterr().err
    assert cli("derain", src / "a.png", "--model", "identity", "--out", src / "derained") == 0  # beside is fine


# --- 6. tiling values: one rule, one message -------------------------------------------------------
@pytest.mark.parametrize("tile,overlap", [(None, -1), (0, 64), (-5, 64), (64, 64), (32, 64)])
def test_bad_tiling_values_are_one_error(tile, overlap, tmp_path, pipeline_yaml, capsys):
    with pytest.raises(ValueError, match="bad tiling"):
        check_tiling(tile, overlap)
    with pytest.raises(ValueError, match="bad tiling"):
        derain_tensor(create_derainer("identity"), torch.rand(1, 3, 8, 8), tile=tile, overlap=overlap)
    src = images_in(tmp_path / "in", ["a.png"])
    tiling = (["--tile", tile] if tile is not None else []) + ["--overlap", overlap]
    assert cli("derain", src, "--model", "identity", *tiling, "--out", tmp_path / "out") == 2
    overrides = [f"tile={tile if tile is not None else 'null'}", f"overlap={overlap}"]
    assert cli("run", pipeline_yaml, src, "--out", tmp_path / "out2", *overrides) == 2
    err = capsys.readouterr().err
    assert err.count("bad tiling") == 2 and f"tile={tile!r}, overlap={overlap!r}" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


# --- 7. `run` results belong to this run and its settings -------------------------------------------
def test_run_gathers_only_this_runs_images_and_refuses_other_settings(tmp_path, pipeline_yaml, capsys):
    first = images_in(tmp_path / "first", ["a.png"])
    second = images_in(tmp_path / "second", ["b.png"])
    out = tmp_path / "out"
    assert cli("run", pipeline_yaml, first, "--out", out) == 0
    assert cli("run", pipeline_yaml, second, "--out", out) == 0
    assert {r["image_id"] for r in json.loads((out / "predictions.json").read_text())} == {"b"}
    record = out / "predictions" / "b.json"
    stamp = record.stat().st_mtime_ns
    assert cli("run", pipeline_yaml, second, "--out", out, "--skip-existing") == 0  # same settings: kept
    assert record.stat().st_mtime_ns == stamp and "kept 1 finished" in capsys.readouterr().out
    assert cli("run", pipeline_yaml, second, "--out", out, "--skip-existing", "detector.conf=0.9") == 2
    assert "'heads.detector.conf' was 0.0001, now 0.9" in capsys.readouterr().err
    assert record.stat().st_mtime_ns == stamp
    images_in(tmp_path / "other", ["b.png"], size=(40, 50))  # another file with the same stem
    assert cli("run", pipeline_yaml, tmp_path / "other", "--out", out, "--skip-existing") == 2
    assert "made from another file" in capsys.readouterr().err


# --- 8. synth --masks resume -----------------------------------------------------------------------
def test_synth_masks_resume_never_copies_a_wrong_size_mask(tmp_path, capsys):
    src = images_in(tmp_path / "img", ["im0.png", "im1.png", "im2.png"], size=(20, 30))
    (tmp_path / "masks").mkdir()
    for name, shape in (("im0", (20, 30)), ("im1", (20, 30)), ("im2", (21, 30))):
        cv2.imwrite(str(tmp_path / "masks" / f"{name}.png"), np.ones(shape, np.uint8))
    out = tmp_path / "out"
    for attempt in range(2):  # the second run finds every image done
        assert cli("synth", src, "--masks", tmp_path / "masks", "--out", out) == 1
        captured = capsys.readouterr()
        assert "im2.png is not the size of its image" in captured.err
        assert sorted(p.name for p in (out / "masks").iterdir()) == ["im0.png", "im1.png"]
        assert ("2 label/mask file(s) copied" in captured.out) == (attempt == 0)


# --- 9. uint8 tensors ------------------------------------------------------------------------------
def test_uint8_tensors_are_refused_with_how_to_convert():
    images = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"torch\.uint8 tensor; convert uint8 images with images\.float\(\) / 255"):
        derain_tensor(create_derainer("identity"), images)
    with pytest.raises(TypeError, match=r"images\.float\(\) / 255"):
        Pipeline(create_derainer("identity")).predict(images[0])


# --- 10. NMS and size settings are validated before any work -----------------------------------------
@pytest.mark.parametrize("override,match", [
    ("detector.conf=1.5", r"'heads\.detector\.conf' must be in \[0, 1\], got 1\.5"),
    ("detector.iou=-0.1", r"'heads\.detector\.iou' must be in \[0, 1\], got -0\.1"),
    ("detector.imgsz=0", r"'heads\.detector\.imgsz' must be >= 1, got 0"),
    ("detector.imgsz=-5", r"'heads\.detector\.imgsz' must be >= 1, got -5"),
])
def test_pipeline_settings_out_of_range_fail_before_work(override, match, tmp_path, pipeline_yaml, capsys):
    with pytest.raises(ConfigError, match=match):
        load_config(pipeline_yaml, [override])
    src = images_in(tmp_path / "in", ["a.png"])
    assert cli("run", pipeline_yaml, src, "--out", tmp_path / "out", override) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_imgsz_not_a_stride_multiple_is_rounded_up_with_a_notice(pipeline_yaml):
    with pytest.warns(UserWarning, match="imgsz 33 is not a multiple of the stride 32: using 64"):
        pipe = Pipeline.from_yaml(pipeline_yaml, ["detector.imgsz=33"])
    assert pipe.detector.imgsz == (64, 64)


def test_train_nms_settings_are_validated_in_the_schema(tmp_path):
    from taskderain.train import load_train_config

    raw = {"mode": "cascade", "steps": 1, "data": {"detection": "x.yaml"}, "detector": {"cfg": "yolov8n.yaml"}}
    with pytest.raises(ConfigError, match=r"'heads\.detector\.conf' must be in \[0, 1\], got 2"):
        load_train_config(raw, ["detector.conf=2"])


@pytest.mark.parametrize("args,match", [(["--conf", "2"], r"--conf must be in \[0, 1\]"),
                                        (["--iou", "-1"], r"--iou must be in \[0, 1\]"),
                                        (["--imgsz", "0"], "--imgsz must be a positive"),
                                        (["--imgsz", "-64"], "--imgsz must be a positive")])
def test_eval_settings_are_validated_before_work(args, match, tmp_path, pipeline_yaml, capsys):
    assert cli("eval", pipeline_yaml, "--data", tmp_path / "missing.yaml", "--out", tmp_path / "report", *args) == 2
    assert __import__("re").search(match, capsys.readouterr().err)


# --- weak spots ------------------------------------------------------------------------------------
def test_empty_pipeline_yaml_is_an_error(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="the pipeline YAML is empty"):
        load_config(tmp_path / "empty.yaml")


@pytest.mark.parametrize("extra,match", [({"val": 42}, r"'val' must be a folder"),
                                         ({"nc": 3}, r"'nc' is 3 but 'names' lists 4 classes"),
                                         ({"path": ["a"]}, r"'path' must be a folder path")])
def test_bad_data_yaml_is_one_clear_error(extra, match, tmp_path):
    from taskderain.data import YoloDetectionDataset

    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"path": str(tmp_path), "train": "images", "names": ["a", "b", "c", "d"],
                                    **extra}))
    with pytest.raises(ValueError, match=match):
        YoloDetectionDataset(path, "train")


def test_killed_writes_leave_no_part_files_after_a_resume(tmp_path, pipeline_yaml):
    src = images_in(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    (out / "derained").mkdir(parents=True)
    stale = out / "derained" / ".a.png.x1y2.part"
    stale.write_bytes(b"half an image")
    assert cli("run", pipeline_yaml, src, "--out", out, "--skip-existing") == 0
    assert not stale.exists()
    stale.write_bytes(b"half")
    assert cli("derain", src, "--model", "identity", "--out", out / "derained") == 0
    assert not stale.exists()


def test_train_removes_stale_part_files_at_start(tmp_path):
    from taskderain.train import train

    images = write_clean_images(tmp_path / "clean", 4)
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".last.pt.abc.part"
    stale.write_bytes(b"half a checkpoint")
    train(tiny_train_config(images, tmp_path / "run", steps=1))
    assert not stale.exists()


def test_eval_derain_json_into_unwritable_folder_fails_before_scoring(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli("eval-derain", tmp_path / "no-such-data", "--model", "identity", "--json", blocker / "r.json") == 2
    assert "not writable" in capsys.readouterr().err  # the folder is checked before the data is read


def test_wrong_size_masks_fail_when_training_starts(tmp_path):
    from taskderain.train import Trainer, load_train_config

    root = tmp_path / "yolo"
    for i in range(4):
        write_rgb(root / "images" / "train" / f"im{i}.png", np.full((48, 64, 3), 100, np.uint8))
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"im{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (root / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), np.zeros((48, 64 if i != 2 else 60), np.uint8))
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "names": ["a"]}))
    config = {"mode": "cascade", "out": str(tmp_path / "run"), "steps": 1, "device": "cpu",
              "model": {"name": "mspfn_tiny"}, "detector": {"cfg": "yolov8n.yaml", "nc": 1},
              "segmenter": {"arch": "Unet", "num_classes": 2},
              "data": {"detection": str(root / "data.yaml"), "imgsz": 64, "val_split": 1, "batch": 2,
                       "masks": str(root / "masks")}}
    with pytest.raises(ValueError, match=r"1 mask\(s\) are not the size of their image, e\.g\. .*im2\.png is 60x48"):
        Trainer(load_train_config(config))


def test_diverged_loss_names_no_missing_checkpoint(tmp_path):
    """An absurd lr makes the loss non-finite within a few steps, before any checkpoint: the error
    must not point at a last.pt that does not exist."""
    from taskderain.train import train

    config = tiny_train_config(write_clean_images(tmp_path / "clean", 10), tmp_path / "run", steps=4,
                               optim={"lr": 1e30})  # 4 steps an epoch: nothing saved before the end
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) at step \d; .*no checkpoint was saved yet"):
        train(config)
    assert not (tmp_path / "run" / "last.pt").exists()
