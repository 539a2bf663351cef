"""`taskderain derain` / `eval-derain` / `models` end to end, including the bad inputs users hit."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

from taskderain.cli import main
from taskderain.imageio import read_rgb
from taskderain.inference import derain_array
from taskderain.models import create_derainer, save_derainer


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    return save_derainer(create_derainer("prenet", stages=2, width=8, blocks=1), tmp_path / "prenet_small.pt")


@pytest.fixture
def images(tmp_path, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "color.png"), rng.integers(0, 256, (21, 34, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "gray.jpg"), rng.integers(0, 256, (16, 16), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 256, (9, 12, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (10, 8, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "dot.png"), np.full((1, 1, 3), 77, np.uint8))
    return folder


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_models_lists_presets(capsys):
    assert run_cli("models") == 0
    out = capsys.readouterr().out
    assert "prenet" in out and "identity" in out
    assert [line for line in out.splitlines() if "--weights default" in line][0].startswith("mspfn_lite ")


def test_derain_folder_of_odd_images(images, tmp_path, tiny_weights):
    out = tmp_path / "out"
    assert run_cli("derain", images, "--model", "prenet", "--weights", tiny_weights, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["color.png", "deep.png", "dot.png", "gray.png", "rgba.png"]
    model = create_derainer("prenet", weights=tiny_weights)
    expected = derain_array(model, read_rgb(images / "color.png", as_float=True))
    assert np.array_equal(read_rgb(out / "color.png"), expected)
    assert read_rgb(out / "dot.png").shape == (1, 1, 3)


def test_identity_is_lossless_on_8bit(images, tmp_path):
    out = tmp_path / "out"
    assert run_cli("derain", images / "color.png", "--model", "identity", "--out", out) == 0
    assert np.array_equal(read_rgb(out / "color.png"), read_rgb(images / "color.png"))


def test_corrupt_file_is_reported_and_others_finish(images, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (images / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert run_cli("derain", images, "--model", "identity", "--out", out) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "empty.jpg" in err and "2 image(s) failed" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["color.png", "deep.png", "dot.png", "gray.png", "rgba.png"]  # no partial files


def test_missing_source_and_unwritable_out(images, tmp_path, capsys):
    assert run_cli("derain", tmp_path / "nope.png", "--model", "identity", "--out", tmp_path / "o") == 2
    assert "nope.png" in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert run_cli("derain", images, "--model", "identity", "--out", blocker / "sub") == 2
    assert "not writable" in capsys.readouterr().err


def test_weights_of_another_architecture(images, tmp_path, capsys):
    ckpt = save_derainer(create_derainer("identity"), tmp_path / "ident.pt")
    assert run_cli("derain", images, "--model", "prenet", "--weights", ckpt, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "ident.pt holds a 'identity' derainer" in err and "'prenet'" in err
    assert not (tmp_path / "o").exists()


def test_glob_and_stem_clash(images, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "color.jpg"), np.zeros((4, 4, 3), np.uint8))
    assert run_cli("derain", images / "color.png", other, "--model", "identity", "--out", tmp_path / "o") == 2
    assert "collide" in capsys.readouterr().err
    assert run_cli("derain", str(images / "*.png"), "--model", "identity", "--out", tmp_path / "g") == 0
    assert len(list((tmp_path / "g").iterdir())) == 4


def test_large_image_is_tiled_automatically_and_matches(tmp_path, rng, tiny_weights):
    big = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), big)
    args = ["derain", tmp_path / "big.png", "--model", "prenet", "--weights", tiny_weights]
    assert run_cli(*args, "--out", tmp_path / "tiled", "--max-pixels", 5000, "--overlap", 32) == 0
    assert run_cli(*args, "--out", tmp_path / "whole") == 0
    tiled, whole = read_rgb(tmp_path / "tiled" / "big.png"), read_rgb(tmp_path / "whole" / "big.png")
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_skip_existing_resumes(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "color.png").write_bytes(b"kept")
    assert run_cli("derain", images, "--model", "identity", "--out", out, "--skip-existing") == 0
    assert (out / "color.png").read_bytes() == b"kept" and (out / "gray.png").exists()
