"""``taskderain synth SOURCE --preset heavy --seed 0 --out DIR``: rainy copies of images and datasets.

SOURCE is an image folder, an ultralytics data YAML (a complete rainy copy: images, the labels
untouched, and a data YAML that ``yolo val data=...`` accepts), or an image folder with
``--masks DIR`` (a mask segmentation set: masks copied untouched). Rainy images are PNG (lossless,
so the rain is exactly the synthesised one) named after the source stems. Every file is written
atomically; re-running skips finished files, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .common import CLIError, ImageJobs, check_out_not_in_sources, ensure_writable_dir

MANIFEST = "taskderain-synth.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="make rainy copies of images or datasets (YOLO YAML, masks)",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("source", type=Path, metavar="SOURCE", help="image folder or ultralytics data YAML")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--preset", default=None, help="light, medium, heavy or storm (default heavy)")
    parser.add_argument("--intensity", type=float, default=None,
                        help="rain intensity in [0, 1] (the streak model's scale, or --rain's family)")
    parser.add_argument("--rain", default=None,
                        help="a rain-zoo family or mix instead of the streak presets: garg_nayar, raindrops@0.5, "
                             "'mix:{exclude: [raindrops]}' (see `taskderain models --rain`)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (per-image rain = f(stem, seed))")
    parser.add_argument("--masks", type=Path, default=None, help="mask folder: SOURCE is then a segmentation set")
    parser.add_argument("--overwrite", action="store_true", help="redo files that already exist")
    parser.set_defaults(run=run)


def _plan_folder(images: List[Path], out_images: Path) -> List[Tuple[Path, Path]]:
    return [(p, out_images / f"{p.stem}.png") for p in images]


def _plan_yaml(source: Path, out: Path) -> Tuple[List[Tuple[Path, Path]], List[Tuple[Path, Path]], Dict, Path]:
    """(image jobs, label copies, new YAML dict, dataset root) for an ultralytics data YAML."""
    from ..data.detection import list_split_images, load_data_yaml
    from ..data.labels import label_path_for

    data = load_data_yaml(source)
    root: Path = data["path"]
    jobs: Dict[Path, Path] = {}
    splits: Dict[str, List[str]] = {}
    for split in ("train", "val", "test"):
        if split not in data:
            continue
        rels = []
        for entry in data[split]:
            rel = entry.relative_to(root) if entry.is_relative_to(root) else Path("images") / split
            if entry.suffix == ".txt":
                raise CLIError(f"{source}: split {split!r} is a file list ({entry}); synth copies folder splits only")
            rels.append(rel.as_posix())
            for image in list_split_images([entry], f"{source} [{split}]"):
                jobs.setdefault(image, out / rel / image.relative_to(entry).with_suffix(".png"))
        splits[split] = rels if len(rels) > 1 else rels[0]
    labels = []
    for image, target in jobs.items():
        label = label_path_for(image)
        if label.exists():
            labels.append((label, label_path_for(target)))
    new_yaml = {"path": str(out.resolve()), **splits, "names": data["names"]}
    return list(jobs.items()), labels, new_yaml, root


def _check_manifest(out: Path, manifest: Dict, overwrite: bool) -> None:
    path = out / MANIFEST
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        keys = [k for k in ("params", "rain", "seed") if k in old]  # manifests before the zoo have no "rain"
        if {k: old.get(k) for k in keys} != {k: manifest.get(k) for k in keys}:
            raise CLIError(f"{out} already holds rain made with other settings ({path}: seed {old.get('seed')}, "
                           f"{old.get('label') or old.get('preset') or old.get('intensity')}); use another --out "
                           "or --overwrite")


def rain_of(args: argparse.Namespace) -> Tuple[Any, Optional[Any], str]:
    """(rain model, the streak RainParams or None, label) of the --preset / --intensity / --rain options."""
    from ..rain import rain_params
    from ..rain.spec import parse_rain_spec, rain_from_spec, rain_label

    if args.rain is not None:
        if args.preset is not None:
            raise CLIError("give --rain (a zoo family or mix) or --preset (a streak preset), not both")
        spec = parse_rain_spec(args.rain)
        if args.intensity is not None:
            spec["intensity"] = args.intensity
        return rain_from_spec(spec), None, rain_label(spec)
    preset = args.preset or (None if args.intensity is not None else "heavy")
    params = rain_params(preset, args.intensity)
    spec = {"name": preset} if preset else {"name": "streaks", "intensity": args.intensity}
    return rain_from_spec(spec), params, preset or f"i{args.intensity:g}"


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from ..imageio import ImageReadError, image_size, is_image_file, remove_stale_parts, write_bytes_atomic, write_rgb
    from ..rain import image_seed
    from ..rain.spec import describe_rain

    rain, params, label = rain_of(args)
    source, out = args.source, args.out
    if not source.exists():
        raise FileNotFoundError(f"no such folder or data YAML: {source}")
    copies: List[Tuple[Path, Path]] = []
    image_of_mask: Dict[Path, Path] = {}  # --masks: where a mask goes → its image
    new_yaml: Optional[Dict] = None
    if source.is_file() and source.suffix in (".yaml", ".yml"):
        jobs, copies, new_yaml, root = _plan_yaml(source, out)
    elif source.is_dir():
        images = sorted(p for p in source.iterdir() if p.is_file() and is_image_file(p))
        if not images:
            raise ValueError(f"folder {source} holds no images")
        jobs = _plan_folder(images, out / "images" if args.masks else out)
        if args.masks:
            if not args.masks.is_dir():
                raise FileNotFoundError(f"mask folder not found: {args.masks}")
            masks = {p.stem: p for p in args.masks.iterdir() if p.is_file() and is_image_file(p)}
            copies = [(masks[p.stem], out / "masks" / masks[p.stem].name) for p in images if p.stem in masks]
            image_of_mask = {dst: image for image, (_, dst) in zip([p for p in images if p.stem in masks], copies)}
    else:
        raise ValueError(f"SOURCE must be an image folder or a data YAML (.yaml): {source}")
    targets: Dict[Path, List[Path]] = {}
    for image_path, target in jobs:
        targets.setdefault(target, []).append(image_path)
    clashes = {t: srcs for t, srcs in targets.items() if len(srcs) > 1}
    if clashes:
        target, srcs = next(iter(clashes.items()))
        raise CLIError(f"{len(clashes)} output name(s) would collide (e.g. {target} from {', '.join(map(str, srcs))}): "
                       "rainy copies are PNGs named after the file stem; rename or split these images")
    read_from = [root if new_yaml is not None else source] + ([args.masks] if args.masks else [])
    check_out_not_in_sources(out, [str(f) for f in read_from], [])
    ensure_writable_dir(out)
    manifest = {"source": str(source.resolve()), "label": label, "preset": args.preset, "intensity": args.intensity,
                "seed": args.seed, "rain": describe_rain(rain), "per_image_seed": "image_seed(file stem, seed)",
                **({"params": dataclasses.asdict(params)} if params is not None else {})}
    _check_manifest(out, manifest, args.overwrite)
    remove_stale_parts(out)  # temporary files of a run killed mid-write
    write_bytes_atomic(out / MANIFEST, json.dumps(manifest, indent=2).encode())

    made = 0
    images = ImageJobs(jobs, f"synth {label}", path=lambda job: job[0],
                       done=lambda job: job[1].exists() and not args.overwrite)
    for (image_path, target), clean in images:
        rainy = rain.apply(clean, image_seed(image_path.stem, args.seed))
        write_rgb(target, rainy)
        made += 1
    copied = 0
    for src, dst in copies:
        if dst in image_of_mask:  # a mask: it must fit its image, whether the image was made now or before
            from ..data.segmentation import read_mask

            image = image_of_mask[dst]
            try:
                height, width = image_size(image)
            except (ImageReadError, FileNotFoundError):
                continue  # the unreadable image is reported already
            if read_mask(src).shape != (height, width):
                images.failures.append(f"mask {src} is not the size of its image {image} ({width}x{height}); "
                                       "not copied")
                if dst.exists():
                    dst.unlink()  # a wrong-size mask copied by an older version
                continue
        if args.overwrite or not dst.exists():
            write_bytes_atomic(dst, src.read_bytes())
            copied += 1
    if new_yaml is not None:
        yaml_path = out / f"{source.stem}-rain-{label.replace('/', '_')}.yaml"
        header = f"# rainy copy of {source.resolve()} made by taskderain synth (seed {args.seed})\n"
        write_bytes_atomic(yaml_path, (header + yaml.safe_dump(new_yaml, sort_keys=False)).encode())
        print(f"data YAML: {yaml_path}")
    print(f"synth: {made} rainy image(s) written to {out}" + (f", {images.kept} already there" if images.kept else "")
          + (f", {copied} label/mask file(s) copied" if copied else ""))
    return images.exit_status("file")
