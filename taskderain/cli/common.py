"""Argument groups and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import glob
import sys
import tempfile
from pathlib import Path
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from ..imageio import IMAGE_SUFFIXES, is_image_file


T = TypeVar("T")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model/--weights/--device/--half/--tile/--overlap."""
    parser.add_argument("--model", required=True, help="derainer preset (see `taskderain models`)")
    parser.add_argument("--weights", help="checkpoint or state_dict file for the derainer")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or 1 (default: cuda if available)")
    parser.add_argument("--half", action="store_true", help="autocast: bf16 on CPU, fp16 on CUDA")
    add_tiling_args(parser)


def add_tiling_args(parser: argparse.ArgumentParser) -> None:
    """--tile/--overlap/--max-pixels, checked by :func:`taskderain.inference.check_tiling`."""
    from ..inference import DEFAULT_MAX_PIXELS

    parser.add_argument("--tile", type=int, default=None, help="derain in tiles of N px (bounded memory)")
    parser.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default 64)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"images larger than this are tiled automatically (default {DEFAULT_MAX_PIXELS:,}, "
                             "~1920x1080; 0: never)")


def load_model(args: argparse.Namespace) -> tuple:
    """(model on its device, autocast dtype or None) from the parsed model arguments."""
    from ..inference import check_tiling, half_dtype, resolve_device
    from ..models import create_derainer

    check_tiling(args.tile, args.overlap, args.max_pixels)  # before any work
    device = resolve_device(args.device)
    model = create_derainer(args.model, weights=args.weights)
    if args.weights is None and any(True for _ in model.parameters()):
        print(f"warning: no --weights given, so {args.model!r} has random weights and its output "
              "is meaningless; pass --weights FILE", file=sys.stderr)
    dtype = half_dtype(device) if args.half else None
    return model.to(device).eval(), dtype


def expand_sources(sources: List[str]) -> List[Path]:
    """Image files named by ``sources``: files, folders (their images, sorted) and globs.

    Raises:
        FileNotFoundError: a source matches nothing (names it).
        ValueError: a file is not an image, or a folder holds none.
    """
    files: List[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not found:
                raise ValueError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            if not is_image_file(path):
                raise ValueError(f"not an image file (suffix {path.suffix!r}): {path}")
            files.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(source, recursive=True) if is_image_file(m))
            if not matches:
                raise FileNotFoundError(f"no such image, folder or glob match: {source}")
            files.extend(matches)
    return list(dict.fromkeys(files))


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check that files can be written there, before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise NotADirectoryError(f"output folder {path} is not writable: {exc.strerror or exc}") from None
    return path


def check_unique_stems(files: List[Path], out: Path) -> None:
    """Outputs are named after the inputs' stems: refuse inputs whose stems collide
    (``photo.jpg`` + ``photo.png``), which would overwrite each other's outputs."""
    by_stem: Dict[str, List[Path]] = defaultdict(list)
    for path in files:
        by_stem[path.stem].append(path)
    clashes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if clashes:
        listing = "; ".join(f"{stem}: {', '.join(map(str, paths))}" for stem, paths in list(clashes.items())[:5])
        raise CLIError(f"{len(clashes)} output name(s) would collide in {out} ({listing}); outputs are named after "
                       "the file stem, so process these separately or rename them")


def check_out_not_in_sources(out: Path, sources: Iterable[str], files: Iterable[Path]) -> None:
    """Refuse, before any work, an output folder that would mix outputs with the inputs, naming both
    paths: a folder given as a source, or inside one; or the folder of an input file (an output
    PNG could replace an input of the same name)."""
    target = out.resolve()
    folders = [Path(s).resolve() for s in sources if Path(s).is_dir()]
    for folder in dict.fromkeys(folders):
        if target == folder or folder in target.parents:
            where = "is" if target == folder else "is inside"
            raise CLIError(f"--out {out} {where} the source folder {folder}: outputs would replace or mix with the "
                           "inputs; choose an output folder outside the sources")
    for folder in dict.fromkeys(Path(f).resolve().parent for f in files):
        if target == folder:
            raise CLIError(f"--out {out} is the folder of the input images ({folder}): outputs would replace or mix "
                           "with the inputs; choose another output folder")


class ImageJobs:
    """The image loop of a resumable batch command (``derain``, ``run``, ``synth``).

    Iterating yields ``(job, image)`` for every job whose output is not there yet (``done(job)``
    false; the others are counted in ``kept``) and whose image reads; an unreadable image is
    recorded in ``failures`` (the message names the file) and the loop goes on.

    Args:
        jobs: paths, or anything ``path(job)`` maps to the image path.
        desc: progress-bar label. ``as_float``: read images as float (16-bit precision kept).
    """

    def __init__(self, jobs: Iterable[T], desc: str, done: Optional[Callable[[T], bool]] = None,
                 path: Callable[[T], Path] = lambda job: job, as_float: bool = False) -> None:
        self.jobs, self.desc, self.done, self.path, self.as_float = list(jobs), desc, done, path, as_float
        self.failures: List[str] = []
        self.kept = 0

    def __iter__(self) -> Iterator[Tuple[T, Any]]:
        from tqdm import tqdm

        from ..imageio import ImageReadError, read_rgb

        for job in tqdm(self.jobs, desc=self.desc, unit="img"):
            if self.done is not None and self.done(job):
                self.kept += 1
                continue
            try:
                image = read_rgb(self.path(job), as_float=self.as_float)
            except (ImageReadError, FileNotFoundError) as exc:
                self.failures.append(str(exc))
                continue
            yield job, image

    def attempt(self, job: T, work: Callable[[], Any]) -> Any:
        """``work()`` for ``job``; a non-finite result (NaN/Inf from the model) is recorded as a
        failure naming the image instead of being written, and gives ``None``."""
        from ..inference import NonFiniteOutputError

        try:
            return work()
        except NonFiniteOutputError as exc:
            self.failures.append(f"{self.path(job)}: {exc}; nothing written")
            return None

    def exit_status(self, what: str = "image") -> int:
        """Print the failures (if any) to stderr; 1 if there were any, else 0."""
        if not self.failures:
            return 0
        print(f"{len(self.failures)} {what}(s) failed:\n  " + "\n  ".join(self.failures), file=sys.stderr)
        return 1


def load_pipeline_config(path: Any, overrides: Sequence[str]) -> Dict[str, Any]:
    """The pipeline config of CONFIG: a pipeline YAML, or a training run's ``config.yaml`` (its
    derainer checkpoint, trained heads and rain: :func:`~taskderain.train.export.run_pipeline_config`)."""
    from ..config import read_yaml
    from ..pipeline import load_config
    from ..train.export import is_run_config, run_pipeline_config

    if path is not None and is_run_config(read_yaml(path, "config YAML")):
        return load_config(None, overrides, run_pipeline_config(path))
    return load_config(path, overrides)
