"""Restoration losses: hand-computed Charbonnier, Laplacian and MSPFN loss values."""

from __future__ import annotations

import math

import pytest
import torch

from taskderain.losses import CharbonnierLoss, MSPFNLoss, PSNRLoss, charbonnier, laplacian, mspfn_loss, psnr_loss
from taskderain.metrics import psnr


def test_charbonnier_hand_values():
    a = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    b = torch.tensor([0.0, 0.0012], dtype=torch.float64).view(1, 1, 1, 2)
    # sqrt(0 + 5e-4²) = 5e-4 ; sqrt(0.0012² + 5e-4²) = sqrt(1.69e-6) = 1.3e-3
    assert charbonnier(a, b).item() == pytest.approx((5e-4 + 1.3e-3) / 2, rel=1e-12)
    assert charbonnier(a, a, eps=0.1).item() == pytest.approx(0.1)
    assert CharbonnierLoss(eps=0.1)(a, a).item() == pytest.approx(0.1)


def test_charbonnier_eps_scaling_matches_released_range():
    """ε = 1e-3 on [-1, 1] data is 2 × (ε = 5e-4 on [0, 1] data): same minimiser, constant factor."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64), torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64)
    assert charbonnier(2 * a - 1, 2 * b - 1, eps=1e-3).item() == pytest.approx(2 * charbonnier(a, b).item(), rel=1e-12)


def test_charbonnier_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\) vs \(1, 3, 4, 5\)"):
        charbonnier(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_laplacian_impulse_and_zero_padding_per_channel():
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0, 2, 2] = 1.0
    y = laplacian(x)
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = -1.0
    expected[2, 2] = 8.0
    assert torch.equal(y[0, 0], expected)
    assert torch.equal(y[0, 1], torch.zeros(5, 5))  # channels do not mix
    ones = laplacian(torch.ones(1, 1, 3, 3))[0, 0]
    # zero padding: a corner sees 3 in-image neighbours (8-3), an edge 5 (8-5), the centre 8
    assert torch.equal(ones, torch.tensor([[5.0, 3.0, 5.0], [3.0, 0.0, 3.0], [5.0, 3.0, 5.0]]))


def test_mspfn_loss_hand_value():
    clean = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    d = 0.0012
    derained = clean + d
    e = 5e-4
    pixel = math.sqrt(d * d + e * e)
    # Laplacian of the constant offset d on 4x4: 4 corners 5d, 8 edges 3d, 4 interior 0
    edge = (4 * math.sqrt((5 * d) ** 2 + e * e) + 8 * math.sqrt((3 * d) ** 2 + e * e) + 4 * e) / 16
    expected = pixel + 0.05 * edge
    assert mspfn_loss(derained, clean).item() == pytest.approx(expected, rel=1e-9)
    assert MSPFNLoss()(derained, clean).item() == pytest.approx(expected, rel=1e-9)
    assert MSPFNLoss(edge_weight=0.0)(derained, clean).item() == pytest.approx(pixel, rel=1e-9)


def test_mspfn_loss_gradient_points_to_target():
    clean = torch.rand(1, 3, 8, 8)
    derained = (clean + 0.1).requires_grad_(True)
    mspfn_loss(derained, clean).backward()
    assert torch.isfinite(derained.grad).all()
    assert (derained.grad.sum() > 0).item()  # descending lowers the too-bright output


def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64) * torch.tensor([0.01, 0.05, 0.2]).view(3, 1, 1, 1)
    derained = clean + noise
    per_image = [10 * math.log10(1 / float((noise[i] ** 2).mean())) for i in range(3)]
    assert psnr_loss(derained, clean, eps=0).item() == pytest.approx(-sum(per_image) / 3, rel=1e-9)
    assert PSNRLoss(eps=0)(derained, clean).item() == pytest.approx(-sum(per_image) / 3, rel=1e-9)
    # the protocol's PSNR (8-bit RGB) agrees on 8-bit images
    a = (clean[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    b = ((clean[0] + noise[0]).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    as_tensor = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255
    assert -psnr_loss(as_tensor(b), as_tensor(a), eps=0).item() == pytest.approx(psnr(b, a, channel="rgb"), abs=1e-6)
    assert psnr_loss(clean, clean).item() == pytest.approx(-80.0)  # eps: finite at zero error
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_loss(clean, clean[:, :, :8])


def test_psnr_loss_weighs_every_image_alike_unlike_the_pixel_loss():
    """Halving the error of the nearly clean image lowers the PSNR loss as much as halving the
    heavy one's; the pixel loss is moved ~10x more by the heavy image."""
    clean = torch.full((2, 3, 8, 8), 0.5, dtype=torch.float64)
    error = torch.tensor([0.01, 0.1], dtype=torch.float64).view(2, 1, 1, 1).expand(2, 3, 8, 8)

    def drop(loss, i):
        halved = error.clone()
        halved[i] = halved[i] / 2
        return (loss(clean + error, clean) - loss(clean + halved, clean)).item()

    exact = lambda d, c: psnr_loss(d, c, eps=0)
    assert drop(exact, 0) == pytest.approx(drop(exact, 1), rel=1e-9)
    assert drop(exact, 0) == pytest.approx(10 * math.log10(4) / 2, rel=1e-6)
    assert drop(charbonnier, 1) > 9 * drop(charbonnier, 0)
