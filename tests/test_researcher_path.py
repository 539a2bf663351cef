"""The researcher's path of the README: a user's own loss term (a detector-feature perceptual loss,
taken verbatim from the README) trained with ``taskderain train`` — logged, resumed exactly, and
trained under torchrun — plus stateful callbacks that resume exactly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from taskderain.config import ConfigError
from taskderain.train import Callback, load_train_checkpoint, train
from taskderain.train.curves import read_log

from training_setup import tiny_train_config, write_clean_images, write_yolo_data

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def readme_block(marker: str) -> str:
    """The README's fenced code block whose first line is ``marker``."""
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [b for b in blocks if b.startswith(marker)]
    assert len(found) == 1, f"README has {len(found)} blocks starting with {marker!r}"
    return found[0]


@pytest.fixture(scope="module")
def user_code(tmp_path_factory) -> Path:
    """The README's ``my_losses.py``, written where a user would keep it (not inside the package)."""
    folder = tmp_path_factory.mktemp("user")
    code = readme_block("# my_losses.py")
    assert len(code.splitlines()) <= 30  # the README's promise: ~30 lines of the user's own file
    (folder / "my_losses.py").write_text(code)
    return folder


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory) -> Path:
    return write_yolo_data(tmp_path_factory.mktemp("yolo"))


def feature_config(data: Path, out: Path, steps: int = 2, batch: int = 2) -> dict:
    """The README's cascade-feature.yaml, on tiny models and the tiny YOLO set."""
    spec = yaml.safe_load(readme_block("# cascade-feature.yaml"))
    t = spec["train"]
    assert t["loss"]["feature"]["fn"] == "my_losses:feature_l1" and t["mode"] == "cascade"
    assert spec["heads"]["detector"]["type"] == "yolo"
    return {**spec, "device": "cpu", "derainer": {"name": "mspfn_tiny"},
            "heads": {"detector": {"type": "yolo", "cfg": "yolov8n.yaml", "nc": 3}},
            "train": {**t, "out": str(out), "steps": steps, "seed": 1, "save_every": 1,
                      "data": {**t["data"], "detection": str(data), "imgsz": 64, "val_split": 2, "batch": batch}}}


def more(config: dict, **train) -> dict:
    """``config`` with its train section updated."""
    return {**config, "train": {**config["train"], **train}}


def test_user_feature_term_is_trained_logged_and_resumed_exactly(user_code, yolo_data, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(user_code))
    whole = train(feature_config(yolo_data, tmp_path / "whole", steps=3))
    rows = (tmp_path / "whole" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,loss,loss_restoration,loss_feature,")  # detection: 0 is not computed
    losses, _ = read_log(tmp_path / "whole" / "log.csv")
    first = dict(zip(rows[0].split(","), rows[1].split(",")))
    feature, restoration = float(first["loss_feature"]), float(first["loss_restoration"])
    assert feature > 0 and float(first["loss"]) == pytest.approx(restoration + 0.1 * feature, rel=1e-5)
    assert [s for s, _ in losses] == [1, 2, 3]
    # the term's gradient moves the derainer: with it weighted up, the same steps end elsewhere
    strong = feature_config(yolo_data, tmp_path / "strong", steps=3)
    strong["train"]["loss"]["feature"]["weight"] = 10.0
    train(strong)
    a = load_train_checkpoint(tmp_path / "whole" / "last.pt")["state_dict"]
    b = load_train_checkpoint(tmp_path / "strong" / "last.pt")["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # exact resume: 2 steps, then resume to 3 == 3 straight
    part = feature_config(yolo_data, tmp_path / "cut", steps=2)
    train(part)
    resumed = train(more(part, steps=3, resume=True))
    c = load_train_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert resumed["step"] == whole["step"] == 3
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "cut" / "log.csv").read_text() == (tmp_path / "whole" / "log.csv").read_text()


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is needed")
def test_user_feature_term_under_torchrun_matches_one_process(user_code, yolo_data, tmp_path, monkeypatch):
    config = feature_config(yolo_data, tmp_path / "ddp", steps=2, batch=2)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(user_code)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "taskderain", "train", str(path)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.syspath_prepend(str(user_code))
    train(feature_config(yolo_data, tmp_path / "one", steps=2, batch=2))
    a = load_train_checkpoint(tmp_path / "ddp" / "last.pt")["state_dict"]
    b = load_train_checkpoint(tmp_path / "one" / "last.pt")["state_dict"]
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff < 1e-4, diff  # every term is a mean over images: the averaged gradient is the 1-process one
    rows = {run: (tmp_path / run / "log.csv").read_text().splitlines() for run in ("ddp", "one")}
    assert rows["ddp"][0] == rows["one"][0] and "loss_feature" in rows["ddp"][0]
    ddp_term = float(dict(zip(rows["ddp"][0].split(","), rows["ddp"][1].split(",")))["loss_feature"])
    one_term = float(dict(zip(rows["one"][0].split(","), rows["one"][1].split(",")))["loss_feature"])
    assert ddp_term == pytest.approx(one_term, rel=1e-4)  # the logged term is the mean over the ranks


def test_bad_user_terms_are_config_errors(yolo_data, tmp_path):
    config = feature_config(yolo_data, tmp_path / "bad")
    config["train"]["loss"]["feature"]["fn"] = "no_such_module_xyz:feature_l1"
    with pytest.raises(ConfigError, match=r"'loss.feature.fn': .*cannot import module 'no_such_module_xyz'"):
        train(config)
    config["train"]["loss"]["feature"]["fn"] = "feature_l1"
    with pytest.raises(ConfigError, match=r"must be an import path 'package.module:attribute'"):
        train(config)


class CountSteps(Callback):
    """A stateful callback: counts steps and validations; its count must survive a resume."""

    def __init__(self) -> None:
        self.steps, self.validations, self.checkpoints = 0, 0, 0

    def on_step_end(self, trainer) -> None:
        self.steps += 1
        assert trainer.last_parts == {}  # restoration mode: the loss has no named terms

    def on_validation_end(self, trainer, metrics) -> None:
        self.validations += 1
        assert set(metrics) == {"psnr_y"}

    def on_checkpoint(self, trainer, path) -> None:
        self.checkpoints += 1
        assert Path(path).exists()

    def state_dict(self):
        return {"steps": self.steps, "validations": self.validations}

    def load_state_dict(self, state) -> None:
        self.steps, self.validations = state["steps"], state["validations"]


def test_callbacks_hooks_and_state_resume(tmp_path):
    images = write_clean_images(tmp_path / "clean", 6)
    first = CountSteps()
    train(tiny_train_config(images, tmp_path / "run", steps=2), callbacks=[first])
    assert first.steps == 2 and first.validations >= 1 and first.checkpoints >= 1
    again = CountSteps()
    train({**tiny_train_config(images, tmp_path / "run", steps=4), "resume": True}, callbacks=[again])
    assert again.steps == 4  # 2 restored from the checkpoint + 2 new
    stored = load_train_checkpoint(tmp_path / "run" / "last.pt")["train"]["plugins"]["callbacks"]
    assert stored == [{"steps": 4, "validations": again.validations}]
    with pytest.raises(ConfigError, match=r"'callbacks\[0\]'.*not a taskderain.train.Callback"):
        train({**tiny_train_config(images, tmp_path / "other", steps=1), "callbacks": ["builtins:dict"]})


def test_restoration_mode_takes_pixel_terms_logs_and_resumes_them(tmp_path):
    images = write_clean_images(tmp_path / "clean", 4)

    def first_row(run: str) -> dict:
        rows = (tmp_path / run / "log.csv").read_text().splitlines()
        return dict(zip(rows[0].split(","), rows[1].split(",")))

    train(tiny_train_config(images, tmp_path / "plain", steps=2))
    train({**tiny_train_config(images, tmp_path / "same", steps=2), "loss": {"restoration": 1.0}})
    assert first_row("same")["loss"] == first_row("plain")["loss"]  # the same maths through the terms
    assert "loss_restoration" not in first_row("plain")  # no section: the log as it always was
    config = {**tiny_train_config(images, tmp_path / "whole", steps=3), "loss": {"psnr": 0.003}}
    train(config)
    row = first_row("whole")
    psnr_db = -float(row["loss_psnr"])
    assert 5 < psnr_db < 60
    assert float(row["loss"]) == pytest.approx(float(row["loss_restoration"]) - 0.003 * psnr_db, rel=1e-5)
    train({**config, "out": str(tmp_path / "cut"), "steps": 2})
    train({**config, "out": str(tmp_path / "cut"), "resume": True})
    a = load_train_checkpoint(tmp_path / "whole" / "last.pt")["state_dict"]
    c = load_train_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "cut" / "log.csv").read_text() == (tmp_path / "whole" / "log.csv").read_text()
    for term in ("detection", "detector_features"):  # they need a head: an error, not a silent no-op
        with pytest.raises(ConfigError, match=rf"'loss.{term}' needs a task head; mode 'restoration'"):
            train({**tiny_train_config(images, tmp_path / term, steps=1), "loss": {term: 0.1}})


def test_a_nan_term_is_named(user_code, yolo_data, tmp_path, monkeypatch):
    (user_code / "nan_term.py").write_text("import torch\n\ndef nan(step):\n    return step.derained.sum() * float('nan')\n")
    monkeypatch.syspath_prepend(str(user_code))
    config = feature_config(yolo_data, tmp_path / "nan", steps=1)
    config["train"]["loss"]["bad"] = {"fn": "nan_term:nan", "weight": 1.0}
    with pytest.raises(FloatingPointError, match=r"loss is nan \(terms: restoration [0-9.e-]+, feature [0-9.e-]+, bad nan\) at step 1"):
        train(config)
