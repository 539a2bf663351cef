"""One spec (taskderain.spec): typed sections, strict errors naming the key, overrides in both spellings,
and the same file for run / eval (derainer, heads, rain) and train (its train section)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskderain.config import ConfigError
from taskderain.pipeline import load_config
from taskderain.spec import DerainerSection, HeadSection, RainSection, Spec, TrainSection, load_spec
from taskderain.train.config import load_train_config

REPO = Path(__file__).resolve().parents[1]
TRAIN_YAMLS = sorted((REPO / "pipelines" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAIN_YAMLS, ids=lambda p: p.stem)
def test_shipped_training_specs_load_as_typed_sections(path):
    spec = load_spec(path)
    assert isinstance(spec, Spec) and isinstance(spec.derainer, DerainerSection)
    assert isinstance(spec.rain, RainSection) and isinstance(spec.train, TrainSection)
    assert all(isinstance(h, HeadSection) and h.type for h in spec.heads.values())
    assert spec.train_config() == load_train_config(path)  # one loader, whichever entry point
    run = load_config(path)  # `taskderain run` / `eval` read the same file
    assert run["derainer"]["name"] == spec.derainer.name == load_train_config(path)["model"]["name"]
    assert set(run["heads"]) == set(spec.heads)


def test_training_rain_is_the_rain_section(tmp_path):
    spec = load_spec(REPO / "pipelines" / "train" / "mspfn_lite-allweather.yaml")
    assert spec.train_config()["data"]["rain"] == spec.rain.model == spec.pipeline_config()["rain"]["model"]
    ranged = load_spec(REPO / "pipelines" / "train" / "mspfn_lite-default.yaml")
    assert ranged.train_config()["data"]["rain_intensity"] == [0.1, 0.4]
    assert ranged.rain.intensity == 0.4  # eval scores the heaviest rain of the training range


def test_overrides_in_the_spec_and_the_training_spelling_agree():
    path = REPO / "pipelines" / "train" / "joint-coco128.yaml"
    spec_keys = load_spec(path, ["train.steps=7", "derainer.name=mspfn_tiny", "rain.seed=3", "train.data.batch=2",
                                 "train.optim.lr=1e-3", "train.save_every=2"]).train_config()
    legacy = load_train_config(path, ["steps=7", "model.name=mspfn_tiny", "data.rain_seed=3", "data.batch=2",
                                      "optim.lr=1e-3", "save_every=2"])
    assert spec_keys == legacy
    assert (legacy["steps"], legacy["model"]["name"], legacy["data"]["rain_seed"], legacy["save_every"]) == (
        7, "mspfn_tiny", 3, 2)
    aw = REPO / "pipelines" / "train" / "mspfn_lite-allweather.yaml"  # a loss override reaches the trainer
    assert load_train_config(aw, ["loss.psnr=0.005"])["loss"] == {"restoration": 1.0, "psnr": 0.005}
    assert load_train_config(aw, ["loss.psnr=0.005"]) == load_spec(aw, ["train.loss.psnr=0.005"]).train_config()


def test_a_top_level_training_key_in_a_spec_is_an_error_not_ignored():
    raw = yaml.safe_load((REPO / "pipelines" / "train" / "mspfn_lite-allweather.yaml").read_text())
    with pytest.raises(ConfigError, match=r"unknown top-level key 'loss' \('loss' belongs in the 'train' section"):
        load_train_config({**raw, "loss": {"psnr": 0.005}})
    with pytest.raises(ConfigError, match=r"unknown top-level key 'optimizer'"):
        load_train_config({**raw, "optimizer": {"lr": 1e-3}})


@pytest.mark.parametrize("overrides,match", [
    (["train.data.rain_preset=light"], r"'train.data.rain_preset' belongs in the top-level 'rain' section"),
    (["rain.colour=red"], r"unknown key 'rain.colour'"),
    (["train.optim.lrr=1"], r"unknown key 'optim.lrr'"),
    (["train.mode=nope"], r"'mode' must be one of restoration"),
    (["derainers.name=x"], r"unknown"),
])
def test_bad_specs_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_spec(REPO / "pipelines" / "train" / "joint-coco128.yaml", overrides)


def test_a_pipeline_yaml_is_a_spec_without_train(tmp_path):
    spec = load_spec(REPO / "pipelines" / "mspfn-yolov8n.yaml")
    assert spec.train is None and "detector" in spec.heads
    with pytest.raises(ConfigError, match="no 'train' section"):
        spec.train_config()


def test_relative_weights_resolve_against_the_spec_folder(tmp_path):
    (tmp_path / "mine.pt").write_bytes(b"x")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "derainer": {"name": "mspfn_lite", "weights": "mine.pt"}, "rain": {"preset": "light"},
        "train": {"mode": "restoration", "steps": 1, "data": {"images": "."}}}))
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.derainer.weights == str(tmp_path / "mine.pt")
    assert spec.train_config()["model"]["weights"] == str(tmp_path / "mine.pt")
    assert spec.train_config()["data"]["images"] == str(tmp_path)
