"""Every YAML shipped under pipelines/ validates against its schema (a typo there would reach users)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskderain.pipeline import load_config
from taskderain.train.config import load_train_config

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("train/*.yaml")), ids=lambda p: p.name)
def test_training_configs_validate(path):
    config = load_train_config(path, ["data.detection=somewhere/data.yaml"])
    assert config["mode"] in ("restoration", "cascade", "joint", "detector_on_rain", "segmenter")
    assert config["data"]["imgsz"] % 32 == 0


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_configs_validate(path):
    config = load_config(path)
    assert config["derainer"]["name"] and all(h["weights"] for h in config["heads"].values() if h["type"] == "yolo")
