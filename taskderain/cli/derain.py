"""``taskderain derain SOURCE... --model NAME [--weights PATH] --out DIR``: derain image files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (ImageJobs, add_model_args, check_out_not_in_sources, check_unique_stems, ensure_writable_dir,
                     expand_sources, load_model)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("derain", help="derain images (files, folders, globs) into PNGs",
                            description="Derain images; outputs are PNGs named after the inputs' stems.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image file, folder or glob")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_args(parser)
    parser.add_argument("--skip-existing", action="store_true", help="keep outputs that already exist (resume)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..imageio import remove_stale_parts, write_rgb
    from ..inference import derain_array

    files = expand_sources(args.sources)
    check_unique_stems(files, args.out)
    check_out_not_in_sources(args.out, args.sources, files)
    model, dtype = load_model(args)
    out_dir = ensure_writable_dir(args.out)
    remove_stale_parts(out_dir)
    jobs = ImageJobs(files, "derain", done=(lambda path: (out_dir / f"{path.stem}.png").exists())
                     if args.skip_existing else None, as_float=True)
    done = 0
    for path, rgb in jobs:
        derained = jobs.attempt(path, lambda: derain_array(model, rgb, tile=args.tile, overlap=args.overlap,
                                                           dtype=dtype, max_pixels=args.max_pixels))
        if derained is not None:
            write_rgb(out_dir / f"{path.stem}.png", derained)
            done += 1
    print(f"derained {done} image(s) into {out_dir}" + (f", kept {jobs.kept} existing" if jobs.kept else ""))
    return jobs.exit_status()
