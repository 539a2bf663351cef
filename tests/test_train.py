"""Training (restoration mode): config checks, data order, checkpoints and exact resume."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from taskderain.imageio import write_rgb
from taskderain.models import CheckpointError, create_derainer, load_derainer, save_derainer
from taskderain.config import ConfigError
from taskderain.rain import add_rain, image_seed, rain_params
from taskderain.train import OnlineRainPairs, load_train_checkpoint, load_train_config, lr_at, train
from taskderain.train.data import epoch_batches

from training_setup import tiny_train_config, write_clean_images

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_clean_images(tmp_path / "clean", 8)


def tiny(images: Path, out: Path, **top) -> dict:
    return tiny_train_config(images, out, steps=top.pop("steps", 10), batch=2, **top)


# -- config ----------------------------------------------------------------------------------------
def test_config_defaults_follow_mspfn_recipe(images, tmp_path):
    c = load_train_config(tiny(images, tmp_path / "r"), ["data.batch=4", "optim.lr=1e-3", "grad_clip=2E+1"])
    assert (c["data"]["batch"], c["optim"]["lr"], c["grad_clip"]) == (4, 1e-3, 20.0)  # YAML 1.1 reads 1e-3 as str
    d = load_train_config({"steps": 1, "data": {"images": "x"}})
    assert (d["data"]["patch_size"], d["data"]["batch"], d["optim"]["betas"]) == (96, 12, [0.9, 0.999])
    assert lr_at(0, d["optim"]) == pytest.approx(5e-4 + 1e-6)
    assert lr_at(20000, d["optim"]) == pytest.approx(5e-4 * 0.8 + 1e-6)
    assert lr_at(50000, d["optim"]) == pytest.approx(5e-4 * 0.8 ** 2.5 + 1e-6)


@pytest.mark.parametrize("overrides, match", [
    (["data.patchsize=3"], r"unknown key 'data.patchsize'"),
    (["stepz=3"], r"unknown key 'stepz'"),
    (["steps=abc"], r"'steps' must be int or null"),
    (["amp=1"], r"'amp' must be bool"),
    (["mode=segmenter"], r"'data.detection' \(an ultralytics data YAML\) is required in mode 'segmenter'"),
    (["mode=nonsense"], r"'mode' must be one of restoration"),
    (["data.paired=somewhere"], r"'data.paired' or 'data.images' must be set, not both"),
    (["optim.betas=[0.9]"], r"'optim.betas' must be two numbers"),
    (["data.val=v"], r"'data.val' and 'data.val_split' exclude"),
])
def test_config_errors_name_the_key(images, tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_train_config(tiny(images, tmp_path / "r"), overrides)


def test_config_yaml_names_file_and_resolves_relative_paths(images, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"steps": 2, "data": {"images": "clean", "batch": "two"}}))
    with pytest.raises(ConfigError, match=rf"{path}: 'data.batch' must be int"):
        load_train_config(path)
    assert load_train_config(path, ["data.batch=2"])["data"]["images"] == str(images)


# -- data ------------------------------------------------------------------------------------------
def test_epoch_batches_are_seeded_permutations():
    a = epoch_batches(list(range(7)), 2, seed=1, epoch=0)
    assert len(a) == 3 and all(len(b) == 2 for b in a)
    assert len({i for b in a for i in b}) == 6  # no repeats; the 7th item is dropped (full batches only)
    assert a == epoch_batches(list(range(7)), 2, seed=1, epoch=0)
    assert a != epoch_batches(list(range(7)), 2, seed=1, epoch=1)
    with pytest.raises(ValueError, match="cannot fill one batch of 8"):
        epoch_batches([0, 1], 8, 0, 0)


def test_online_rain_is_a_function_of_seed_epoch_index(images):
    files = sorted(images.iterdir())
    params = rain_params("heavy")
    ds = OnlineRainPairs(files, params, rain_seed=5, patch_size=24, seed=1)
    first = ds[3]
    again = OnlineRainPairs(files, params, rain_seed=5, patch_size=24, seed=1)[3]
    assert torch.equal(first["rainy"], again["rainy"]) and torch.equal(first["clean"], again["clean"])
    assert first["rainy"].shape == (3, 24, 24) and not torch.equal(first["rainy"], first["clean"])
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["rainy"], first["rainy"])
    val = OnlineRainPairs(files, params, rain_seed=5, patch_size=None, train=False)[3]
    from taskderain.imageio import read_rgb

    expected, _ = add_rain(read_rgb(files[3]), params, image_seed(files[3].stem, 5))  # = `taskderain synth` bytes
    assert torch.equal((val["rainy"] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(expected))


def test_online_zoo_rain_targets_keep_the_camera_tone(images):
    from taskderain.imageio import read_rgb
    from taskderain.rain.zoo import create_rain

    files = sorted(images.iterdir())
    dull = create_rain("garg_nayar", intensity=0.5, camera={"strength": 1.0, "exposure": 0.5, "noise": 0, "shot": 0,
                                                            "jpeg": None, "desaturation": 0, "cast": 0, "motion_blur": 0})
    val = OnlineRainPairs(files, dull, rain_seed=5, patch_size=None, train=False)[0]
    clean = torch.from_numpy(read_rgb(files[0])).permute(2, 0, 1).float() / 255
    ratio = val["clean"].sum() / clean.sum()          # the target is the dull exposure, not the bright clean image
    assert 0.49 < ratio < 0.76
    rainy, target = dull.apply_pair(read_rgb(files[0]), image_seed(files[0].stem, 5))
    assert torch.equal((val["clean"] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(target))
    crop = OnlineRainPairs(files, dull, rain_seed=5, patch_size=24, seed=1)[2]
    assert crop["clean"].mean() < crop["rainy"].mean()   # exposure on both, rain brightens only the input


def test_online_rain_intensity_range_draws_per_image(images):
    from taskderain.imageio import read_rgb
    from taskderain.metrics import psnr
    from taskderain.train.config import rain_spec

    files = sorted(images.iterdir())
    spec = rain_spec({"rain_preset": "heavy", "rain_intensity": [0.1, 0.9]})
    assert spec == (0.1, 0.9)
    ds = OnlineRainPairs(files, spec, rain_seed=5, patch_size=None, train=False)
    scores = [psnr((ds[i]["rainy"] * 255).round().byte().permute(1, 2, 0).numpy(), read_rgb(files[i]))
              for i in range(len(files))]
    assert max(scores) - min(scores) > 3.0  # intensities differ between images (one preset: < 1 dB here)
    again = OnlineRainPairs(files, spec, rain_seed=5, patch_size=None, train=False)
    assert torch.equal(ds[2]["rainy"], again[2]["rainy"])
    train_set = OnlineRainPairs(files, spec, rain_seed=5, patch_size=24, seed=1)
    assert torch.equal(train_set[1]["rainy"], OnlineRainPairs(files, spec, rain_seed=5, patch_size=24, seed=1)[1]["rainy"])
    for bad in ([0.5, 0.2], [0.1, 1.5], [0.3]):
        with pytest.raises(ValueError, match="low, high"):
            rain_spec({"rain_preset": None, "rain_intensity": bad})
    with pytest.raises(ConfigError, match="'data.rain_intensity' as a \\[low, high\\] range is for online rain"):
        load_train_config({"mode": "joint", "steps": 1, "data": {"detection": "d.yaml", "rain_intensity": [0.1, 0.2]},
                           "detector": {"cfg": "yolov8n.yaml"}})


def test_repeat_gives_each_pass_its_own_crop_and_rain(images):
    files = sorted(images.iterdir())
    once = OnlineRainPairs(files, rain_params("light"), rain_seed=1, patch_size=24, seed=2)
    twice = OnlineRainPairs(files, rain_params("light"), rain_seed=1, patch_size=24, seed=2, repeat=2)
    assert len(twice) == 2 * len(files) and twice[len(files) + 3]["name"] == files[3].stem
    assert torch.equal(twice[3]["rainy"], once[3]["rainy"])  # the first pass is the repeat=1 epoch
    assert not torch.equal(twice[len(files) + 3]["clean"], twice[3]["clean"])
    with pytest.raises(ConfigError, match="'data.repeat' is for online rain"):
        load_train_config({"steps": 1, "data": {"paired": "p", "repeat": 2}})


def test_images_from_a_txt_list(images, tmp_path):
    from taskderain.train.data import list_images

    files = sorted(images.iterdir())
    listing = tmp_path / "list.txt"
    listing.write_text(f"{files[3]}\nclean/{files[1].name}\n\n")  # absolute, and relative to the list
    assert list_images(listing) == [files[3], tmp_path / "clean" / files[1].name]
    listing.write_text("clean/nothing.png\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt lists 1 missing image\(s\), e.g. .*nothing.png"):
        list_images(listing)


def test_time_budget_stops_saves_and_resume_continues(images, tmp_path):
    from taskderain.train import Trainer

    config = load_train_config(tiny(images, tmp_path / "run", steps=50), ["time=1e-9"])
    result = Trainer(config).fit()
    assert result["stopped_by_time"] and result["step"] == 1  # the step that crossed the budget ends the run
    assert load_train_checkpoint(result["last"])["train"]["step"] == 1
    assert result["psnr_y"] is not None  # validated before stopping
    again = train(tiny(images, tmp_path / "run", steps=4), ["resume=true"])
    assert again["step"] == 4 and not again["stopped_by_time"]
    with pytest.raises(ConfigError, match="'time' must be > 0 hours"):
        load_train_config(tiny(images, tmp_path / "x"), ["time=0"])


# -- training, checkpoints -------------------------------------------------------------------------
def test_train_writes_checkpoints_load_derainer_reads(images, tmp_path):
    from taskderain.train import Trainer

    trainer = Trainer(load_train_config(tiny(images, tmp_path / "run", steps=4, save_every=2)))
    result = trainer.fit()
    assert trainer.train_set.epoch == 1  # step 4 ran in epoch 1: new crops and rain were drawn
    assert result["step"] == 4 and result["best"] is not None
    model = load_derainer(result["best"])
    assert model.preset == "mspfn_tiny"
    from taskderain.train import load_trained_pipeline

    pipe = load_trained_pipeline(result["best"])  # a restoration run: the derainer alone
    assert pipe.detector is None and pipe.segmenter is None
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in pipe.derainer.state_dict().items())
    assert create_derainer("mspfn_tiny", weights=result["last"]).state_dict().keys() == model.state_dict().keys()
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,lr,loss,val_psnr_y"
    assert [r.split(",")[0] for r in rows[1:5]] == ["1", "2", "3", "3"]  # 3 steps/epoch, then validation
    assert float(rows[4].split(",")[4]) == pytest.approx(load_train_checkpoint(result["last"])["train"]["best"])
    assert result["psnr_y"] > 5.0


def test_train_paired_root(tmp_path, images):
    root = tmp_path / "paired"
    for i, path in enumerate(sorted(images.iterdir())[:4]):
        from taskderain.imageio import read_rgb

        clean = read_rgb(path)
        write_rgb(root / "target" / f"{i}.png", clean)
        write_rgb(root / "input" / f"{i}.png", add_rain(clean, rain_params("light"), i)[0])
    config = tiny(images, tmp_path / "run", steps=2)
    config["data"] = {"paired": str(root), "val_split": 1, "patch_size": 24, "batch": 1}
    result = train(config, ["accumulate=2", "grad_clip=0.5", "amp=true"])
    # 3 training pairs, batch 1, accumulate 2 → 1 step per epoch (the 3rd batch is dropped): 2 epochs
    assert (result["step"], result["epoch"]) == (2, 2)
    rows = [r.split(",") for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert [(r[0], r[4] != "") for r in rows] == [("1", False), ("1", True), ("2", False), ("2", True)]
    assert load_derainer(result["best"]).arch == "mspfn"


def test_existing_run_needs_resume_and_resume_needs_a_run(images, tmp_path):
    train(tiny(images, tmp_path / "run", steps=1))
    with pytest.raises(ConfigError, match="already holds a run .*resume=true"):
        train(tiny(images, tmp_path / "run", steps=2))
    with pytest.raises(FileNotFoundError, match=r"no .*other.last\.pt"):
        train(tiny(images, tmp_path / "other", steps=2, resume=True))


def test_resume_rejects_corrupt_mismatched_and_plain_checkpoints(images, tmp_path):
    out = tmp_path / "run"
    train(tiny(images, out, steps=2))
    with pytest.raises(CheckpointError, match=r"'model.options.width' differs \(checkpoint None, now 4\)"):
        train(tiny(images, out, steps=4, resume=True), ["model.options={width: 4}"])
    with pytest.raises(CheckpointError, match=r"'seed' differs"):
        train(tiny(images, out, steps=4, resume=True, seed=4))
    last = out / "last.pt"
    save_derainer(create_derainer("mspfn_tiny"), last)
    with pytest.raises(CheckpointError, match=rf"{last} is not a taskderain training checkpoint"):
        train(tiny(images, out, steps=4, resume=True))
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=rf"cannot read training checkpoint {last}"):
        train(tiny(images, out, steps=4, resume=True))


def test_worker_processes_do_not_change_training(images, tmp_path):
    a = train(tiny(images, tmp_path / "w0", steps=3))
    b = train(tiny(images, tmp_path / "w2", steps=4), ["data.workers=2"])
    assert a["psnr_y"] != b["psnr_y"]  # 4 steps differ from 3 ...
    train(tiny(images, tmp_path / "w0", steps=4, resume=True), ["data.workers=2"])  # ... resumable with workers
    sa, sb = (load_train_checkpoint(tmp_path / r / "last.pt")["state_dict"] for r in ("w0", "w2"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# -- the key test: SIGKILL + resume == uninterrupted ------------------------------------------------
RUNNER = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from taskderain.train import train
    config, kill_at = json.loads(sys.argv[1]), int(sys.argv[2])
    def die(trainer):
        if trainer.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train(config, callback=die)
""")


@pytest.mark.parametrize("save_every, kill_at", [
    (4, 5),   # last.pt at step 4 (mid-epoch 1), step 5 trained and logged, then killed
    (3, 3),   # last.pt at step 3 = end of epoch 0 *before* its validation, killed there
])
def test_sigkill_then_resume_equals_uninterrupted(images, tmp_path, save_every, kill_at):
    import json

    reference = train(tiny(images, tmp_path / "ref", save_every=save_every))
    config = tiny(images, tmp_path / "killed", save_every=save_every)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(config), str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    last = load_train_checkpoint(tmp_path / "killed" / "last.pt")["train"]
    assert last["step"] == save_every * (kill_at // save_every) < reference["step"]
    log = (tmp_path / "killed" / "log.csv").read_text()
    assert f"\n{kill_at}," in log  # the killed run logged past its checkpoint; resume must drop that

    resumed = train({**config, "resume": True})
    assert resumed == {**reference, **{k: resumed[k] for k in ("out", "last", "best", "log")}}
    for name in ("last.pt", "best.pt"):
        a, b = (load_train_checkpoint(tmp_path / run / name) for run in ("ref", "killed"))
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for key in a["state_dict"]:
            assert torch.equal(a["state_dict"][key], b["state_dict"][key]), (name, key)
        opt_a, opt_b = a["train"]["optimizer"]["state"], b["train"]["optimizer"]["state"]
        for i in opt_a:
            for k in opt_a[i]:
                assert torch.equal(opt_a[i][k], opt_b[i][k]), (name, i, k)
        assert (a["train"]["step"], a["train"]["epoch"], a["train"]["best"]) == \
               (b["train"]["step"], b["train"]["epoch"], b["train"]["best"])
    assert (tmp_path / "killed" / "log.csv").read_text() == (tmp_path / "ref" / "log.csv").read_text()


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_train_with_overrides_and_resume(images, tmp_path, capsys):
    from taskderain.cli import train as cli

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny(images, tmp_path / "run", steps=2)))
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    assert cli.run(parser.parse_args(["train", str(path), "data.batch=3"])) == 0
    assert '"step": 2' in capsys.readouterr().out
    args = parser.parse_args(["train", str(path), "steps=3", "data.batch=3", "--resume"])
    assert cli.run(args) == 0
    assert load_train_checkpoint(tmp_path / "run" / "last.pt")["train"]["step"] == 3


def test_cli_train(images, tmp_path, capsys):
    """Through ``taskderain.cli.main``: overrides after options, resume, errors naming the key."""
    import taskderain.cli as cli_main

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny(images, tmp_path / "run", steps=1)))
    assert cli_main.main(["train", str(path), "data.batch=3"]) == 0
    assert cli_main.main(["train", str(path), "--resume", "steps=2", "data.batch=3"]) == 0
    assert load_train_checkpoint(tmp_path / "run" / "last.pt")["train"]["step"] == 2
    capsys.readouterr()
    assert cli_main.main(["train", str(path), "data.bach=3"]) == 2
    assert "unknown key 'data.bach'" in capsys.readouterr().err
    assert cli_main.main(["train", str(path), "--resume", "steps=3"]) == 2  # batch differs from the run's
    assert "'data.batch' differs (checkpoint 3, now 2)" in capsys.readouterr().err
