"""Paired rainy/clean image datasets in the layouts deraining repositories publish.

:func:`find_pairs` recognises a layout under a root folder (or matches two explicit folders)
and returns sorted (rainy, clean) file pairs; :class:`PairedRainDataset` loads them as
tensors with optional paired crops and dihedral augmentation.

Layouts, tried in this order (the first that has images in both folders wins):

========================  ===========================  ==========================  =========
name                      rainy                        clean                       pairing
========================  ===========================  ==========================  =========
``rainy+norain-``         ``rainy/rain-001.png``       ``norain-001.png`` (root)   1:1
``rainy+norain/``         ``rainy/rain-001.png``       ``norain/norain-001.png``   1:1
``input+target``          ``input/x.png``              ``target/x.png``            1:1
``inputcrop+cleancrop``   ``inputcrop/x.png``          ``cleancrop/x.png``         1:1
``rainy_image+ground_truth``  ``rainy_image/901_3.jpg``  ``ground_truth/901.jpg``  many:1
``rain-+norain-``         ``rain-1.png`` (root)        ``norain-1.png`` (root)     1:1
========================  ===========================  ==========================  =========

Files pair by stem, extensions may differ; the ``rain-`` / ``norain-`` prefixes are stripped
before matching, and a folder shared with other files (the root, or one folder holding both
sides) only contributes files carrying its side's prefix (so ``rainstreak-1.png`` is ignored).
In many-to-one layouts a rainy stem ``KEY_N`` pairs with the clean stem ``KEY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from taskderain.data.augment import (
    NUM_DIHEDRAL,
    Size,
    as_size,
    dihedral,
    paired_center_crop,
    paired_crop,
    pad_to_size,
)
from taskderain.imageio import IMAGE_SUFFIXES, is_image_file, read_rgb

from ..types import PathLike

_SHOW = 5  # file names quoted in an error before "... and N more"
_REPEAT = re.compile(r"^(.+)_(\d+)$")  # many-to-one rainy stems: KEY_N


@dataclass(frozen=True)
class Pair:
    """One rainy image and its clean target; ``name`` is the rainy file's stem."""

    name: str
    rainy: Path
    clean: Path


@dataclass(frozen=True)
class Layout:
    """A published folder layout: where each side lives and how stems pair."""

    name: str
    rainy: str
    clean: str
    rainy_prefix: str = ""
    clean_prefix: str = ""
    many_to_one: bool = False

    def describe(self) -> str:
        rainy = f"{self.rainy}/{self.rainy_prefix}*" if self.rainy != "." else f"{self.rainy_prefix}*"
        clean = f"{self.clean}/{self.clean_prefix}*" if self.clean != "." else f"{self.clean_prefix}*"
        return f"{self.name} ({rainy} -> {clean}{', many-to-one KEY_N -> KEY' if self.many_to_one else ''})"


LAYOUTS: Tuple[Layout, ...] = (
    Layout("rainy+norain-", "rainy", ".", "rain-", "norain-"),
    Layout("rainy+norain/", "rainy", "norain", "rain-", "norain-"),
    Layout("input+target", "input", "target"),
    Layout("inputcrop+cleancrop", "inputcrop", "cleancrop"),
    Layout("rainy_image+ground_truth", "rainy_image", "ground_truth", many_to_one=True),
    Layout("rain-+norain-", ".", ".", "rain-", "norain-"),
)


def natural_key(text: str) -> Tuple:
    """Sort key that orders embedded numbers numerically: ``rain-2`` < ``rain-10``."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text.lower()) if t)


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" ... and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _images(folder: Path, prefix: str = "") -> List[Path]:
    """Image files directly in ``folder`` (hidden files skipped), optionally only ``prefix*`` stems."""
    if not folder.is_dir():
        return []
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_image_file(p) and p.stem.lower().startswith(prefix)
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _key(stem: str, prefix: str) -> str:
    return stem[len(prefix) :] if prefix and stem.lower().startswith(prefix) else stem


def match_pairs(
    rainy_files: Sequence[Path],
    clean_files: Sequence[Path],
    rainy_prefix: str = "",
    clean_prefix: str = "",
    many_to_one: Optional[bool] = False,
) -> List[Pair]:
    """Pair rainy and clean files by stem.

    Args:
        rainy_files, clean_files: image paths (any extensions).
        rainy_prefix, clean_prefix: stem prefixes stripped before matching (``rain-``, ``norain-``).
        many_to_one: True: a rainy ``KEY_N`` may pair with clean ``KEY`` and clean files may go
            unused; False: strictly 1:1; None: decide from the files (many-to-one if any rainy
            file needed the ``_N`` rule).

    Returns:
        Pairs sorted naturally by rainy file name.

    Raises:
        ValueError: two clean files share a key, a rainy file has no clean partner, or (1:1)
            a clean file has no rainy partner; the message lists the files.
    """
    index: Dict[str, Path] = {}
    for path in clean_files:
        key = _key(path.stem, clean_prefix)
        if key in index:
            raise ValueError(f"two clean images match the same name {key!r}: {index[key]} and {path}; remove one")
        index[key] = path
    pairs, unmatched, repeated = [], [], False
    for path in sorted(rainy_files, key=lambda p: natural_key(p.name)):
        key = _key(path.stem, rainy_prefix)
        if key not in index and many_to_one is not False:
            m = _REPEAT.match(key)
            if m and m.group(1) in index:
                key, repeated = m.group(1), True
        if key in index:
            pairs.append(Pair(path.stem, path, index[key]))
        else:
            unmatched.append(path.name)
    clean_dir = clean_files[0].parent if clean_files else "the clean folder"
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} rainy image(s) have no clean partner in {clean_dir} "
            f"(looked for the same stem{' or KEY for KEY_N' if many_to_one is not False else ''}, "
            f"prefixes {rainy_prefix or '-'!r}/{clean_prefix or '-'!r} stripped): {_listing(unmatched)}"
        )
    if not (many_to_one or (many_to_one is None and repeated)):
        used = {p.clean for p in pairs}
        orphans = [p.name for p in clean_files if p not in used]
        if orphans:
            raise ValueError(
                f"{len(orphans)} clean image(s) in {clean_dir} have no rainy partner: {_listing(orphans)}"
            )
    return pairs


def _found(root: Path) -> str:
    folders = sorted(p.name + "/" for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images = [p.name for p in _images(root)]
    shown = ", ".join(folders[:10]) + (", ..." if len(folders) > 10 else "")
    return f"subfolders [{shown}], {len(images)} image(s) in the root" + (f" ({_listing(images)})" if images else "")


def _side(root: Path, layout: Layout) -> Tuple[List[Path], List[Path]]:
    """The rainy and clean files a layout sees under ``root`` (prefix filters apply to shared folders)."""
    rainy_dir, clean_dir = root / layout.rainy, root / layout.clean
    shared = rainy_dir.resolve() == clean_dir.resolve()
    rainy = _images(rainy_dir, layout.rainy_prefix if (shared or layout.rainy == ".") else "")
    clean = _images(clean_dir, layout.clean_prefix if (shared or layout.clean == ".") else "")
    return rainy, clean


def find_pairs(
    root: Optional[PathLike] = None,
    rainy_dir: Optional[PathLike] = None,
    clean_dir: Optional[PathLike] = None,
) -> Tuple[List[Pair], str]:
    """Find the (rainy, clean) image pairs of a dataset.

    Args:
        root: dataset folder in one of the :data:`LAYOUTS` (see the module docstring).
        rainy_dir, clean_dir: two explicit folders instead (relative ones resolve against
            ``root`` when given), paired by stem with ``rain-``/``norain-`` stripped and the
            many-to-one ``KEY_N -> KEY`` rule where needed.

    Returns:
        (pairs sorted naturally by rainy name, layout name — ``"explicit"`` for two folders).

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: no layout recognised (lists what was looked for and what was found), no
            images, or unmatched files (listed).
    """
    base = Path(root) if root is not None else None
    if base is not None and not base.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {base}")
    if rainy_dir is not None or clean_dir is not None:
        if rainy_dir is None or clean_dir is None:
            raise ValueError("pass both rainy_dir= and clean_dir= (or root= alone to detect the layout)")
        dirs = [Path(d) if base is None else base / d for d in (rainy_dir, clean_dir)]
        for d in dirs:
            if not d.is_dir():
                raise FileNotFoundError(f"image folder not found: {d}")
        layout = Layout("explicit", str(dirs[0]), str(dirs[1]), "rain-", "norain-")
        rainy, clean = _side(Path(), layout)
        for side, files, d in (("rainy", rainy, dirs[0]), ("clean", clean, dirs[1])):
            if not files:
                raise ValueError(f"no {side} images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in {d}")
        return match_pairs(rainy, clean, "rain-", "norain-", many_to_one=None), layout.name
    if base is None:
        raise ValueError("pass root= (a dataset folder) or rainy_dir= and clean_dir=")
    for layout in LAYOUTS:
        rainy, clean = _side(base, layout)
        if rainy and clean:
            pairs = match_pairs(rainy, clean, layout.rainy_prefix, layout.clean_prefix, layout.many_to_one)
            return pairs, layout.name
    looked = "; ".join(layout.describe() for layout in LAYOUTS)
    raise ValueError(
        f"no paired rain layout recognised in {base}: looked for {looked}; found {_found(base)}. "
        "Pass rainy_dir= and clean_dir= to pair two folders explicitly."
    )


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class PairedRainDataset(Dataset):
    """Rainy/clean image pairs as float tensors, with optional paired crops and augmentation.

    Items are dicts ``{"rainy": (3,H,W) float32 in [0,1], "clean": same, "name": rainy stem,
    "rainy_path": str, "clean_path": str}``.

    * ``patch_size=None``: whole images; sizes vary, so use ``batch_size=1``.
    * ``patch_size`` set, ``augment=False``: the centre patch (deterministic validation crops).
    * ``patch_size`` set, ``augment=True``: a random patch at the same place in both images,
      then one of the 8 dihedral transforms (:func:`~taskderain.data.augment.dihedral`) applied
      to both; non-square patches keep their (h, w) under quarter turns.
    * ``augment=True`` without ``patch_size``: dihedral only (odd transforms swap H and W).

    Images smaller than the patch are reflect-padded at the bottom/right (both sides alike).
    Randomness comes from a generator seeded by ``(seed, epoch, index)`` only, so an item is
    the same whichever DataLoader worker loads it; call :meth:`set_epoch` each epoch for new
    crops (with ``persistent_workers=True`` the workers keep their own copy and miss it).

    Args:
        root: dataset folder in a recognised layout (see :func:`find_pairs`).
        rainy_dir, clean_dir: two explicit folders instead of a layout.
        patch_size: patch side or (height, width) in pixels; None for whole images.
        augment: random crops + dihedral transforms.
        seed: non-negative base seed of the augmentation.
        limit: keep only the first ``limit`` pairs (in natural order).

    Attributes:
        pairs: the :class:`Pair` list; layout: the detected layout name.
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        rainy_dir: Optional[PathLike] = None,
        clean_dir: Optional[PathLike] = None,
        patch_size: Optional[Size] = None,
        augment: bool = False,
        seed: int = 0,
        limit: Optional[int] = None,
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        self.pairs, self.layout = find_pairs(root, rainy_dir, clean_dir)
        if limit is not None:
            self.pairs = self.pairs[:limit]
        self.root = Path(root) if root is not None else None
        self.patch_size = as_size(patch_size) if patch_size is not None else None
        self.augment, self.seed, self.epoch = augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (a non-negative int)."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = epoch

    def generator(self, index: int) -> torch.Generator:
        """The item's random generator, a pure function of (seed, epoch, index)."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The full-size (3,H,W) float32 [0,1] rainy and clean images of pair ``index``."""
        pair = self.pairs[index]
        rainy, clean = read_rgb(pair.rainy, as_float=True), read_rgb(pair.clean, as_float=True)
        if rainy.shape != clean.shape:
            raise ValueError(
                f"rainy and clean images differ in size: {pair.rainy} is {rainy.shape[0]}x{rainy.shape[1]} "
                f"but {pair.clean} is {clean.shape[0]}x{clean.shape[1]} (HxW)"
            )
        return _to_tensor(rainy), _to_tensor(clean)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        pair = self.pairs[index]
        rainy, clean = self.load(index)
        g = self.generator(index) if self.augment else None
        k = int(torch.randint(NUM_DIHEDRAL, (1,), generator=g)) if g is not None else 0
        if self.patch_size is not None:
            h, w = self.patch_size
            size = (w, h) if k % 2 else (h, w)  # a quarter turn maps a (w, h) crop to (h, w)
            rainy, clean = pad_to_size(rainy, size), pad_to_size(clean, size)
            if g is None:
                rainy, clean = paired_center_crop(rainy, clean, size)
            else:
                top = int(torch.randint(rainy.shape[-2] - size[0] + 1, (1,), generator=g))
                left = int(torch.randint(rainy.shape[-1] - size[1] + 1, (1,), generator=g))
                rainy, clean = paired_crop(rainy, clean, top, left, size)
        rainy, clean = dihedral(rainy, k), dihedral(clean, k)
        return {
            "rainy": rainy,
            "clean": clean,
            "name": pair.name,
            "rainy_path": str(pair.rainy),
            "clean_path": str(pair.clean),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layout={self.layout!r}, pairs={len(self)}, "
            f"patch_size={self.patch_size}, augment={self.augment}, seed={self.seed}, epoch={self.epoch})"
        )
