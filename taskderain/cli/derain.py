"""``taskderain derain SOURCE... --model NAME [--weights PATH] --out DIR``: derain image files."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from .common import CLIError, ImageJobs, add_model_args, autotile, ensure_writable_dir, expand_sources, load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("derain", help="derain images (files, folders, globs) into PNGs",
                            description="Derain images; outputs are PNGs named after the inputs' stems.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image file, folder or glob")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_args(parser)
    parser.add_argument("--max-pixels", type=int, default=2_100_000,
                        help="images larger than this are tiled automatically (default ~1920x1080)")
    parser.add_argument("--skip-existing", action="store_true", help="keep outputs that already exist (resume)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..imageio import write_rgb
    from ..inference import derain_array

    files = expand_sources(args.sources)
    by_stem = defaultdict(list)
    for path in files:
        by_stem[path.stem].append(path)
    clashes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if clashes:
        listing = "; ".join(f"{stem}: {', '.join(map(str, paths))}" for stem, paths in list(clashes.items())[:5])
        raise CLIError(f"{len(clashes)} output name(s) would collide in {args.out} ({listing}); derain them separately")
    model, dtype = load_model(args)
    out_dir = ensure_writable_dir(args.out)
    jobs = ImageJobs(files, "derain", done=(lambda path: (out_dir / f"{path.stem}.png").exists())
                     if args.skip_existing else None, as_float=True)
    done = 0
    for path, rgb in jobs:
        tile = autotile(rgb.shape[0], rgb.shape[1], args.tile, args.max_pixels)
        write_rgb(out_dir / f"{path.stem}.png", derain_array(model, rgb, tile=tile, overlap=args.overlap, dtype=dtype))
        done += 1
    print(f"derained {done} image(s) into {out_dir}" + (f", kept {jobs.kept} existing" if jobs.kept else ""))
    return jobs.exit_status()
