"""Weights shipped inside the package: ``create_derainer("mspfn_lite", weights="default")``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from taskderain.cli import main
from taskderain.models import create_derainer
from taskderain.models.pretrained import PRETRAINED, pretrained_tags, resolve_weights

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def test_default_weights_ship_small_with_their_model_card():
    path = pretrained_tags("mspfn_lite")["default"]
    assert path.is_file() and path.stat().st_size <= 5 * 2 ** 20
    meta = torch.load(path, weights_only=True)["metadata"]
    assert meta["storage"] == "float16" and meta["seed"] == 0 and meta["steps"] > 0
    assert meta["recipe"]["data"]["rain_intensity"] == [0.1, 0.4] and "COCO128" in meta["training_data"]
    assert meta["metrics"]["rain100l_psnr_y"] >= 32.4  # the paper's MSPFN figure, reached on synthetic rain
    model = create_derainer("mspfn_lite", weights="default")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 1_616_688
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        y = model.eval().derain(x)
    assert y.shape == x.shape and not torch.allclose(y, x, atol=1e-3)  # trained: not the identity


def test_allweather_weights_ship_with_their_recipe_and_beat_the_default_on_zoo_rain():
    """The all-weather tag was trained on the rain-zoo mixture: on rain the default never saw
    (Garg–Nayar streaks, drizzle) it removes much more, on ultralytics' bundled bus.jpg."""
    from ultralytics.utils import ASSETS

    from taskderain.imageio import read_rgb
    from taskderain.inference import derain_array
    from taskderain.metrics import psnr
    from taskderain.rain.spec import rain_from_spec

    path = pretrained_tags("mspfn_lite")["allweather"]
    assert path.is_file() and path.stat().st_size <= 5 * 2 ** 20
    meta = torch.load(path, weights_only=True)["metadata"]
    assert meta["storage"] == "float16" and meta["config"]["data"]["rain"]["name"] == "mix" and meta["steps"] > 0
    assert "COCO128" in meta["training_data"] and "Rain100L" in meta["training_data"]  # named as excluded
    clean = read_rgb(ASSETS / "bus.jpg")[::3, ::3].copy()  # 270x360
    models = {tag: create_derainer("mspfn_lite", weights=tag) for tag in ("default", "allweather")}
    for spec in ("garg_nayar@0.75", "drizzle@0.75"):
        rainy = rain_from_spec(spec).apply(clean, 5)
        gain = {tag: psnr(derain_array(m, rainy), clean) - psnr(rainy, clean) for tag, m in models.items()}
        assert gain["allweather"] > gain["default"] + 2, (spec, gain)


def test_taskdriven_weights_ship_with_their_card_and_are_the_experiment_winner():
    """The task-driven tag: the all-weather weights fine-tuned with the frozen YOLO's loss and
    features, tone anchored to their start (benchmarks/taskdriven_experiment.py, variant
    'task_anchored', seed 0), stored in fp16."""
    path = pretrained_tags("mspfn_lite")["taskdriven"]
    assert path.is_file() and path.stat().st_size <= 5 * 2 ** 20
    meta = torch.load(path, weights_only=True)["metadata"]
    assert meta["storage"] == "float16" and meta["start"].startswith("weights='allweather'") and meta["seed"] == 0
    assert meta["loss"]["detection"] > 0 and meta["loss"]["detector_features"] > 0 and meta["loss"]["anchor"] > 0
    assert meta["metrics"]["rain100l_psnr_y"] > 30.5  # the anchor keeps light-rain fidelity (the unanchored: 25.9)
    recipe = yaml.safe_load((REPO / "pipelines" / "train" / "mspfn_lite-taskdriven.yaml").read_text())["train"]
    assert {k: v for k, v in recipe["loss"].items() if v} == meta["loss"]  # the card's loss is the recipe's
    assert (recipe["steps"], recipe["data"]["batch"], recipe["data"]["imgsz"], recipe["optim"]["lr"]) == \
        (meta["steps"], meta["batch"], meta["imgsz"], meta["lr"])
    assert "Rain100L" in meta["training_data"] and "48 held-out" in meta["training_data"]
    tuned, allweather, default = (create_derainer("mspfn_lite", weights=t).state_dict()
                                  for t in ("taskdriven", "allweather", "default"))

    def distance(a, b):
        return sum(float((a[k].double() - b[k].double()).norm()) ** 2 for k in a) ** 0.5

    # tuned from the all-weather weights, 60 anchored steps: near them, far from the default's
    assert 0 < distance(tuned, allweather) < 0.1 * distance(tuned, default)


def test_unknown_tags_name_what_ships(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'best' is not a shipped tag of derainer 'mspfn_lite' "
                                                r"\(shipped: mspfn_lite: default, allweather, taskdriven\)"):
        create_derainer("mspfn_lite", weights="best")
    with pytest.raises(FileNotFoundError, match="not a shipped tag of derainer 'prenet'"):
        create_derainer("prenet", weights="default")
    assert resolve_weights("mspfn_lite", None) is None
    assert resolve_weights("mspfn_lite", str(tmp_path / "w.pt")) == str(tmp_path / "w.pt")  # files pass through
    assert set(PRETRAINED) <= {"mspfn", "mspfn_m17n1", "mspfn_lite", "mspfn_tiny", "prenet"}


def test_pipeline_yaml_default_weights_are_the_shipped_ones():
    from taskderain.pipeline import Pipeline

    pipe = Pipeline.from_yaml(REPO / "pipelines" / "mspfn-yolov8n.yaml", ["detector.weights=null",
                                                                          "detector.cfg=yolov8n.yaml"])
    shipped = create_derainer("mspfn_lite", weights="default").state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in pipe.derainer.state_dict().items())


@pytest.mark.shared
def test_default_weights_on_rain100l_first_pairs(shared, tmp_path):
    """Pinned from the full run (32.710 dB / 0.9457 on all 100 pairs); rainy inputs 27.30, 28.99, 33.84 dB."""
    out = tmp_path / "r.json"
    assert main(["eval-derain", str(shared / "data" / "rain100l"), "--model", "mspfn_lite", "--weights", "default",
                 "--limit", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["per_image"]
    assert [r["psnr_y"] for r in rows] == pytest.approx([34.5088, 33.7423, 37.3971], abs=0.01)
    assert [r["ssim_y"] for r in rows] == pytest.approx([0.95696, 0.93399, 0.98458], abs=2e-4)
