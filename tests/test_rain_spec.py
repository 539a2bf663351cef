"""Rain specs (presets, zoo families, the mix) through `synth`, `eval --rain` and the training config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskderain.cli import main
from taskderain.imageio import read_rgb
from taskderain.rain import add_rain, image_seed, rain_params
from taskderain.rain.spec import describe_rain, parse_rain_spec, rain_from_spec, rain_label, split_specs
from taskderain.train import load_train_config
from taskderain.train.data import build_datasets

from training_setup import tiny_train_config, write_clean_images

IMAGE = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)


def test_specs_parse_and_build():
    assert parse_rain_spec("garg_nayar@0.5") == {"name": "garg_nayar", "intensity": 0.5}
    assert parse_rain_spec("mix:{exclude: [raindrops], intensity: [0.5, 1]}") == \
        {"name": "mix", "exclude": ["raindrops"], "intensity": [0.5, 1]}
    assert split_specs("light,mix:{exclude: [a, b]},raindrops@0.5") == ["light", "mix:{exclude: [a, b]}", "raindrops@0.5"]
    assert rain_label("garg_nayar@0.5") == "garg_nayar@0.50" and rain_label({"name": "mix"}) == "mix"
    preset = rain_from_spec("heavy")  # a preset is the calibrated streak model, bit for bit
    assert np.array_equal(preset.apply(IMAGE, 7), add_rain(IMAGE, rain_params("heavy"), 7)[0])
    assert describe_rain(rain_from_spec("garg_nayar@0.5"))["params"]["intensity"] == 0.5
    for bad, match in (("nosuch", "unknown rain 'nosuch'"), ("heavy:{intensity: 1}", "takes no parameters"),
                       ("mix@x", "intensity in"), ("mix:[1]", "YAML mapping")):
        with pytest.raises((KeyError, ValueError), match=match):
            rain_from_spec(bad)


def test_synth_with_a_zoo_family_is_its_apply_and_resumes(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    from taskderain.imageio import write_rgb

    write_rgb(src / "a.png", IMAGE)
    out = tmp_path / "out"
    assert main(["synth", str(src), "--rain", "garg_nayar", "--intensity", "0.6", "--seed", "2", "--out", str(out)]) == 0
    expected = rain_from_spec("garg_nayar@0.6").apply(IMAGE, image_seed("a", 2))
    assert np.array_equal(read_rgb(out / "a.png"), expected)
    manifest = json.loads((out / "taskderain-synth.json").read_text())
    assert manifest["rain"]["family"] == "garg_nayar" and manifest["label"] == "garg_nayar@0.60"
    assert main(["synth", str(src), "--rain", "garg_nayar@0.6", "--seed", "2", "--out", str(out)]) == 0
    assert "1 already there" in capsys.readouterr().out
    assert main(["synth", str(src), "--rain", "drizzle", "--seed", "2", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["synth", str(src), "--rain", "mix", "--preset", "light", "--out", str(tmp_path / "o2")]) == 2


def test_training_config_takes_a_zoo_spec(tmp_path):
    images = write_clean_images(tmp_path / "clean", 5)
    config = load_train_config(tiny_train_config(images, tmp_path / "run", data={
        "images": str(images), "val_split": 2, "patch_size": 24, "batch": 2, "rain": "mix:{exclude: [raindrops]}"}))
    train, _, val = build_datasets(config["data"], config["seed"])
    item = val[0]
    clean = read_rgb(images / f"{item['name']}.png")
    expected = rain_from_spec("mix:{exclude: [raindrops]}").apply(clean, image_seed(item["name"], 0))
    assert np.array_equal((item["rainy"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), expected)
    assert train[0]["rainy"].shape == (3, 24, 24)
    from taskderain.config import ConfigError

    with pytest.raises(ConfigError, match=r"'data.rain' invalid: unknown rain 'fog'"):
        load_train_config(tiny_train_config(images, tmp_path / "r2"), ["data.rain=fog"])
    with pytest.raises(ConfigError, match="'data.rain' and 'data.rain_intensity' exclude each other"):
        load_train_config(tiny_train_config(images, tmp_path / "r3"), ["data.rain=mix", "data.rain_intensity=0.5"])


def test_training_crops_are_rained_at_their_frames_scale():
    from taskderain.rain.zoo import create_rain, with_frame

    assert with_frame(create_rain("garg_nayar"), 640).params.frame == 640
    streaks = create_rain("streaks", preset="light")
    assert with_frame(streaks, 640) is streaks  # sized in pixels already
    mix = with_frame(create_rain("mix", families=["drizzle"]), 500)
    assert mix.model(mix.draw(3)).params.frame == 500
    crop = IMAGE[:32, :32].copy()
    near, far = create_rain("drizzle@0.8".split("@")[0], intensity=0.8), with_frame(create_rain("drizzle", intensity=0.8), 2000)
    assert not np.array_equal(near.apply(crop, 1), far.apply(crop, 1))  # the frame changes the rain's scale


def test_models_lists_the_rain_presets_and_families(capsys):
    assert main(["models", "--rain"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line and not line.startswith("specs")]
    from taskderain.rain.zoo import list_rains

    assert names == ["light", "medium", "heavy", "storm", *list_rains()]
    for name in names:
        rain_from_spec(name)  # every listed name is a valid spec


def test_overrides_take_rain_specs_as_yaml_or_text(tmp_path):
    from taskderain.config import parse_overrides

    assert parse_overrides(["data.rain={name: mix, exclude: [drizzle]}"]) == \
        {"data": {"rain": {"name": "mix", "exclude": ["drizzle"]}}}
    assert parse_overrides(["data.rain=mix:{exclude: [drizzle]}"]) == {"data": {"rain": "mix:{exclude: [drizzle]}"}}
