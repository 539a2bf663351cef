"""The ``anchor`` loss term: low-pass distance to a frozen start copy, which resumes exactly."""

from __future__ import annotations

import csv

import pytest
import torch

from taskderain.config import ConfigError
from taskderain.losses.anchor import StartAnchor, anchor_loss, lowpass
from taskderain.losses.terms import LossTerms, Step
from taskderain.models import create_derainer
from taskderain.train import load_train_checkpoint, train

from training_setup import tiny_train_config, write_clean_images

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lowpass_and_anchor_loss_see_tone_not_texture():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 20, generator=g, dtype=torch.float64)
    assert lowpass(x, 4).shape == (2, 3, 5, 5)
    assert lowpass(x, 8).shape == (2, 3, 3, 3)  # partial cells at the border count
    assert lowpass(x, 8)[0, 0, 2, 2].item() == pytest.approx(x[0, 0, 16:, 16:].mean().item(), rel=1e-12)
    assert torch.equal(lowpass(x, 1), x)
    checker = 0.1 * (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)).remainder(2).mul(2).sub(1)
    texture = x[..., :16, :16] + checker.to(x)  # a zero-mean ±0.1 pattern at period 2
    assert anchor_loss(texture, x[..., :16, :16], scale=8).item() == pytest.approx(5e-4, rel=1e-6)  # ε only
    assert anchor_loss(texture, x[..., :16, :16], scale=1).item() == pytest.approx(0.1, rel=1e-3)
    assert anchor_loss(x + 0.04, x, scale=8).item() == pytest.approx((0.04 ** 2 + 5e-4 ** 2) ** 0.5, rel=1e-9)


def test_anchor_is_held_to_the_first_steps_derainer():
    derainer = create_derainer("mspfn_tiny")
    pipeline = type("P", (), {"derainer": derainer, "heads": {}})()
    terms = LossTerms({"anchor": {"weight": 2.0, "scale": 4}}, pipeline)
    rainy = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    step = lambda: Step(pipeline, {}, rainy, derainer(rainy).float())  # noqa: E731
    total, parts = terms(step())
    assert parts["anchor"] == pytest.approx(5e-4, rel=1e-4)  # the derainer is its start: ε only
    with torch.no_grad():
        for p in derainer.parameters():
            p.add_(0.01)
    total, parts = terms(step())
    assert parts["anchor"] > 1e-3 and total.item() == pytest.approx(2 * parts["anchor"])
    total.backward()  # gradients reach the trained derainer, never the frozen start
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in derainer.parameters())
    assert all(not p.requires_grad for p in terms.objects["anchor"].start.parameters())
    with pytest.raises(KeyError, match=r"loss.psnr: unknown option\(s\) eps; it takes no options"):
        LossTerms({"psnr": {"weight": 1.0, "eps": 1e-3}}, pipeline)  # function terms are checked too
    derainer.requires_grad_(False)
    assert "anchor" not in LossTerms({"anchor": 1.0}, pipeline).names  # nothing trains: left out
    with pytest.raises(ValueError, match=r"scale must be an integer >= 1, got 0.5"):
        StartAnchor(scale=0.5)
    with pytest.raises(KeyError, match=r"loss.anchor: scale must be an integer >= 1, got 0"):
        LossTerms({"anchor": {"weight": 1.0, "scale": 0}}, type("P", (), {"derainer": derainer.requires_grad_(True),
                                                                          "heads": {}})())


def test_anchor_trains_logs_and_resumes_to_the_same_start(tmp_path):
    images = write_clean_images(tmp_path / "clean", 4)
    config = {**tiny_train_config(images, tmp_path / "whole", steps=4, save_every=1),
              "loss": {"restoration": 1.0, "anchor": 1.0}, "optim": {"lr": 1e-2}}
    train(config)
    with open(tmp_path / "whole" / "log.csv", newline="") as handle:
        anchor = [float(r["loss_anchor"]) for r in csv.DictReader(handle) if r["loss_anchor"]]
    assert anchor[0] == pytest.approx(5e-4, rel=1e-3) and anchor[-1] > 2 * anchor[0]  # 0 at the start, then drift
    state = load_train_checkpoint(tmp_path / "whole" / "last.pt")["train"]["plugins"]["loss_terms"]["anchor"]
    assert set(state["start"]) == set(create_derainer("mspfn_tiny").state_dict())
    train({**config, "out": str(tmp_path / "cut"), "steps": 2})
    train({**config, "out": str(tmp_path / "cut"), "resume": True})  # the anchor must be the step-0 copy again
    assert (tmp_path / "cut" / "log.csv").read_text() == (tmp_path / "whole" / "log.csv").read_text()
    a = load_train_checkpoint(tmp_path / "whole" / "last.pt")["state_dict"]
    c = load_train_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(ConfigError, match=r"loss.anchor: unknown option\(s\) scal; it takes scale \(and weight\)"):
        train({**config, "out": str(tmp_path / "bad"), "loss": {"anchor": {"weight": 1.0, "scal": 8}}})
