"""PSNR / SSIM against the deraining protocol: hand-computed cases, an independent SSIM, torch
twins, and the Rain100L oracle figures (docs/evaluation.md in ../shared)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from taskderain.imageio import read_rgb
from taskderain.metrics import (
    PROTOCOL,
    PSNR,
    SSIM,
    describe_protocol,
    psnr,
    psnr_torch,
    rgb_to_y,
    ssim,
    ssim_map,
    ssim_torch,
    to_uint8,
)


def _const(value, shape=(16, 16)) -> np.ndarray:
    return np.full((*shape, 3), value, dtype=np.uint8)


def _batch(images) -> torch.Tensor:
    """(H,W,3) arrays → (B,3,H,W) float64 tensor, uint8 scaled to [0,1]."""
    arrays = [np.asarray(im, dtype=np.float64) / (255.0 if im.dtype == np.uint8 else 1.0) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


# ---- colour step -----------------------------------------------------------------------------


def test_rgb_to_y_matlab_primaries_and_range():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    # MATLAB: rgb2ycbcr(uint8([255 0 0])) -> Y = 81; float: 16 + 65.481 etc.
    np.testing.assert_array_equal(rgb_to_y(rgb)[0], [81, 145, 41, 16, 235])
    np.testing.assert_allclose(rgb_to_y(rgb, round_y=False)[0], [81.481, 144.553, 40.966, 16, 235], atol=1e-12)


def test_rgb_to_y_rounds_to_nearest_integer():
    # gray v gives Y = 16 + 219 v / 255; v = 0..255 covers fractional parts on both sides of .5
    gray = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    exact = 16.0 + 219.0 * np.arange(256) / 255.0
    np.testing.assert_array_equal(rgb_to_y(gray)[0], np.floor(exact + 0.5))
    assert np.abs(rgb_to_y(gray, round_y=False)[0] - exact).max() < 1e-12


def test_float_inputs_are_rounded_to_8_bits(rng):
    a = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    jitter = rng.uniform(-0.49, 0.49, a.shape) / 255.0
    a_float = a / 255.0 + jitter  # rounds back to a
    np.testing.assert_array_equal(to_uint8(a_float), a)
    assert psnr(a_float, b) == psnr(a, b)
    assert ssim(a_float, b) == ssim(a, b)
    np.testing.assert_array_equal(to_uint8(np.array([[[-0.2, 1.3, 0.5]]])), [[[0, 255, 128]]])


def test_float_inputs_in_0_255_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(_const(100).astype(np.float32), _const(90).astype(np.float32))


# ---- PSNR ------------------------------------------------------------------------------------


def test_psnr_black_vs_white_y_uses_peak_255_on_studio_swing():
    # Y: 16 vs 235 everywhere -> RMSE 219 -> 20 log10(255/219) = 1.3228 dB (peak 255, not 219)
    assert psnr(_const(0), _const(255)) == pytest.approx(20 * math.log10(255 / 219), abs=1e-12)
    assert psnr(_const(0), _const(255), channel="rgb") == pytest.approx(0.0, abs=1e-12)


def test_psnr_known_mse():
    a = _const(100, (8, 8))
    b = a.copy()
    b[:, :4] += 10  # half the pixels off by 10 in every channel -> MSE 50
    assert psnr(a, b, channel="rgb") == pytest.approx(20 * math.log10(255 / math.sqrt(50)), abs=1e-12)
    # gray: Y difference = 219*10/255 (float), so MSE_Y = (8.588...)^2 / 2
    expected = 20 * math.log10(255 / (219 * 10 / 255 / math.sqrt(2)))
    assert psnr(a, b, round_y=False) == pytest.approx(expected, abs=1e-9)
    # rounded Y: gray 100 -> 101.88 -> 102, gray 110 -> 110.47 -> 110: half the pixels off by 8
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / math.sqrt(32)), abs=1e-12)


def test_psnr_identical_is_inf_and_symmetric(rng):
    a = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, b) == psnr(b, a)
    assert math.isinf(float(psnr_torch(_batch([a]), _batch([a]), quantize=True)[0]))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(16, 16, 3\).*\(16, 12, 3\)"):
        psnr(_const(0), _const(0, (16, 12)))
    with pytest.raises(ValueError, match=r"\(16, 16, 3\).*\(16, 12, 3\)"):
        ssim(_const(0), _const(0, (16, 12)))
    with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 12\)"):
        psnr_torch(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 12))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="channel"):
        psnr(_const(0), _const(1), channel="ycbcr")
    with pytest.raises(ValueError, match="channel"):
        SSIM(channel="Y ")
    with pytest.raises(ValueError, match="reduction"):
        PSNR(reduction="avg")
    with pytest.raises(ValueError, match="H, W"):
        psnr_torch(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="11x11"):
        ssim(_const(0, (10, 40)), _const(0, (10, 40)))


# ---- SSIM ------------------------------------------------------------------------------------


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s ssim_index.m written out: fspecial window, explicit 'valid' windows."""
    r = np.arange(-5, 6, dtype=np.float64)
    window = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (window * px).sum(), (window * py).sum()
            vx = (window * px * px).sum() - mx * mx
            vy = (window * py * py).sum() - my * my
            cxy = (window * px * py).sum() - mx * my
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_independent_reference(rng):
    a = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    ya, yb = (16.0 + im.astype(np.float64) @ weights for im in (a, b))
    assert ssim(a, b, round_y=False) == pytest.approx(_ssim_reference(ya, yb), abs=1e-12)
    assert ssim(a, b) == pytest.approx(_ssim_reference(np.floor(ya + 0.5), np.floor(yb + 0.5)), abs=1e-12)
    per_channel = [_ssim_reference(a[..., c].astype(float), b[..., c].astype(float)) for c in range(3)]
    assert ssim(a, b, channel="rgb") == pytest.approx(np.mean(per_channel), abs=1e-12)
    assert ssim_map(a, b).shape == (9, 13, 1)


def test_ssim_identical_symmetric_and_bounded(rng):
    a = rng.integers(0, 256, (30, 25, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (30, 25, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-15)
    assert ssim(a, a, channel="rgb") == pytest.approx(1.0, abs=1e-15)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-15)
    assert -1.0 <= ssim(a, b) < 0.2  # independent noise images are barely similar


def test_ssim_of_constant_images_is_the_luminance_term():
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)  # zero variance: contrast term = C2/C2
    assert ssim(_const(100), _const(110), channel="rgb") == pytest.approx(expected, abs=1e-12)


def test_ssim_drops_with_noise(rng):
    a = rng.integers(40, 216, (32, 32, 3), dtype=np.uint8)
    values = [ssim(np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8), a) for s in (2, 10, 30)]
    assert values[0] > values[1] > values[2]


# ---- torch twins -----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["y", "rgb"])
@pytest.mark.parametrize("round_y", [True, False])
def test_torch_quantized_matches_numpy(rng, channel, round_y):
    pred = rng.uniform(-0.05, 1.05, (2, 24, 27, 3))  # off-grid floats, some outside [0, 1]
    target = rng.uniform(0.0, 1.0, (2, 24, 27, 3))
    tp, tt = _batch(list(pred)).float(), _batch(list(target)).float()
    got_psnr = psnr_torch(tp, tt, channel, quantize=True, round_y=round_y)
    got_ssim = ssim_torch(tp, tt, channel, quantize=True, round_y=round_y)
    assert got_psnr.shape == got_ssim.shape == (2,)
    # numpy sees exactly the float32 values torch sees
    for i in range(2):
        p, t = tp[i].permute(1, 2, 0).double().numpy(), tt[i].permute(1, 2, 0).double().numpy()
        assert float(got_psnr[i]) == pytest.approx(psnr(p, t, channel, round_y), abs=1e-6)
        assert float(got_ssim[i]) == pytest.approx(ssim(p, t, channel, round_y), abs=1e-6)


def test_torch_data_range_255_equals_unit_range(rng):
    x = torch.from_numpy(rng.uniform(0, 1, (1, 3, 16, 16)))
    y = torch.from_numpy(rng.uniform(0, 1, (1, 3, 16, 16)))
    assert torch.allclose(psnr_torch(x, y), psnr_torch(x * 255, y * 255, data_range=255.0))
    assert torch.allclose(ssim_torch(x, y), ssim_torch(x * 255, y * 255, data_range=255.0))


def test_torch_differentiable_float_path_close_to_numpy_float_y(rng):
    a = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
    pred = _batch([a]).float().requires_grad_(True)
    target = _batch([b]).float()
    p, s = psnr_torch(pred, target), ssim_torch(pred, target)
    assert p.dtype == s.dtype == torch.float32
    assert p.item() == pytest.approx(psnr(a, b, round_y=False), abs=1e-4)
    assert s.item() == pytest.approx(ssim(a, b, round_y=False), abs=1e-5)
    (p + s).sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_modules_hold_options_and_reduce(rng):
    x = torch.from_numpy(rng.uniform(0, 1, (3, 3, 16, 16)))
    y = torch.from_numpy(rng.uniform(0, 1, (3, 3, 16, 16)))
    per_image = psnr_torch(x, y, "rgb", quantize=True)
    assert torch.equal(PSNR("rgb", quantize=True)(x, y), per_image)
    assert torch.allclose(PSNR("rgb", quantize=True, reduction="mean")(x, y), per_image.mean())
    assert torch.allclose(SSIM(reduction="sum")(x, y), ssim_torch(x, y).sum())
    assert "quantize=True" in repr(PSNR(quantize=True))


def test_protocol_string():
    assert PROTOCOL == describe_protocol("y", True)
    for part in ("rgb2ycbcr", "BT.601", "rounded", "8-bit", "peak 255", "11x11", "sigma 1.5", "valid"):
        assert part in PROTOCOL
    assert "float" in describe_protocol("y", False) and "RGB" in describe_protocol("rgb")


# ---- Rain100L oracle (../shared) -------------------------------------------------------------

RAIN100L_PSNR_Y = 26.898  # docs/evaluation.md, Y rounded as MATLAB does
RAIN100L_PSNR_Y_FLOAT = 26.901  # docs/evaluation.md, float Y
RAIN100L_SSIM_Y = 0.838215  # measured here (Y rounded); no published reference
RAIN100L_SSIM_Y_FLOAT = 0.838372  # measured here (float Y)


@pytest.fixture(scope="module")
def rain100l_pairs(shared):
    root = shared / "data" / "rain100l"
    return [
        (read_rgb(root / "rainy" / f"rain-{i:03d}.png"), read_rgb(root / f"norain-{i:03d}.png")) for i in range(1, 101)
    ]


@pytest.mark.shared
def test_rain100l_rainy_input_psnr_y_matches_reference(rain100l_pairs):
    start = time.perf_counter()
    rounded = np.mean([psnr(a, b) for a, b in rain100l_pairs])
    floaty = np.mean([psnr(a, b, round_y=False) for a, b in rain100l_pairs])
    assert rounded == pytest.approx(RAIN100L_PSNR_Y, abs=0.0015)
    assert floaty == pytest.approx(RAIN100L_PSNR_Y_FLOAT, abs=0.0015)
    assert floaty > rounded  # the documented ~0.003 dB gap, in this direction
    assert time.perf_counter() - start < 10


@pytest.mark.shared
def test_rain100l_rainy_input_ssim_y_pinned(rain100l_pairs):
    assert np.mean([ssim(a, b) for a, b in rain100l_pairs]) == pytest.approx(RAIN100L_SSIM_Y, abs=2e-6)
    a, b = rain100l_pairs[0]
    assert ssim(a, b, round_y=False) != ssim(a, b)


@pytest.mark.shared
def test_rain100l_torch_matches_numpy_on_real_pair(rain100l_pairs):
    pairs = rain100l_pairs[:2]
    assert pairs[0][0].shape == pairs[1][0].shape  # same orientation, so they batch
    pred, target = _batch([a for a, _ in pairs]).float(), _batch([b for _, b in pairs]).float()
    got_p, got_s = psnr_torch(pred, target, quantize=True), ssim_torch(pred, target, quantize=True)
    for i, (a, b) in enumerate(pairs):
        assert float(got_p[i]) == pytest.approx(psnr(a, b), abs=1e-6)
        assert float(got_s[i]) == pytest.approx(ssim(a, b), abs=1e-6)
