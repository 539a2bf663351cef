"""``taskderain run CONFIG SOURCE... --out DIR [key=value ...]``: a pipeline YAML over image files.

Writes, per image, ``derained/STEM.png``, ``annotated/STEM.png`` (boxes and mask drawn on the
derained image), ``masks/STEM.png`` (class indices) and ``predictions/STEM.json``; at the end
``predictions.json`` gathers the detections of this run's images as a COCO results list
(``image_id`` = file stem, ``category_id`` = class index, ``bbox`` = xywh px). Re-running with
``--skip-existing`` resumes: an image's outputs are kept only when its record says they were made
from the same file with the same settings; outputs made with other settings are refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import (CLIError, ImageJobs, check_out_not_in_sources, check_unique_stems, ensure_writable_dir,
                     expand_sources, load_pipeline_config)

RECORD_FORMAT = "taskderain.run/1"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run a pipeline YAML (derain → detect/segment) over images",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("config", type=Path, metavar="CONFIG", help="pipeline YAML, e.g. pipelines/mspfn-yolov8n.yaml")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders, globs; key=value overrides anywhere")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--skip-existing", action="store_true",
                        help="keep the outputs of images already done with the same settings (resume)")
    parser.set_defaults(run=run, overrides=[])


def run_settings(config: Dict[str, Any], pipeline: Any) -> Dict[str, Any]:
    """What determines an image's outputs: the config (less the device) and each stage's weights digest."""
    from ..evaluation.stages import module_digest

    settings = {k: v for k, v in config.items() if k not in ("device", "batch")}
    settings["digests"] = {"derainer": module_digest(pipeline.derainer),
                           **{name: module_digest(head) for name, head in pipeline.heads.items()}}
    return json.loads(json.dumps(settings, default=str))  # as it reads back from a record


def read_record(path: Path) -> Optional[Dict[str, Any]]:
    """A per-image record, or None when it is absent, unreadable or of an older format."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def run(args: argparse.Namespace) -> int:
    from ..config import first_difference
    from ..evaluation.stages import file_sha256
    from ..imageio import remove_stale_parts, write_bytes_atomic, write_mask, write_rgb
    from ..pipeline import Pipeline
    from ..visualize import draw_detections, overlay_mask

    overrides = args.overrides + [s for s in args.sources if "=" in s and not Path(s).exists()]
    sources = [s for s in args.sources if s not in overrides]
    if not sources:
        raise CLIError("no SOURCE given (files, folders or globs)")
    config = load_pipeline_config(args.config, overrides)
    files = expand_sources(sources)
    check_unique_stems(files, args.out)
    check_out_not_in_sources(args.out, sources, files)
    pipeline = Pipeline.from_config(config)
    out = ensure_writable_dir(args.out)
    remove_stale_parts(out)
    settings = run_settings(config, pipeline)
    hashes = {path: file_sha256(path) for path in files}

    def record_path(path: Path) -> Path:  # written last: the image is finished
        return out / "predictions" / f"{path.stem}.json"

    kept: Dict[Path, Dict[str, Any]] = {}
    if args.skip_existing:
        for path in files:
            if not record_path(path).exists():
                continue
            record = read_record(record_path(path))
            if record is None:
                raise CLIError(f"{record_path(path)} was not written by this version of taskderain run (or is "
                               "damaged); use another --out, or run without --skip-existing to redo the images")
            if record["source_sha256"] != hashes[path]:
                raise CLIError(f"{out} holds outputs for '{path.stem}' made from another file ({record['source']}, "
                               f"not {path}); use another --out, or run without --skip-existing")
            differ = first_difference(record["settings"], settings)
            if differ:
                raise CLIError(f"{out} holds outputs made with other settings: '{differ[0]}' was {differ[1]!r}, "
                               f"now {differ[2]!r} ({record_path(path)}); use another --out, or run without "
                               "--skip-existing to redo them")
            kept[path] = record

    jobs = ImageJobs(files, "run", done=lambda path: path in kept, as_float=True)
    done = 0
    for path, image in jobs:
        result = jobs.attempt(path, lambda: pipeline.predict(image, color="rgb", half=config["half"],
                                                             tile=config["tile"], overlap=config["overlap"],
                                                             max_pixels=config["max_pixels"])[0])
        if result is None:
            continue
        derained = result.derained_uint8()
        annotated = derained
        if result.mask is not None:
            mask = result.mask.numpy()
            write_mask(out / "masks" / f"{path.stem}.png", mask)
            annotated = overlay_mask(annotated, mask, ignore_index=pipeline.segmenter.ignore_index)
        rows: List[Dict[str, Any]] = []
        if result.detections is not None:
            annotated = draw_detections(annotated, result.detections)
            rows = result.detections.to_coco(path.stem)
        write_rgb(out / "derained" / f"{path.stem}.png", derained)
        write_rgb(out / "annotated" / f"{path.stem}.png", annotated)
        record = {"format": RECORD_FORMAT, "source": str(path.resolve()), "source_sha256": hashes[path],
                  "settings": settings, "detections": rows}
        write_bytes_atomic(record_path(path), json.dumps(record).encode())  # last: marks the image as finished
        kept[path] = record
        done += 1
    gathered = [row for path in files if path in kept for row in kept[path]["detections"]]  # this run's images only
    write_bytes_atomic(out / "predictions.json", json.dumps(gathered).encode())
    print(f"run: {done} image(s) into {out}" + (f", kept {jobs.kept} finished" if jobs.kept else "")
          + f" ({len(gathered)} detections of {len(kept)} image(s) in {out / 'predictions.json'})")
    return jobs.exit_status()
