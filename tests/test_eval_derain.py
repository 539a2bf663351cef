"""`eval-derain` against figures measured once on all 100 Rain100L pairs (see the pinned values).

Full-set figures (`taskderain eval-derain ../shared/data/rain100l --model ...`, MATLAB Y rounded):
identity 26.898 dB / SSIM 0.8382; prenet + prenet6_rain100l.pth 37.608 dB / 0.9791
(docs/evaluation.md: 26.898 and 37.608). The tests re-score a subset against per-image values
taken from those runs.
"""

from __future__ import annotations

import json

import pytest

from taskderain.cli import main

IDENTITY_FIRST5 = {"rain-001": (27.2975, 0.85822), "rain-002": (28.9943, 0.86381), "rain-003": (33.8356, 0.94449),
                   "rain-004": (34.1948, 0.95075), "rain-005": (21.5160, 0.71331)}
PRENET_FIRST2 = {"rain-001": (38.0234, 0.97750), "rain-002": (37.7590, 0.96407)}


def _run(shared, tmp_path, *args):
    out = tmp_path / "r.json"
    assert main(["eval-derain", str(shared / "data" / "rain100l"), *map(str, args), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_identity_scores_the_rainy_input(shared, tmp_path, capsys):
    result = _run(shared, tmp_path, "--model", "identity", "--limit", 5)
    assert set(result) >= {"psnr_y", "ssim_y", "n", "protocol", "per_image"}
    assert result["n"] == 5 and "rounded" in result["protocol"]
    for row in result["per_image"]:
        psnr, ssim = IDENTITY_FIRST5[row["name"]]
        assert row["psnr_y"] == pytest.approx(psnr, abs=1e-4) and row["ssim_y"] == pytest.approx(ssim, abs=1e-5)
    assert result["psnr_y"] == pytest.approx(29.1677, abs=1e-4)
    assert "PSNR-Y 29.168 dB" in capsys.readouterr().out


def test_official_prenet_reproduces_per_image_figures(shared, tmp_path):
    weights = shared / "weights" / "prenet6_rain100l.pth"
    result = _run(shared, tmp_path, "--model", "prenet", "--weights", weights, "--limit", 2)
    for row in result["per_image"]:
        psnr, ssim = PRENET_FIRST2[row["name"]]
        assert row["psnr_y"] == pytest.approx(psnr, abs=0.02) and row["ssim_y"] == pytest.approx(ssim, abs=2e-4)


def test_rgb_and_float_y_protocols_are_labelled(shared, tmp_path):
    result = _run(shared, tmp_path, "--model", "identity", "--limit", 1, "--channel", "rgb")
    assert "psnr_rgb" in result and "RGB" in result["protocol"]
    float_y = _run(shared, tmp_path, "--model", "identity", "--limit", 1, "--float-y")
    assert "float" in float_y["protocol"] and float_y["psnr_y"] != pytest.approx(27.2975, abs=1e-4)


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["eval-derain", str(tmp_path / "nowhere"), "--model", "identity"]) == 2
    assert "nowhere" in capsys.readouterr().err
