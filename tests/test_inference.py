"""Whole-image and tiled inference, autocast and device selection."""

from __future__ import annotations

import pytest
import torch

from taskderain.inference import (_blend_weight, derain_tensor, iter_tiles, resolve_device, tile_spans, to_tensor,
                                  to_uint8)
from taskderain.models import create_derainer


@pytest.mark.parametrize("size,tile,overlap,align", [(100, 40, 16, 1), (97, 40, 16, 1), (40, 40, 8, 1), (30, 64, 16, 1),
                                                     (257, 96, 64, 1), (257, 96, 48, 8), (190, 96, 48, 8), (321, 70, 20, 4)])
def test_tiles_cover_every_pixel_with_positive_weight(size, tile, overlap, align):
    total = torch.zeros(size, dtype=torch.float64)
    spans = tile_spans(size, tile, overlap, align)
    assert spans[0][0] == 0 and sum(spans[-1]) == size
    assert all(start % align == 0 for start, _ in spans)  # same pixel grid as the whole image
    assert all(length <= max(tile, 1) + align - 1 for _, length in spans)
    for (a, la), (b, _) in zip(spans, spans[1:]):
        assert a + la - b >= overlap
    for start, length in spans:
        total[start:start + length] += _blend_weight(length, start, size, overlap)
    assert float(total.min()) > 0


def test_blend_weight_discards_inner_borders_only():
    w = _blend_weight(64, 10, 200, 32)  # inner on both sides
    assert torch.all(w[:8] == 0) and torch.all(w[-8:] == 0) and w[32] == 1
    edge = _blend_weight(64, 0, 200, 32)  # image border on the low side
    assert edge[0] == 1


def test_iter_tiles_grid():
    tiles = list(iter_tiles(100, 150, 64, 16))
    assert (0, 0, 64, 64) in tiles and (36, 86, 64, 64) in tiles
    assert len(tiles) == 2 * 3


def test_tile_must_exceed_overlap():
    with pytest.raises(ValueError, match="tile .* larger than overlap"):
        derain_tensor(create_derainer("identity"), torch.rand(1, 3, 50, 50), tile=16, overlap=32)


def test_bf16_autocast_close_to_fp32():
    model = create_derainer("prenet", stages=3).eval()
    x = torch.rand(1, 3, 40, 48)
    fp32 = derain_tensor(model, x)
    bf16 = derain_tensor(model, x, dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32
    mse = float(((fp32 - bf16) ** 2).mean())
    assert 0 < mse < 1e-4  # really ran in bf16, and stayed close


def test_uint8_roundtrip_rounds():
    x = torch.tensor([0.0, 0.51 / 255, 1.49 / 255, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    arr = to_uint8(x)
    assert arr.shape == (2, 2, 3) and arr[:, :, 0].ravel().tolist() == [0, 1, 1, 255]
    assert torch.equal(to_tensor(arr)[0, 0], torch.tensor([[0, 1], [1, 255]]) / 255.0)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    model = create_derainer("prenet", stages=2)
    x = torch.rand(1, 3, 64, 64)
    cpu = derain_tensor(model, x)
    gpu = derain_tensor(model.cuda(), x.cuda()).cpu()
    assert float((cpu - gpu).abs().max()) < 1e-3
    half = derain_tensor(model, x.cuda(), dtype=torch.float16).cpu()
    assert float((cpu - half).abs().max()) < 2e-2


def test_identity_does_not_modify_the_callers_tensor():
    x = torch.tensor([-0.5, 0.5, 1.5]).view(1, 1, 1, 3).expand(1, 3, 1, 3).contiguous()
    before = x.clone()
    out = derain_tensor(create_derainer("identity"), x)
    assert torch.equal(x, before) and float(out.min()) == 0.0 and float(out.max()) == 1.0
