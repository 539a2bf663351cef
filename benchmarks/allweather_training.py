"""Train the all-weather MSPFN-lite (pipelines/train/mspfn_lite-allweather.yaml) on CPU, across sessions.

1. Splits COCO128 as the task-driven experiment does (``coco128_experiment.write_split``): the
   last ``--held-out`` (48) images that have semantic masks are held out — no derainer trained
   here sees them, so the task-driven experiment can score on them — and the other 80 train;
   the lists go to ``<run>/data/``.
2. Runs ``taskderain train`` with a ``time=`` budget; run it again and it resumes
   (``resume=true``) from ``<run>/last.pt``, so a schedule of short sessions adds up. Keep the run
   folder outside the repository (default ``../runs/mspfn_lite-allweather``).
3. ``--export FILE`` writes the final weights (``last.pt``, not chosen on any test set) as an
   fp16 derainer checkpoint with the recipe in its metadata; ``--tag`` names the shipped tag.

    python benchmarks/allweather_training.py --hours 1.5
    python benchmarks/allweather_training.py --export taskderain/weights/mspfn_lite-allweather.pt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipelines" / "train" / "mspfn_lite-allweather.yaml"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco128_experiment import write_split  # noqa: E402  (benchmarks/ is not a package)


def export(run: Path, target: Path, tag: str) -> None:
    """``run/last.pt`` → an fp16 derainer checkpoint at ``target`` with the recipe in its metadata."""
    from taskderain.models import load_derainer, save_derainer
    from taskderain.train.checkpoint import load_train_checkpoint

    ckpt = load_train_checkpoint(run / "last.pt")
    train = ckpt["train"]
    model = load_derainer(run / "last.pt")
    meta = {"tag": tag, "recipe": str(CONFIG.relative_to(REPO)), "config": train["config"], "steps": train["step"],
            "training_data": "80 COCO128 train2017 images (the task-driven experiment's 48 held-out images and "
                             "Rain100L/H excluded) with online rain-zoo mixture rain",
            "selection": "final weights (last.pt); no checkpoint choice on any test set",
            "metrics": {"synthetic_val_psnr_y": train.get("last_metrics", {}).get("psnr_y")}}
    save_derainer(model, target, metadata=meta, half=True)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB, step {train['step']})")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("TASKDERAIN_SHARED", REPO.parent / "shared")))
    parser.add_argument("--run", type=Path, default=REPO.parent / "runs" / "mspfn_lite-allweather")
    parser.add_argument("--hours", type=float, default=1.0, help="time budget of this session's training")
    parser.add_argument("--held-out", type=int, default=48, help="masked COCO128 images kept out (default 48)")
    parser.add_argument("--export", type=Path, default=None, help="write the final fp16 weights here and stop")
    parser.add_argument("--tag", default="allweather")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    args = parser.parse_args(argv)
    if args.export is not None:
        export(args.run, args.export, args.tag)
        return 0
    coco = args.shared / "data" / "coco128"
    if not (coco / "images" / "train2017").is_dir():
        raise SystemExit(f"no COCO128 under {coco}: pass --shared")
    write_split(coco, args.run / "data", val_count=args.held_out)
    resume = (args.run / "last.pt").exists()
    cmd = [sys.executable, "-m", "taskderain", "train", str(CONFIG), f"out={args.run}",
           f"data.images={args.run / 'data' / 'train.txt'}", f"time={args.hours}", f"resume={str(resume).lower()}",
           *args.overrides]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
