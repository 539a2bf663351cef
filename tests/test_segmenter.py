"""Segmenter (smp): any-size logits, loss with ignore_index, training, checkpoints, offline weights."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from taskderain.models.checkpoint import CheckpointError
from taskderain.stages import Segmenter, create_segmenter, load_segmenter, save_segmenter
from taskderain.stages import segmenter as segmenter_module

SMALL = dict(encoder="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8))  # fast on CPU


def small_unet(num_classes: int = 3, **kwargs) -> Segmenter:
    return Segmenter("Unet", num_classes=num_classes, **{**SMALL, **kwargs})


def test_importing_stages_does_not_import_heavy_libraries():
    code = ("import sys, taskderain.stages, taskderain.stages.detector, taskderain.stages.segmenter; "
            "heavy = [m for m in ('ultralytics', 'segmentation_models_pytorch') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("arch,kwargs", [("Unet", SMALL), ("FPN", {"encoder": "resnet18"}),
                                         ("DeepLabV3Plus", {"encoder": "resnet18"})])
@pytest.mark.parametrize("size", [(37, 61), (1, 1), (64, 32)])
def test_logits_at_input_resolution_any_size(arch, kwargs, size):
    seg = Segmenter(arch, num_classes=4, **kwargs).eval()
    logits = seg(torch.rand(2, 3, *size))
    assert logits.shape == (2, 4, *size)
    assert torch.isfinite(logits).all()
    masks = seg.predict(torch.rand(2, 3, *size))
    assert masks.shape == (2, *size) and masks.dtype == torch.long and 0 <= masks.min() and masks.max() < 4


def test_padding_is_internal_and_cropped_back():
    seg = Segmenter("FPN", encoder="resnet18", num_classes=2).eval()
    assert seg.pad_multiple == 32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = seg(x)
        # an input that is already a multiple of 32 must not be padded: the logits are the model's own
        own = seg.model((x - seg.mean) / seg.std)
    torch.testing.assert_close(full, own)


def test_normalisation_uses_imagenet_statistics():
    seg = small_unet()
    torch.testing.assert_close(seg.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(seg.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert "mean" not in seg.state_dict()  # buffers are config, not weights


def test_gradient_reaches_input():
    seg = small_unet()
    x = torch.rand(2, 3, 37, 61, requires_grad=True)
    masks = torch.randint(0, 3, (2, 37, 61))
    terms = seg.loss(x, {"semantic": masks})
    assert set(terms) == {"dice", "ce"}
    torch.testing.assert_close(sum(terms.values()), seg.criterion(seg(x), masks))  # the head terms sum to Dice + CE
    sum(terms.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    unlabelled = seg.loss(x, {"semantic": torch.full((2, 37, 61), 255)})
    assert all(float(v.detach()) == 0.0 for v in unlabelled.values())


def test_ignored_pixels_do_not_contribute():
    seg = small_unet()
    logits = torch.randn(2, 3, 16, 20)
    masks = torch.randint(0, 3, (2, 16, 20))
    masks[:, :8] = 255
    base = seg.criterion(logits, masks)
    changed = logits.clone()
    changed[:, :, :8] = torch.randn(2, 3, 8, 20) * 10  # only where the mask says ignore
    torch.testing.assert_close(seg.criterion(changed, masks), base)
    changed[:, :, 8:] += torch.randn(2, 3, 8, 20)  # labelled pixels do count
    assert not torch.allclose(seg.criterion(changed, masks), base)


def test_all_ignored_mask_gives_zero_loss_with_a_gradient():
    seg = small_unet()
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    loss = seg.criterion(logits, torch.full((1, 8, 8), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_loss_is_dice_plus_cross_entropy():
    seg = small_unet()
    logits = torch.randn(2, 3, 8, 8)
    masks = torch.randint(0, 3, (2, 8, 8))
    probs = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    dice = 1 - 2 * (probs * onehot).sum((0, 2, 3)) / (probs + onehot).sum((0, 2, 3))
    expected = dice.mean() + torch.nn.functional.cross_entropy(logits, masks)
    torch.testing.assert_close(seg.criterion(logits, masks), expected, rtol=1e-4, atol=1e-5)


def test_bad_mask_values_are_named():
    seg = small_unet()
    with pytest.raises(ValueError, match=r"\[7\].*ignore_index=255"):
        seg.criterion(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 7))
    with pytest.raises(ValueError, match="do not match"):
        seg.criterion(torch.randn(1, 3, 4, 4), torch.zeros(1, 5, 4))


def test_loss_decreases_on_a_fixed_batch():
    seg = small_unet()
    x = torch.rand(2, 3, 32, 48)
    masks = (x[:, 0] > 0.5).long() + (x[:, 1] > 0.7).long()  # learnable from the pixels
    masks[:, :4] = 255
    optimiser = torch.optim.Adam(seg.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = seg.criterion(seg(x), masks)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_checkpoint_roundtrip_identical_outputs(tmp_path):
    seg = small_unet(num_classes=4, names=["bg", "road", "car", "person"], ignore_index=0).eval()
    with torch.no_grad():
        for p in seg.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the initialisation any more
    path = save_segmenter(seg, tmp_path / "seg.pt", metadata={"metrics": {"miou": 0.5}})
    loaded = load_segmenter(path).eval()
    x = torch.rand(1, 3, 37, 61)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), seg(x), rtol=0, atol=0)
    assert loaded.names == {0: "bg", 1: "road", 2: "car", 3: "person"}
    assert loaded.ignore_index == 0 and loaded.num_classes == 4 and loaded.config == seg.config
    again = create_segmenter("Unet", "resnet18", weights=path, encoder_depth=3, decoder_channels=(32, 16, 8)).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), seg(x), rtol=0, atol=0)
    assert torch.load(path, weights_only=True)["metadata"]["metrics"] == {"miou": 0.5}


def test_mismatched_checkpoint_names_both(tmp_path):
    path = save_segmenter(small_unet(num_classes=3), tmp_path / "seg.pt")
    with pytest.raises(CheckpointError, match=r"num_classes 3 in the file vs 5"):
        create_segmenter("Unet", "resnet18", num_classes=5, weights=path)
    with pytest.raises(CheckpointError, match=r"encoder 'resnet18' in the file vs 'resnet34'"):
        create_segmenter("Unet", "resnet34", weights=path)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt is not a taskderain segmenter checkpoint"):
        load_segmenter(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_segmenter(tmp_path / "missing.pt")


def test_local_encoder_weights_file(tmp_path):
    donor = small_unet()
    torch.save(donor.model.encoder.state_dict(), tmp_path / "encoder.pth")
    seg = small_unet(encoder_weights=tmp_path / "encoder.pth")
    for key, value in donor.model.encoder.state_dict().items():
        assert torch.equal(seg.model.encoder.state_dict()[key], value), key
    from_checkpoint = small_unet(num_classes=5, encoder_weights=save_segmenter(donor, tmp_path / "donor.pt"))
    assert torch.equal(from_checkpoint.model.encoder.conv1.weight, donor.model.encoder.conv1.weight)
    torch.save(Segmenter("Unet", "resnet34", num_classes=3).model.encoder.state_dict(), tmp_path / "r34.pth")
    with pytest.raises(CheckpointError, match=r"(?s)r34.pth do not fit.*unexpected keys"):
        small_unet(encoder_weights=str(tmp_path / "r34.pth"))
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        small_unet(encoder_weights=str(tmp_path / "nothere.pth"))


def test_named_encoder_weights_offline_fail_fast_with_one_clear_message(monkeypatch):
    monkeypatch.setattr(segmenter_module, "_hub_offline", lambda: False)
    monkeypatch.setattr(segmenter_module, "_hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as info:
        small_unet(encoder_weights="imagenet")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "needs internet" in message and "encoder_weights=None" in message and "'imagenet'" in message


def test_named_encoder_weights_under_hf_offline_mode(monkeypatch, tmp_path):
    """The real smp → huggingface_hub path, made offline and cache-less: its error becomes ours."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="needs internet"):
        small_unet(encoder_weights="imagenet")
    assert time.perf_counter() - start < 5
