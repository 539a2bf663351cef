"""benchmarks/derain_quality.py: the PSNR/SSIM table per dataset x derainer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from taskderain.imageio import read_rgb, write_rgb
from taskderain.inference import derain_array
from taskderain.metrics import psnr, ssim
from taskderain.models import create_derainer, save_derainer

pytestmark = pytest.mark.usefixtures("one_thread")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "derain_quality.py"


def load_script():
    spec = importlib.util.spec_from_file_location("derain_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_rows_are_the_papers_protocol_per_dataset_and_derainer(tmp_path, capsys):
    rng = np.random.default_rng(0)
    roots = []
    for name in ("setA", "setB"):
        root = tmp_path / name
        for i in range(2):
            clean = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
            rainy = np.clip(clean.astype(int) + rng.integers(0, 60, clean.shape), 0, 255).astype(np.uint8)
            write_rgb(root / "input" / f"{i}.png", rainy)
            write_rgb(root / "target" / f"{i}.png", clean)
        roots.append(root)
    torch.manual_seed(0)
    tiny = create_derainer("mspfn_tiny")
    ckpt = save_derainer(tiny, tmp_path / "tiny.pt")
    out = tmp_path / "q.json"
    assert load_script().main([*map(str, roots), "--derainers", f"mspfn_tiny:{ckpt}", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(Path(r["dataset"]).name, r["derainer"]) for r in rows] == [
        ("setA", "identity"), ("setA", "mspfn_tiny"), ("setB", "identity"), ("setB", "mspfn_tiny")]
    for row in rows:
        root = Path(row["dataset"])
        pairs = [(read_rgb(root / "input" / f"{i}.png"), read_rgb(root / "target" / f"{i}.png")) for i in range(2)]
        outputs = [(rainy if row["derainer"] == "identity" else derain_array(tiny, rainy), clean) for rainy, clean in pairs]
        assert row["psnr_y"] == pytest.approx(np.mean([psnr(a, b) for a, b in outputs]), abs=1e-9)
        assert row["ssim_y"] == pytest.approx(np.mean([ssim(a, b) for a, b in outputs]), abs=1e-9)
    table = capsys.readouterr().out
    assert "| derainer | setA PSNR-Y / SSIM-Y (n) | setB PSNR-Y / SSIM-Y (n) |" in table
    assert f"| identity | {rows[0]['psnr_y']:.3f} / {rows[0]['ssim_y']:.4f} (2) |" in table
