"""Paired rain datasets: layout detection, pairing errors, paired crops and dihedral transforms."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from taskderain.data import (
    NUM_DIHEDRAL,
    PairedRainDataset,
    dihedral,
    dihedral_inverse,
    find_pairs,
    pad_to_size,
    paired_center_crop,
    paired_random_crop,
    paired_random_dihedral,
)

OFFSET = 3  # rainy = clean + OFFSET in the layout fixtures


def _write(path: Path, value: int, shape=(6, 5)) -> None:
    """A uniform gray image of ``value`` (cv2 writes BGR; gray is the same either way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*shape, 3), value, dtype=np.uint8))


def _make(root: Path, layout: str, ids=(1, 2, 10)) -> None:
    """Write ``ids`` pairs in ``layout``: clean id i has value 10 i, its rainy image 10 i + OFFSET."""
    for i in ids:
        clean, rainy = 10 * i, 10 * i + OFFSET
        if layout == "rainy+norain-":
            _write(root / "rainy" / f"rain-{i:03d}.png", rainy)
            _write(root / f"norain-{i:03d}.png", clean)
        elif layout == "rainy+norain/":
            _write(root / "rainy" / f"rain-{i}.png", rainy)
            _write(root / "norain" / f"norain-{i}.png", clean)
        elif layout in ("input+target", "inputcrop+cleancrop"):
            rdir, cdir = layout.split("+")
            _write(root / rdir / f"{i}.png", rainy)
            _write(root / cdir / f"{i}.jpg" if i == 2 else root / cdir / f"{i}.png", clean)  # mixed suffixes
        elif layout == "rain-+norain-":
            _write(root / f"rain-{i}.png", rainy)
            _write(root / f"norain-{i}.png", clean)
            _write(root / f"rainstreak-{i}.png", 0)  # PReNet's extra files are ignored
        else:
            raise AssertionError(layout)


def _check_pairs(ds: PairedRainDataset, ids) -> None:
    assert len(ds) == len(ids)
    for item, i in zip(ds, ids):
        assert item["name"].endswith(str(i))
        clean = torch.full((3, 6, 5), 10 * i / 255.0)
        assert torch.allclose(item["clean"], clean, atol=1e-6)
        assert torch.allclose(item["rainy"] - item["clean"], torch.full_like(clean, OFFSET / 255.0), atol=1e-6)


@pytest.mark.parametrize(
    "layout", ["rainy+norain-", "rainy+norain/", "input+target", "inputcrop+cleancrop", "rain-+norain-"]
)
def test_one_to_one_layouts_detected_and_paired_in_natural_order(tmp_path, layout):
    _make(tmp_path, layout)
    ds = PairedRainDataset(tmp_path)
    assert ds.layout == layout
    _check_pairs(ds, [1, 2, 10])  # natural order: 2 before 10


def test_item_format(tmp_path):
    _make(tmp_path, "rainy+norain-", ids=(7,))
    item = PairedRainDataset(tmp_path)[0]
    assert set(item) == {"rainy", "clean", "name", "rainy_path", "clean_path"}
    assert item["rainy"].dtype == torch.float32 and item["rainy"].shape == (3, 6, 5)
    assert item["name"] == "rain-007"
    assert item["rainy_path"] == str(tmp_path / "rainy" / "rain-007.png")
    assert item["clean_path"] == str(tmp_path / "norain-007.png")


def test_many_to_one_rain1400_layout(tmp_path):
    for key in (901, 902):
        _write(tmp_path / "ground_truth" / f"{key}.jpg", 200 if key == 901 else 100)
        for k in (1, 2, 10):
            _write(tmp_path / "rainy_image" / f"{key}_{k}.png", k)
    _write(tmp_path / "ground_truth" / "903.jpg", 50)  # unused clean images are fine here
    ds = PairedRainDataset(tmp_path)
    assert ds.layout == "rainy_image+ground_truth"
    assert [p.name for p in ds.pairs] == ["901_1", "901_2", "901_10", "902_1", "902_2", "902_10"]
    assert all(p.clean.name == f"{p.name.split('_')[0]}.jpg" for p in ds.pairs)
    # JPEG is lossy, but a flat image stays close to its value
    assert abs(float(ds[3]["clean"].mean()) * 255 - 100) < 2


def test_explicit_folders_with_prefixes_and_many_to_one(tmp_path):
    _make(tmp_path / "a", "rainy+norain/")
    ds = PairedRainDataset(rainy_dir=tmp_path / "a" / "rainy", clean_dir=tmp_path / "a" / "norain")
    assert ds.layout == "explicit"
    _check_pairs(ds, [1, 2, 10])
    # relative folders resolve against root; many-to-one is recognised from the names
    _write(tmp_path / "b" / "gt" / "5.png", 50)
    for k in (1, 2):
        _write(tmp_path / "b" / "rain" / f"5_{k}.png", 50 + OFFSET)
    ds = PairedRainDataset(tmp_path / "b", rainy_dir="rain", clean_dir="gt")
    assert [(p.name, p.clean.name) for p in ds.pairs] == [("5_1", "5.png"), ("5_2", "5.png")]
    with pytest.raises(ValueError, match="both rainy_dir= and clean_dir="):
        PairedRainDataset(rainy_dir=tmp_path / "a" / "rainy")


def test_missing_clean_partner_is_listed(tmp_path):
    _make(tmp_path, "input+target", ids=(1, 2))
    _write(tmp_path / "input" / "lonely.png", 1)
    with pytest.raises(ValueError, match=r"1 rainy image\(s\) have no clean partner.*lonely\.png"):
        PairedRainDataset(tmp_path)


def test_clean_without_rainy_is_an_error_for_one_to_one(tmp_path):
    _make(tmp_path, "rainy+norain/", ids=range(1, 10))
    _write(tmp_path / "norain" / "norain-99.png", 1)
    (tmp_path / "rainy" / "rain-1.png").unlink()
    with pytest.raises(ValueError, match=r"2 clean image\(s\).*norain-1\.png, norain-99\.png"):
        find_pairs(tmp_path)


def test_many_unmatched_files_are_summarised(tmp_path):
    _make(tmp_path, "input+target", ids=(1,))
    for i in range(20, 32):
        _write(tmp_path / "input" / f"{i}.png", 1)
    with pytest.raises(ValueError, match=r"12 rainy.*20\.png, 21\.png.*and 7 more"):
        find_pairs(tmp_path)


def test_unknown_layout_lists_what_was_looked_for_and_found(tmp_path):
    _write(tmp_path / "train" / "x.png", 1)
    _write(tmp_path / "photo.png", 1)
    with pytest.raises(ValueError) as info:
        PairedRainDataset(tmp_path)
    message = str(info.value)
    looked_for = ("input/", "target/", "rainy_image/", "ground_truth/", "norain-")
    for expected in (*looked_for, "train/", "photo.png", "rainy_dir="):
        assert expected in message
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PairedRainDataset(tmp_path / "nowhere")


def test_size_mismatch_names_both_files(tmp_path):
    _write(tmp_path / "input" / "a.png", 1, shape=(6, 5))
    _write(tmp_path / "target" / "a.png", 1, shape=(6, 4))
    ds = PairedRainDataset(tmp_path)
    with pytest.raises(ValueError, match=r"input/a\.png is 6x5 but .*target/a\.png is 6x4"):
        ds[0]


def test_limit_and_index_errors(tmp_path):
    _make(tmp_path, "input+target", ids=(1, 2, 3))
    ds = PairedRainDataset(tmp_path, limit=2)
    assert [p.name for p in ds.pairs] == ["1", "2"]
    assert ds[-1]["name"] == "2"
    with pytest.raises(IndexError):
        ds[2]


# ---- transforms ------------------------------------------------------------------------------


def test_dihedral_eight_distinct_and_invertible():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    outs = [dihedral(x, k) for k in range(NUM_DIHEDRAL)]
    assert len({tuple(o.flatten().tolist()) + tuple(o.shape) for o in outs}) == 8
    for k, out in enumerate(outs):
        assert out.shape[-2:] == ((5, 4) if k % 2 else (4, 5))
        assert torch.equal(dihedral_inverse(out, k), x)
        assert torch.equal(dihedral(x[0], k), out[0])  # (C,H,W) and batches agree
    # k = 1 is a counter-clockwise quarter turn, k = 4 a left-right flip
    m = torch.tensor([[1, 2], [3, 4]])
    assert dihedral(m, 1).tolist() == [[2, 4], [1, 3]]
    assert dihedral(m, 4).tolist() == [[2, 1], [4, 3]]
    with pytest.raises(ValueError, match="0..7"):
        dihedral(m, 8)


def test_paired_random_crop_same_window(rng):
    a = torch.from_numpy(rng.uniform(size=(3, 20, 17)))
    b = 2 * a
    g = torch.Generator().manual_seed(0)
    ca, cb = paired_random_crop(a, b, (5, 7), g)
    assert ca.shape == (3, 5, 7) and torch.equal(cb, 2 * ca)
    hits = [(i, j) for i in range(16) for j in range(11) if torch.equal(a[:, i : i + 5, j : j + 7], ca)]
    assert len(hits) == 1
    da, db, k = paired_random_dihedral(ca, cb, g)
    assert torch.equal(db, 2 * da) and torch.equal(dihedral_inverse(da, k), ca)
    with pytest.raises(ValueError, match="smaller than the patch"):
        paired_random_crop(a, b, 21)
    with pytest.raises(ValueError, match="differ in size"):
        paired_random_crop(a, b[..., :-1], 4)
    ca, _ = paired_center_crop(a, b, 4)
    assert torch.equal(ca, a[:, 8:12, 6:10])


def test_pad_to_size_reflects_and_handles_tiny_images():
    x = torch.arange(12.0).reshape(1, 3, 4)
    padded = pad_to_size(x, (5, 6))
    assert padded.shape == (1, 5, 6)
    assert torch.equal(padded[:, :3, :4], x)
    assert torch.equal(padded[:, 3, :4], x[:, 1])  # reflection about the last row
    assert pad_to_size(torch.ones(3, 1, 2), 9).shape == (3, 9, 9)  # repeated reflect / replicate
    assert pad_to_size(x, 2) is x


# ---- dataset augmentation --------------------------------------------------------------------


@pytest.fixture
def textured(tmp_path, rng) -> Path:
    """input/ + target/ with random texture and rainy = 2 * clean (exact in uint8)."""
    for i in range(6):
        clean = rng.integers(0, 128, (23, 19, 3), dtype=np.uint8)
        (tmp_path / "input").mkdir(exist_ok=True)
        (tmp_path / "target").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "target" / f"{i}.png"), clean)
        cv2.imwrite(str(tmp_path / "input" / f"{i}.png"), 2 * clean)
    return tmp_path


def _is_window_of(patch: torch.Tensor, image: torch.Tensor) -> bool:
    """Some dihedral transform of ``patch`` equals some window of ``image``."""
    for k in range(NUM_DIHEDRAL):
        p = dihedral_inverse(patch, k)
        h, w = p.shape[-2:]
        for i in range(image.shape[-2] - h + 1):
            for j in range(image.shape[-1] - w + 1):
                if torch.equal(image[:, i : i + h, j : j + w], p):
                    return True
    return False


def test_augment_applies_one_geometry_to_both(textured):
    ds = PairedRainDataset(textured, patch_size=(8, 5), augment=True, seed=3)
    whole = PairedRainDataset(textured)
    for index in range(len(ds)):
        item = ds[index]
        assert item["rainy"].shape == item["clean"].shape == (3, 8, 5)  # (h, w) kept under quarter turns
        assert torch.allclose(item["rainy"], 2 * item["clean"], atol=1e-6)
        assert _is_window_of(item["clean"], whole[index]["clean"])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["rainy"].shape == (4, 3, 8, 5) and len(batch["name"]) == 4


def test_augment_draws_vary_across_epochs(textured):
    ds = PairedRainDataset(textured, patch_size=6, augment=True)
    draws = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        draws.add(tuple(ds[0]["clean"].flatten().tolist()))
    assert len(draws) >= 10  # 8 transforms x 18x14 positions: repeats are rare


def test_augmentation_is_deterministic_per_seed_epoch_index(textured):
    a = PairedRainDataset(textured, patch_size=6, augment=True, seed=1)
    b = PairedRainDataset(textured, patch_size=6, augment=True, seed=1)
    forward = [a[i]["clean"] for i in range(len(a))]
    backward = [b[i]["clean"] for i in reversed(range(len(b)))][::-1]  # order (worker) independent
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))
    b.set_epoch(1)
    assert b.epoch == 1
    assert not all(torch.equal(x, b[i]["clean"]) for i, x in enumerate(forward))
    b.set_epoch(0)
    assert all(torch.equal(x, b[i]["clean"]) for i, x in enumerate(forward))
    other_seed = PairedRainDataset(textured, patch_size=6, augment=True, seed=2)
    assert not all(torch.equal(x, other_seed[i]["clean"]) for i, x in enumerate(forward))
    with pytest.raises(ValueError, match="epoch"):
        b.set_epoch(-1)


def test_no_augment_patch_is_centre_crop_and_small_images_are_padded(textured):
    whole = PairedRainDataset(textured)[0]["clean"]
    item = PairedRainDataset(textured, patch_size=(7, 9))[0]
    assert torch.equal(item["clean"], whole[:, 8:15, 5:14])
    big = PairedRainDataset(textured, patch_size=32, augment=True)[0]
    assert big["clean"].shape == (3, 32, 32)
    assert torch.allclose(big["rainy"], 2 * big["clean"], atol=1e-6)


# ---- the real Rain100L layout (../shared) ----------------------------------------------------


@pytest.mark.shared
def test_rain100l_layout(shared):
    ds = PairedRainDataset(shared / "data" / "rain100l")
    assert ds.layout == "rainy+norain-" and len(ds) == 100
    assert [p.name for p in ds.pairs] == [f"rain-{i:03d}" for i in range(1, 101)]
    assert all(p.clean.name == f"no{p.name}.png" and p.clean.parent == p.rainy.parent.parent for p in ds.pairs)
    item = ds[0]
    assert item["rainy"].shape == item["clean"].shape and item["rainy"].shape[1:] in ((321, 481), (481, 321))
    assert 0.0 <= float(item["rainy"].min()) and float(item["rainy"].max()) <= 1.0
