"""``taskderain run CONFIG SOURCE... --out DIR [key=value ...]``: a pipeline YAML over image files.

Writes, per image, ``derained/STEM.png``, ``annotated/STEM.png`` (boxes and mask drawn on the
derained image), ``masks/STEM.png`` (class indices) and ``predictions/STEM.json``; at the end
``predictions.json`` gathers every detection as a COCO results list (``image_id`` = file stem,
``category_id`` = class index, ``bbox`` = xywh px). Re-running with ``--skip-existing`` resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CLIError, ImageJobs, ensure_writable_dir, expand_sources


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run a pipeline YAML (derain → detect/segment) over images",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("config", type=Path, metavar="CONFIG", help="pipeline YAML, e.g. pipelines/mspfn-yolov8n.yaml")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders, globs; key=value overrides anywhere")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--skip-existing", action="store_true", help="skip images whose outputs exist (resume)")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    from ..imageio import write_bytes_atomic, write_mask, write_rgb
    from ..pipeline import Pipeline, load_config
    from ..visualize import draw_detections, overlay_mask

    overrides = args.overrides + [s for s in args.sources if "=" in s and not Path(s).exists()]
    sources = [s for s in args.sources if s not in overrides]
    if not sources:
        raise CLIError("no SOURCE given (files, folders or globs)")
    config = load_config(args.config, overrides)
    files = expand_sources(sources)
    pipeline = Pipeline.from_config(config)
    out = ensure_writable_dir(args.out)

    def record(path: Path) -> Path:  # written last: the image is finished
        return out / "predictions" / f"{path.stem}.json"

    jobs = ImageJobs(files, "run", done=(lambda path: record(path).exists()) if args.skip_existing else None,
                     as_float=True)
    done = 0
    for path, image in jobs:
        result = pipeline.predict(image, color="rgb", half=config["half"], tile=config["tile"])[0]
        derained = result.derained_uint8()
        annotated = derained
        if result.mask is not None:
            mask = result.mask.numpy()
            write_mask(out / "masks" / f"{path.stem}.png", mask)
            annotated = overlay_mask(annotated, mask, ignore_index=config["segmenter"]["ignore_index"])
        rows = []
        if result.detections is not None:
            annotated = draw_detections(annotated, result.detections)
            rows = result.detections.to_coco(path.stem)
        write_rgb(out / "derained" / f"{path.stem}.png", derained)
        write_rgb(out / "annotated" / f"{path.stem}.png", annotated)
        write_bytes_atomic(record(path), json.dumps(rows).encode())  # last: marks the image as finished
        done += 1
    gathered = [row for p in sorted((out / "predictions").glob("*.json")) for row in json.loads(p.read_text())]
    write_bytes_atomic(out / "predictions.json", json.dumps(gathered).encode())
    print(f"run: {done} image(s) into {out} ({len(gathered)} detections in {out / 'predictions.json'})")
    return jobs.exit_status()

