"""benchmarks/taskdriven_experiment.py end to end on tiny settings (COCO128 and the COCO YOLOv8n)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def _experiment():
    spec = importlib.util.spec_from_file_location("taskdriven_experiment", REPO / "benchmarks" / "taskdriven_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variant_spec_forms_and_errors():
    exp = _experiment()
    assert exp.variant_spec({"restoration": 1}) == {"mode": "cascade", "loss": {"restoration": 1}, "optim": {}}
    recipe = yaml.safe_load((REPO / "pipelines" / "train" / "mspfn_lite-taskdriven.yaml").read_text())["train"]
    assert recipe["loss"] == exp.VARIANTS["task_anchored"]  # the shipped recipe is the experiment's variant
    joint = exp.variant_spec(exp.VARIANTS["joint"])
    assert joint["mode"] == "joint" and joint["loss"]["detector_features"] > 0
    with pytest.raises(SystemExit, match="variant mode 'restoration'"):
        exp.variant_spec({"mode": "restoration", "loss": {}})
    with pytest.raises(SystemExit, match=r"variant keys \['lr'\]"):
        exp.variant_spec({"loss": {}, "lr": 1})
    with pytest.raises(SystemExit, match="a variant is a YAML mapping"):
        exp.variant_spec([1, 2])
    with pytest.raises(SystemExit, match="variant 'loss' must be a mapping, got 5"):
        exp.variant_spec({"loss": 5})


@pytest.mark.shared
@pytest.mark.slow
def test_quick_run_scores_a_joint_variant_with_its_own_detector(shared, tmp_path):
    from taskderain.models import create_derainer, save_derainer

    exp = _experiment()
    out = tmp_path / "exp"
    torch.manual_seed(0)
    start_pt = save_derainer(create_derainer("mspfn_tiny"), tmp_path / "start.pt")
    assert exp.main(["--quick", "--variants", "restoration,joint", "--shared", str(shared), "--out", str(out),
                     "--weights", str(start_pt), "--quiet"]) == 0
    result = json.loads((out / "results-restoration-joint-vs-restoration.json").read_text())
    rows = {(r["condition"], r["variant"]): r for r in result["rows"]}
    held = [c for c in result["conditions"] if c.startswith("held out")][0]
    joint = rows[(held, "joint")]
    assert joint["seeds"] == 2 and "vs_baseline" in joint and "vs_baseline" not in rows[(held, "restoration")]
    ci, plain = joint["vs_baseline"], joint["vs_baseline_percentile"]
    assert ci["method"] == "BCa" and plain["method"] == "percentile" and ci["diff"] == plain["diff"]
    assert plain["low"] <= plain["high"] and ci["images"] == 4
    assert result["costs"]["joint"]["cpu_h"] > 0
    start_row = next(r for r in result["rows"] if r["condition"] == held and r["variant"].startswith("start"))
    for name in ("restoration", "joint"):  # each variant against the model it started from, same images
        vs = rows[(held, name)]["vs_start"]
        assert vs["images"] == 4 and vs["low"] <= vs["high"]
        assert vs["diff"] == pytest.approx(rows[(held, name)]["map50_95"] - start_row["map50_95"], abs=0.05)
    # the fine-tuned YOLO is exported beside the derainer and differs from the one it started from
    tuned = torch.load(out / "models" / "joint-s0.detector.pt", map_location="cpu", weights_only=False)
    start = torch.load(shared / "weights" / "yolov8n_coco.pt", map_location="cpu", weights_only=False)
    a, b = tuned["model"].float().state_dict(), start["model"].float().state_dict()
    assert any(not torch.allclose(a[k], b[k]) for k in a if k.endswith(".weight"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.endswith("running_mean"))  # freeze_bn
    assert "| joint |" in (out / "results-restoration-joint-vs-restoration.md").read_text()
    # the same runs against another baseline: nothing retrained (the runs are done), only re-scored
    assert exp.main(["--quick", "--variants", "restoration,joint", "--baseline", "joint", "--shared", str(shared),
                     "--out", str(out), "--weights", str(start_pt), "--quiet"]) == 0
    again = {(r["condition"], r["variant"]): r
             for r in json.loads((out / "results-restoration-joint-vs-joint.json").read_text())["rows"]}
    assert again[(held, "restoration")]["vs_baseline"]["diff"] == pytest.approx(-ci["diff"])
    assert "vs_baseline" not in again[(held, "joint")]
    assert "Δ vs joint" in (out / "results-restoration-joint-vs-joint.md").read_text()
    assert result == json.loads((out / "results-restoration-joint-vs-restoration.json").read_text())  # kept
    assert exp.results_stem(exp.DEFAULT_VARIANTS.split(","), exp.BASELINE) == "results"
    with pytest.raises(SystemExit, match=r"--baseline 'task' is not one of --variants \(restoration, joint\)"):
        exp.main(["--quick", "--variants", "restoration,joint", "--baseline", "task", "--out", str(out)])
