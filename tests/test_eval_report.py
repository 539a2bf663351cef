"""`taskderain eval`: conditions, COCO from labels, recovery, caching / resume, mIoU, report files, bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from taskderain.cli import main
from taskderain.data.segmentation import read_mask
from taskderain.evaluation import (DerainerSpec, EvalCache, EvalSettings, Evaluation, add_recovery, clean_condition,
                                   condition_at, evaluate_report, identity_spec, open_eval_data, parse_derainers,
                                   parse_intensity, parse_rain, recovery)
from taskderain.imageio import read_rgb
from taskderain.inference import derain_array, to_tensor
from taskderain.metrics import DetectionEvaluator
from taskderain.models import Derainer, create_derainer, save_derainer
from taskderain.rain import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = {0: "cat", 1: "dog"}
H, W = 48, 64
# pixel xyxy boxes per image (class, x1, y1, x2, y2); image 2 has no objects
BOXES = [[(0, 4, 6, 30, 40), (1, 34, 10, 60, 30)], [(1, 10, 12, 50, 44)], []]


def write_dataset(root: Path, masks: bool = False) -> Path:
    """3 images 64x48 (YOLO layout, names cat/dog), labels from BOXES, optional class-id masks."""
    rng = np.random.default_rng(0)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i, boxes in enumerate(BOXES):
        image = (rng.random((H // 8, W // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        cv2.imwrite(str(root / "images" / "val" / f"im{i}.png"), image)
        lines = [f"{c} {(x1 + x2) / 2 / W} {(y1 + y2) / 2 / H} {(x2 - x1) / W} {(y2 - y1) / H}"
                 for c, x1, y1, x2, y2 in boxes]
        if boxes:
            (root / "labels" / "val" / f"im{i}.txt").write_text("\n".join(lines) + "\n")
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            mask = np.zeros((H, W), np.uint8)  # class 0 = background
            for c, x1, y1, x2, y2 in boxes:
                mask[y1:y2, x1:x2] = c + 1
            mask[:4] = 255  # unlabelled stripe
            cv2.imwrite(str(root / "masks" / f"im{i}.png"), mask)
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/val", "val": "images/val",
                                                    "names": NAMES}))
    return root / "data.yaml"


class Counting(Derainer):
    """Counts forward calls of a wrapped derainer; raises KeyboardInterrupt after ``fail_after`` calls."""

    arch = "counting"

    def __init__(self, inner: Derainer, fail_after: int | None = None) -> None:
        super().__init__()
        self.inner, self.fail_after, self.calls = inner, fail_after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        return self.inner(x)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"))


@pytest.fixture(scope="module")
def detector():
    from taskderain.stages import create_detector

    torch.manual_seed(0)
    return create_detector(cfg="yolov8n.yaml", nc=2, imgsz=64).eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    return create_derainer("mspfn_tiny")


def run_eval(data_yaml, detector, derainer, cache, seed=0, conditions=None, segmenter=None, masks=None):
    data = open_eval_data(data_yaml, masks=masks)
    specs = [identity_spec(), DerainerSpec("tiny", "mspfn_tiny", None, derainer)]
    conditions = conditions or [clean_condition(), condition_at(0.25)]
    heads = {name: h for name, h in (("detector", detector), ("segmenter", segmenter)) if h is not None}
    return Evaluation(data, conditions, specs, heads, EvalCache(cache),
                      EvalSettings(imgsz=64, seed=seed)).run(progress=False)


# ------------------------------------------------------------------ conditions and recovery

def test_intensity_sweep_is_clean_plus_the_presets_bit_for_bit():
    conditions = parse_intensity("0:1:5")
    assert [c.name for c in conditions] == ["clean", "light", "medium", "heavy", "storm"]
    assert [c.intensity for c in conditions] == [0, 0.25, 0.5, 0.75, 1.0]
    assert all(c.params == PRESETS[c.name] for c in conditions[1:])  # same cache keys as --rain light,...
    assert conditions[0].params.is_identity
    assert [c.name for c in parse_rain("heavy,light")] == ["clean", "light", "heavy"]
    assert [c.name for c in parse_intensity("0.4")] == ["clean", "i0.40"]
    with pytest.raises(ValueError, match=r"--rain 'dizzle': unknown rain 'dizzle': use a preset \(light, medium"):
        parse_rain("light,dizzle")
    zoo = parse_rain("garg_nayar@0.5,mix:{exclude: [raindrops, drizzle]},light")
    assert [c.name for c in zoo] == ["clean", "light", "garg_nayar@0.50", "mix(exclude)"]
    assert zoo[2].model.name == "garg_nayar" and zoo[2].rain_key()["params"]["intensity"] == 0.5
    assert zoo[3].rain_key()["params"]["exclude"] == ["raindrops", "drizzle"] and not zoo[3].is_clean
    image = (np.random.default_rng(0).random((32, 40, 3)) * 255).astype(np.uint8)
    assert not zoo[2].changes_tone and zoo[2].pair(image, "a", 0)[1] is image  # no camera: score against clean
    assert zoo[3].changes_tone  # the mix draws camera effects: its reference is the camera's scene view
    toned = parse_rain("garg_nayar:{intensity: 0.5, camera: {strength: 1.0, noise: 0, shot: 0, jpeg: null}}")[1]
    rainy, reference = toned.pair(image, "a", 0)
    assert toned.changes_tone and reference.shape == image.shape and reference.mean() < image.mean() - 5
    assert np.array_equal(rainy, toned.apply(image, "a", 0))  # the rain of the same rendering
    from taskderain.evaluation.conditions import conditions_from_config

    configured = conditions_from_config({"model": {"name": "garg_nayar", "intensity": 0.6}})
    assert [(c.name, c.intensity) for c in configured] == [("clean", 0.0), ("garg_nayar@0.60", 0.6)]
    with pytest.raises(ValueError, match="START:STOP:N"):
        parse_intensity("0:1")
    with pytest.raises(ValueError, match="1.5 is not in"):
        parse_intensity("0.5,1.5")


def test_derainer_list_labels_weights_and_digests(tmp_path):
    torch.manual_seed(0)
    a = save_derainer(create_derainer("mspfn_tiny"), tmp_path / "a.pt")
    b = save_derainer(create_derainer("mspfn_tiny"), tmp_path / "b.pt")
    specs = parse_derainers(f"mspfn_tiny:{a},mspfn_tiny:{b},{b}")
    assert [s.label for s in specs] == ["identity", "mspfn_tiny(a)", "mspfn_tiny(b)", "b"]  # identity added first
    assert specs[0].is_identity and not specs[1].is_identity
    assert specs[1].digest != specs[2].digest and specs[2].digest == specs[3].digest  # same weights, same cache
    assert specs[1].weights_sha256 != specs[2].weights_sha256 and len(specs[1].weights_sha256) == 64
    with pytest.raises(ValueError, match="lists 'identity' twice"):
        parse_derainers("identity,identity")


def test_recovery_ratio_by_hand_and_undefined_cases():
    assert recovery(0.30, 0.10, 0.50) == pytest.approx(0.5)
    assert recovery(0.05, 0.10, 0.50) == pytest.approx(-0.125)  # worse than the rainy input
    assert recovery(0.3, 0.2, 0.2) is None and recovery(None, 0.1, 0.5) is None
    assert recovery(math.nan, 0.1, 0.5) is None

    def row(cond, name, map_, ssim_=None, ref=False):
        return {"condition": cond, "derainer": name, "map50_95": map_, "ssim_y": ssim_, "reference": ref,
                "derainer_spec": {"name": name, "weights": None if name == "identity" else "w.pth"}}

    records = add_recovery([row("clean", "identity", 0.5, None, True), row("clean", "prenet", 0.45, 0.9),
                            row("heavy", "identity", 0.1, 0.6), row("heavy", "prenet", 0.4, 0.8)])
    assert records[3]["recovery"]["map50_95"] == pytest.approx(0.75)
    assert records[3]["recovery"]["ssim_y"] == pytest.approx(0.5)  # clean SSIM is 1: (0.8-0.6)/(1-0.6)
    assert records[2]["recovery"]["map50_95"] == pytest.approx(0.0)
    assert records[1]["recovery"]["map50_95"] is None  # clean condition: clean = rainy


# ------------------------------------------------------------------ COCO ground truth from the labels

def _coco_json(path: Path, images: Path) -> Path:
    anns, imgs = [], []
    for i, boxes in enumerate(BOXES):
        imgs.append({"id": i + 1, "file_name": f"im{i}.png", "height": H, "width": W})
        for c, x1, y1, x2, y2 in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": [3, 7][c], "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    path.write_text(json.dumps({"images": imgs, "annotations": anns,
                                "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}))
    return path


@pytest.mark.parametrize("source", ["yolo", "coco"])
def test_perfect_predictions_score_one_and_empty_zero_on_the_datasets_own_labels(dataset, tmp_path, source):
    if source == "yolo":
        data = open_eval_data(dataset)
    else:
        data = open_eval_data(_coco_json(tmp_path / "ann.json", dataset.parent), images=dataset.parent / "images" / "val")
    assert data.names == NAMES and len(data) == 3 and data.background == 1
    perfect, empty = DetectionEvaluator(data.names), DetectionEvaluator(data.names)
    for index in data.indices:
        sample = data.dataset[index]
        boxes = BOXES[int(Path(sample["path"]).stem[2:])]  # pixel boxes as written, not via the labels
        xyxy = np.array([b[1:] for b in boxes], np.float64).reshape(-1, 4)
        perfect.add_sample(sample, (xyxy, np.full(len(boxes), 0.9), np.array([b[0] for b in boxes])))
        empty.add_sample(sample, (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
    out = perfect.compute()
    assert out["map50_95"] == pytest.approx(1.0) and out["per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0})
    assert out["n_gt"] == 3
    assert empty.compute()["map50_95"] == 0.0


# ------------------------------------------------------------------ cache, resume, invalidation

def test_rerun_reuses_everything_and_changes_invalidate_exactly_what_they_touch(dataset, detector, tiny, tmp_path):
    first = Counting(tiny)
    records = run_eval(dataset, detector, first, tmp_path / "cache")
    assert first.calls == 3 * 2  # 3 images x (clean, light)
    assert [(r["condition"], r["derainer"]) for r in records] == [
        ("clean", "identity"), ("clean", "tiny"), ("light", "identity"), ("light", "tiny")]
    assert records[0]["reference"] and records[0]["psnr_y"] is None  # clean vs clean: the reference
    assert records[2]["psnr_y"] < 40 and 0 <= records[3]["map50_95"] <= 1

    again = Counting(tiny)
    rerun = run_eval(dataset, detector, again, tmp_path / "cache")
    assert again.calls == 0
    for a, b in zip(records, rerun):
        assert (a["map50_95"], a["psnr_y"], a["ssim_y"]) == (b["map50_95"], b["psnr_y"], b["ssim_y"])
        assert a["time_s"]["derain"] == pytest.approx(b["time_s"]["derain"])  # cached entries keep their time

    reseeded = Counting(tiny)
    run_eval(dataset, detector, reseeded, tmp_path / "cache", seed=1)
    assert reseeded.calls == 3  # only the rainy images change with the seed; clean ones are reused

    changed = create_derainer("mspfn_tiny")
    changed.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    other_weights = Counting(changed)
    run_eval(dataset, detector, other_weights, tmp_path / "cache")
    assert other_weights.calls == 6  # new weights: everything of that derainer again


def test_interrupted_run_resumes_to_the_same_results(dataset, detector, tiny, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_eval(dataset, detector, Counting(tiny, fail_after=4), tmp_path / "killed")
    resumed = Counting(tiny)
    records = run_eval(dataset, detector, resumed, tmp_path / "killed")
    assert resumed.calls == 6 - 4
    fresh = run_eval(dataset, detector, Counting(tiny), tmp_path / "fresh")
    for a, b in zip(records, fresh):
        assert (a["map50_95"], a["map50"], a["psnr_y"], a["ssim_y"]) == (b["map50_95"], b["map50"], b["psnr_y"],
                                                                        b["ssim_y"])
    assert not list((tmp_path / "killed").rglob("*.part"))  # no half-written cache entry


# ------------------------------------------------------------------ segmentation

def test_miou_is_the_accumulated_confusion_of_the_cached_masks(tmp_path, detector, tiny):
    from taskderain.stages import create_segmenter

    data_yaml = write_dataset(tmp_path / "seg", masks=True)
    torch.manual_seed(0)
    segmenter = create_segmenter("Unet", "resnet18", num_classes=3, encoder_depth=3,
                                 decoder_channels=(32, 16, 8)).eval()
    records = run_eval(data_yaml, None, tiny, tmp_path / "cache", conditions=[clean_condition()],
                       segmenter=segmenter, masks=tmp_path / "seg" / "masks")
    assert len(list((tmp_path / "cache" / "masks").rglob("*.png"))) == 3 * 2  # 3 images x (identity, tiny)
    # by hand: one confusion matrix over the 3 images (size unchanged at imgsz 64), 255 skipped
    gts = [read_mask(tmp_path / "seg" / "masks" / f"im{i}.png") for i in range(3)]
    images = [read_rgb(tmp_path / "seg" / "images" / "val" / f"im{i}.png") for i in range(3)]
    for record, derain in zip(records, (lambda im: im, lambda im: derain_array(tiny, im))):
        cm = np.zeros((3, 3), np.int64)
        for image, gt in zip(images, gts):
            pred = segmenter.predict(to_tensor(derain(image)))[0].numpy()
            keep = gt != 255
            np.add.at(cm, (gt[keep], pred[keep]), 1)
        tp = np.diag(cm).astype(float)
        present = cm.sum(1) > 0
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
        assert record["miou"] == pytest.approx(iou[present].mean(), abs=1e-12)
        assert record["n_seg_images"] == 3
        assert record["per_class_iou"] == pytest.approx({str(c): iou[c] for c in np.flatnonzero(present)})
    assert "map50_95" not in records[0]  # no detector, no detection metrics
    # the report of the same run (all cached): mIoU column, per-class IoU table, mIoU plot
    data = open_eval_data(data_yaml, masks=tmp_path / "seg" / "masks")
    specs = [identity_spec(), DerainerSpec("tiny", "mspfn_tiny", None, tiny)]
    result = evaluate_report(data, [clean_condition()], specs, tmp_path / "report", {"segmenter": segmenter},
                             EvalSettings(imgsz=64), cache_dir=tmp_path / "cache", progress=False)
    assert result["cache"]["masks"] == {"reused": 6, "computed": 0}
    report = (tmp_path / "report" / "report.md").read_text()
    assert "mIoU (%)" in report and "## Per-class IoU (%)" in report and "ignore index 255" in report
    assert "| clean | 0.00 | tiny | " in report and f"{100 * records[1]['miou']:.1f}" in report
    assert cv2.imread(str(tmp_path / "report" / "map_vs_intensity.png")) is not None


# ------------------------------------------------------------------ the command: files and bad input

def _config(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump({"derainer": {"name": "identity"},
                                    "detector": {"cfg": "yolov8n.yaml", "nc": 2, "imgsz": 64},
                                    "segmenter": None, "rain": {"preset": "heavy", "seed": 0}, "device": "cpu"}))
    return path


def test_command_writes_json_csv_report_and_figures(dataset, tiny, tmp_path, capsys):
    ckpt = save_derainer(tiny, tmp_path / "tiny.pt")
    out = tmp_path / "report"
    rc = main(["eval", str(_config(tmp_path)), "--data", str(dataset), "--intensity", "0:0.5:3",
               "--derainers", f"identity,mspfn_tiny:{ckpt}", "--out", str(out), "--quiet", "--samples", "2"])
    assert rc == 0, capsys.readouterr().err
    payload = json.loads((out / "results.json").read_text())
    records = payload["records"]
    assert [(r["condition"], r["derainer"]) for r in records] == [
        (c, d) for c in ("clean", "light", "medium") for d in ("identity", "mspfn_tiny")]
    assert all(set(r["time_per_image_s"]) == {"rain", "derain", "detect", "segment", "metrics"} for r in records)
    assert records[3]["derainer_spec"]["weights_sha256"] and "recovery" in records[3]
    assert payload["meta"]["settings"]["imgsz"] == 64 and payload["meta"]["settings"]["seed"] == 0
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and float(rows[2]["psnr_y"]) == pytest.approx(records[2]["psnr_y"])
    report = (out / "report.md").read_text()
    for phrase in ("MATLAB rgb2ycbcr", "pycocotools COCOeval", "longest side 64 px", "rain seed 0",
                   "| medium | 0.50 | mspfn_tiny |", "map_vs_intensity.png", "samples.png", "Wall time per stage"):
        assert phrase in report, phrase
    for png in ("map_vs_intensity.png", "samples.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.shape[0] > 100
    printed = capsys.readouterr().out
    assert "| clean | 0.00 | identity |" in printed and "derained 0 reused / 18 computed" in printed


@pytest.mark.parametrize("case,expected", [
    ("orphan_label", "(ghost.txt), and 1 of its 3 images have no label file"),
    ("bad_class", "im0.txt line 1: class id 5 outside 0..1"),
    ("empty_split", "no images in"),
    ("no_labels", "none of the 3 images has a label file"),
    ("unknown_derainer", "unknown derainer 'nope'; available:"),
    ("missing_weights", "not found: /no/such/w.pth"),
    ("unwritable_out", "not writable"),
    ("wrong_nc", "has 2 classes but"),
])
def test_bad_input_is_one_clear_line_and_exit_2(dataset, tmp_path, capsys, case, expected):
    root = tmp_path / "ds"
    data_yaml = write_dataset(root)
    args = {"--derainers": "identity", "--out": str(tmp_path / "out")}
    if case == "orphan_label":
        (root / "labels" / "val" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    elif case == "bad_class":
        (root / "labels" / "val" / "im0.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    elif case == "empty_split":
        (root / "images" / "empty").mkdir()
        data_yaml.write_text(yaml.safe_dump({"path": str(root), "val": "images/empty", "names": NAMES}))
    elif case == "no_labels":
        for label in (root / "labels" / "val").iterdir():
            label.unlink()
    elif case == "unknown_derainer":
        args["--derainers"] = "identity,nope"
    elif case == "missing_weights":
        args["--derainers"] = "prenet:/no/such/w.pth"
    elif case == "unwritable_out":
        (tmp_path / "file").write_text("x")
        args["--out"] = str(tmp_path / "file" / "out")
        data_yaml = tmp_path / "does-not-matter.yaml"  # the output folder is checked before anything else
    elif case == "wrong_nc":
        names = {i: str(i) for i in range(3)}
        data_yaml.write_text(yaml.safe_dump({"path": str(root), "val": "images/val", "names": names}))
    argv = ["eval", str(_config(tmp_path)), "--data", str(data_yaml), "--quiet"]
    argv += [x for kv in args.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskderain eval: error:") and expected in err, err
    assert len(err.splitlines()) == 1
    if case != "unwritable_out":
        assert not (tmp_path / "out" / "results.json").exists()


def test_every_head_is_scored_on_the_same_derained_images(dataset, detector, tiny, tmp_path):
    """Two detection heads: each its own mAP under ``heads``, the first one's at the top level, the
    second one's equal to evaluating it alone (same derained images, its own cached detections)."""
    from taskderain.stages import create_detector

    torch.manual_seed(5)
    other = create_detector(cfg="yolov8n.yaml", nc=2, imgsz=64).eval()
    data = open_eval_data(dataset)
    specs = [identity_spec(), DerainerSpec("tiny", "mspfn_tiny", None, tiny)]
    conditions = [clean_condition(), condition_at(0.25)]
    both = Evaluation(data, conditions, specs, {"a": detector, "b": other}, EvalCache(tmp_path / "c"),
                      EvalSettings(imgsz=64)).run(progress=False)
    alone = Evaluation(data, conditions, specs, {"b": other}, EvalCache(tmp_path / "c2"),
                       EvalSettings(imgsz=64)).run(progress=False)
    for r, r_alone in zip(both, alone):
        assert set(r["heads"]) == {"a", "b"} and r["map50_95"] == r["heads"]["a"]["map50_95"]
        assert r["heads"]["b"]["map50_95"] == pytest.approx(r_alone["map50_95"], abs=1e-12)
    result = evaluate_report(data, conditions, specs, tmp_path / "report", {"a": detector, "b": other},
                             EvalSettings(imgsz=64), cache_dir=tmp_path / "c", progress=False)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Every head" in report and "| b (map50_95) |" in report.replace("a (map50_95) | ", "")
    assert result["cache"]["detections"]["computed"] == 0  # both heads' detections were cached per head
