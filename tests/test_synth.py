"""`taskderain synth`: rainy copies of folders, YOLO datasets (ultralytics validates them) and mask sets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from taskderain.cli import main
from taskderain.imageio import read_rgb
from taskderain.rain import add_rain, image_seed, rain_params


def write_images(folder: Path, count: int, size=(48, 64), rng=None) -> list:
    rng = rng or np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"im{i:03d}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_folder_copy_is_the_documented_rain(tmp_path):
    write_images(tmp_path / "in", 2)
    assert main(["synth", str(tmp_path / "in"), "--preset", "light", "--seed", "3", "--out", str(tmp_path / "out")]) == 0
    expected, _ = add_rain(read_rgb(tmp_path / "in" / "im001.jpg"), rain_params("light"), image_seed("im001", 3))
    assert np.array_equal(read_rgb(tmp_path / "out" / "im001.png"), expected)
    assert (tmp_path / "out" / "taskderain-synth.json").exists()


def test_rerun_with_other_settings_is_refused(tmp_path, capsys):
    write_images(tmp_path / "in", 1)
    out = str(tmp_path / "out")
    assert main(["synth", str(tmp_path / "in"), "--preset", "light", "--out", out]) == 0
    assert main(["synth", str(tmp_path / "in"), "--preset", "heavy", "--out", out]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "in"), "--preset", "heavy", "--out", out, "--overwrite"]) == 0


def test_bad_files_reported_others_finish(tmp_path, capsys):
    write_images(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG broken")
    assert main(["synth", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["im000.png", "im001.png"]


def test_mask_set_copies_masks_and_reports_wrong_sizes(tmp_path, capsys):
    write_images(tmp_path / "img", 2, size=(20, 30))
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "im000.png"), np.ones((20, 30), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "im001.png"), np.ones((21, 30), np.uint8))
    rc = main(["synth", str(tmp_path / "img"), "--masks", str(tmp_path / "masks"), "--out", str(tmp_path / "out")])
    assert rc == 1 and "im001.png is not the size of its image" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out" / "masks").iterdir()] == ["im000.png"]
    assert (tmp_path / "out" / "masks" / "im000.png").read_bytes() == (tmp_path / "masks" / "im000.png").read_bytes()


def test_yolo_copy_validates_with_ultralytics(tmp_path):
    from ultralytics import YOLO

    src = tmp_path / "ds"
    images = write_images(src / "images" / "val", 3, size=(64, 64))
    (src / "labels" / "val").mkdir(parents=True)
    for path in images[:2]:
        (src / "labels" / "val" / f"{path.stem}.txt").write_text("0 0.5 0.5 0.3 0.3\n1 0.2 0.2 0.1 0.1\n")
    (src / "data.yaml").write_text("path: .\ntrain: images/val\nval: images/val\nnames:\n  0: a\n  1: b\n")
    out = tmp_path / "rainy"
    assert main(["synth", str(src / "data.yaml"), "--preset", "heavy", "--out", str(out)]) == 0
    new_yaml = out / "data-rain-heavy.yaml"
    data = yaml.safe_load(new_yaml.read_text())
    assert data["names"] == {0: "a", 1: "b"} and Path(data["path"]) == out.resolve()
    for path in images[:2]:
        copied = out / "labels" / "val" / f"{path.stem}.txt"
        assert copied.read_bytes() == (src / "labels" / "val" / f"{path.stem}.txt").read_bytes()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # ultralytics resolves relative paths against the working folder
    try:
        metrics = YOLO("yolov8n.yaml").val(data=str(new_yaml), imgsz=64, batch=4, device="cpu", plots=False,
                                           verbose=False, workers=0)
    finally:
        os.chdir(cwd)
    assert metrics.box.map >= 0  # ran over the copy without a dataset error
    assert len(list((out / "labels" / "val").glob("*.txt"))) == 2


def test_killed_run_resumes_to_identical_files(tmp_path):
    write_images(tmp_path / "in", 120, size=(96, 128))
    command = [sys.executable, "-m", "taskderain", "synth", str(tmp_path / "in"), "--preset", "storm"]
    proc = subprocess.Popen([*command, "--out", str(tmp_path / "a")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "a").glob("*.png"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list((tmp_path / "a").glob("*.png")))
    assert 5 <= partial < 120, "the run was not interrupted mid-way; make the job longer"
    assert subprocess.run([*command, "--out", str(tmp_path / "a")], capture_output=True).returncode == 0
    assert subprocess.run([*command, "--out", str(tmp_path / "b")], capture_output=True).returncode == 0
    resumed = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert resumed == sorted(p.name for p in (tmp_path / "b").iterdir())  # no stale temporary files
    for name in resumed:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() or name.endswith(".json")
