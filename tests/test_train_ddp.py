"""Distributed training: a 2-process gloo run (torchrun) equals a 1-process run of the same global batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from taskderain.config import ConfigError
from taskderain.models import load_derainer
from taskderain.train import train
from taskderain.train.curves import read_log
from taskderain.train.data import epoch_batches, rank_batches

from training_setup import tiny_train_config, write_clean_images

REPO = Path(__file__).resolve().parents[1]
GLOO = torch.distributed.is_available() and torch.distributed.is_gloo_available()
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not GLOO, reason="torch.distributed with gloo is needed")]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_clean_images(tmp_path / "clean", 10)


def tiny(images: Path, out: Path, **top) -> dict:
    return tiny_train_config(images, out, steps=top.pop("steps", 5), batch=4, **top)


def torchrun(config: dict, tmp_path: Path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    path = tmp_path / f"{Path(config['out']).name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "taskderain", "train", str(path), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def weights(path: Path) -> dict:
    return {k: v.detach().clone() for k, v in load_derainer(path).state_dict().items()}


def test_two_processes_match_one_process(images, tmp_path):
    ddp = torchrun(tiny(images, tmp_path / "ddp"), tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count('"world_size": 2') == 2  # both ranks trained in one process group
    single = train(tiny(images, tmp_path / "single"))
    assert single["step"] == 5 and single["epoch"] == 2
    a, b = weights(tmp_path / "ddp" / "last.pt"), weights(tmp_path / "single" / "last.pt")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    scale = max(float(b[k].abs().max()) for k in b)
    print(f"max abs weight diff 2-process vs 1-process: {diff:.3g} (max |w| {scale:.3g})")
    assert diff < 1e-5 * max(scale, 1.0)
    # same log: loss per step (mean over ranks), validation by rank 0 only, no duplicated rows
    (loss_a, val_a), (loss_b, val_b) = read_log(tmp_path / "ddp" / "log.csv"), read_log(tmp_path / "single" / "log.csv")
    assert [s for s, _ in loss_a] == [s for s, _ in loss_b] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([v for _, v in loss_a], [v for _, v in loss_b], rtol=1e-5, atol=1e-7)
    assert [e for e, _ in val_a["psnr_y"]] == [e for e, _ in val_b["psnr_y"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in val_a["psnr_y"]], [v for _, v in val_b["psnr_y"]], atol=1e-3)
    for run in ("ddp", "single"):
        assert (tmp_path / run / "curves.png").stat().st_size > 1000
        assert (tmp_path / run / "best.pt").exists()


def test_a_stateful_term_trains_the_same_under_torchrun(images, tmp_path):
    """The anchor's frozen start copy is taken on every rank from the same broadcast weights."""
    top = {"loss": {"restoration": 1.0, "anchor": 1.0}, "optim": {"lr": 1e-2}, "steps": 3}
    ddp = torchrun(tiny(images, tmp_path / "ddp", **top), tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    train(tiny(images, tmp_path / "single", **top))
    a, b = weights(tmp_path / "ddp" / "last.pt"), weights(tmp_path / "single" / "last.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    anchor = []
    for run in ("ddp", "single"):
        with open(tmp_path / run / "log.csv", newline="") as handle:
            anchor.append([float(r["loss_anchor"]) for r in csv.DictReader(handle) if r["loss_anchor"]])
    np.testing.assert_allclose(anchor[0], anchor[1], rtol=1e-4)
    assert anchor[0][-1] > 2 * anchor[0][0]  # it measured the drift from the start, on both


def test_ddp_resume_continues(images, tmp_path):
    """Rank 0 writes last.pt at step 2 (epoch end), all ranks load it and finish like an uninterrupted run."""
    first = torchrun(tiny(images, tmp_path / "run", steps=2), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = torchrun(tiny(images, tmp_path / "run", steps=3), tmp_path, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    whole = train(tiny(images, tmp_path / "whole", steps=3))
    assert whole["step"] == 3
    a, b = weights(tmp_path / "run" / "last.pt"), weights(tmp_path / "whole" / "last.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert [s for s, _ in read_log(tmp_path / "run" / "log.csv")[0]] == [1, 2, 3]


def test_rank_batches_are_disjoint_shards():
    batches = epoch_batches(list(range(12)), 4, seed=0, epoch=1)
    shards = [rank_batches(batches, r, 2) for r in range(2)]
    assert all(len(b) == 2 for s in shards for b in s)
    for i, whole in enumerate(batches):
        assert shards[0][i] + shards[1][i] == whole
    assert rank_batches(batches, 0, 1) == batches


def test_global_batch_must_divide(images, tmp_path):
    result = torchrun(tiny(images, tmp_path / "odd", steps=1), tmp_path, "data.batch=3")
    assert result.returncode != 0
    assert "'data.batch' (3, the global batch) must be divisible by the number of processes (2)" in result.stderr


def test_curves_png_single_process(images, tmp_path):
    train(tiny(images, tmp_path / "c", steps=2, data={"images": str(images), "val_split": 2, "val_crop": 32,
                                                       "patch_size": 24, "batch": 2}))
    png = tmp_path / "c" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_key(images, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"'tensorboard' is true but TensorBoard is not usable"):
            train(tiny(images, tmp_path / "tb", steps=1, tensorboard=True))
        return
    train(tiny(images, tmp_path / "tb", steps=1, tensorboard=True))
    assert any((tmp_path / "tb" / "tensorboard").iterdir())
