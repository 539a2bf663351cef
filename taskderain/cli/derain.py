"""``taskderain derain SOURCE... --model NAME [--weights PATH] --out DIR``: derain image files."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from .common import CLIError, add_model_args, autotile, ensure_writable_dir, expand_sources, load_model


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
    from tqdm import tqdm

    from ..imageio import ImageReadError, read_rgb, write_rgb
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
    failures = []
    done = skipped = 0
    for path in tqdm(files, desc="derain", unit="img"):
        target = out_dir / f"{path.stem}.png"
        if args.skip_existing and target.exists():
            skipped += 1
            continue
        try:
            rgb = read_rgb(path, as_float=True)
        except (ImageReadError, FileNotFoundError) as exc:
            failures.append(str(exc))
            continue
        tile = autotile(rgb.shape[0], rgb.shape[1], args.tile, args.max_pixels)
        write_rgb(target, derain_array(model, rgb, tile=tile, overlap=args.overlap, dtype=dtype))
        done += 1
    print(f"derained {done} image(s) into {out_dir}" + (f", kept {skipped} existing" if skipped else ""))
    if failures:
        print(f"{len(failures)} image(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0
