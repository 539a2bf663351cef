"""Every registered derainer: any-size input, range, gradients, tiling, checkpoints (timm-style)."""

from __future__ import annotations

import pytest
import torch

from taskderain.inference import derain_tensor
from taskderain.models import (CheckpointError, create_derainer, list_derainers, load_derainer,
                               save_derainer)
from taskderain.models.base import pad_to_multiple

SMALL = [n for n in list_derainers() if n not in ("mspfn", "mspfn_m17n1")]  # big ones: counted in test_mspfn


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean().clamp_min(1e-20)))


def test_registry_lists_the_presets():
    names = list_derainers()
    for required in ("identity", "prenet", "mspfn", "mspfn_m17n1", "mspfn_lite", "mspfn_tiny"):
        assert required in names
    with pytest.raises(KeyError, match="unknown derainer 'nope'.*prenet"):
        create_derainer("nope")


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("size", [(1, 1), (17, 30), (33, 47)])
def test_any_size_in_same_size_out(name, size):
    model = create_derainer(name).eval()
    x = torch.rand(2, 3, *size)
    y = model.derain(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1


@pytest.mark.parametrize("name", [n for n in SMALL if n != "identity"])
def test_gradient_reaches_input_and_every_parameter_group(name):
    model = create_derainer(name).train()
    x = torch.rand(1, 3, 24, 20, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) > 0.5 * len(list(model.parameters()))


@pytest.mark.parametrize("name", SMALL)
def test_forward_is_not_clamped_but_derain_is(name):
    model = create_derainer(name).eval()
    x = torch.rand(1, 3, 16, 16) * 3 - 1  # out-of-range input passes through identity-like paths
    raw = model(x)
    if name == "identity":
        assert torch.equal(raw, x)
    assert float(model.derain(x).max()) <= 1 and float(model.derain(x).min()) >= 0


@pytest.mark.parametrize("name", ["prenet", "mspfn_tiny"])
def test_tiled_equals_untiled(name):
    torch.manual_seed(1)
    model = create_derainer(name).eval()
    x = torch.rand(1, 3, 150, 190)
    whole = derain_tensor(model, x)
    tiled = derain_tensor(model, x, tile=96, overlap=48)
    assert psnr_db(whole, tiled) >= 50


def test_pad_to_multiple_reflects_and_falls_back_for_tiny_images():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (4, 4)
    assert torch.equal(padded[..., 3, :], x[..., 1, :])  # reflect: row 3 mirrors row 1
    assert pad_to_multiple(torch.ones(1, 1, 1, 1), 8).shape[-2:] == (8, 8)  # replicate fallback


def test_checkpoint_roundtrip_keeps_config_and_metadata(tmp_path):
    model = create_derainer("prenet", stages=2)
    path = save_derainer(model, tmp_path / "p.pt", metadata={"training_data": "unit test", "metrics": {"psnr_y": 1.5}})
    again = load_derainer(path)
    assert again.config["stages"] == 2 and again.preset == "prenet"
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(model.eval()(x), again.eval()(x))
    assert torch.equal(create_derainer("prenet", weights=path).eval()(x), model(x))
    saved = torch.load(path, weights_only=True)
    assert saved["metadata"]["metrics"] == {"psnr_y": 1.5} and saved["metadata"]["taskderain_version"]


def test_half_checkpoint_is_smaller_and_loads_into_float32(tmp_path):
    model = create_derainer("mspfn_tiny")
    full, half = save_derainer(model, tmp_path / "f.pt"), save_derainer(model, tmp_path / "h.pt", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    again = load_derainer(half)
    assert all(p.dtype == torch.float32 for p in again.parameters())
    assert torch.load(half, weights_only=True)["metadata"]["storage"] == "float16"
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a.half().float(), b) if a.is_floating_point() else torch.equal(a, b), name


def test_wrong_architecture_checkpoint_names_both(tmp_path):
    path = save_derainer(create_derainer("mspfn_tiny"), tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match=r"tiny\.pt holds a 'mspfn' derainer.*'prenet'"):
        create_derainer("prenet", weights=path)


def test_wrong_shape_checkpoint_names_file_and_mismatch(tmp_path):
    path = save_derainer(create_derainer("prenet", width=16), tmp_path / "narrow.pt")
    with pytest.raises(CheckpointError, match=r"narrow\.pt.*does not fit.*'prenet'(.|\n)*shape mismatches"):
        create_derainer("prenet", weights=path, width=32)


def test_plain_state_dict_of_other_model_is_rejected(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth \(a plain state_dict\) does not fit(.|\n)*missing keys"):
        create_derainer("prenet", weights=tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="without architecture"):
        load_derainer(tmp_path / "other.pth")


def test_corrupt_and_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        create_derainer("prenet", weights=tmp_path / "gone.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        create_derainer("prenet", weights=tmp_path / "bad.pt")


def test_official_prenet_weights_load_strict(shared):
    model = create_derainer("prenet", weights=shared / "weights" / "prenet6_rain100l.pth")
    assert sum(p.numel() for p in model.parameters()) == 168_963
