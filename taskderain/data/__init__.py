"""Datasets and paired transforms: rainy/clean pairs in the published folder layouts."""

from taskderain.data.augment import (
    NUM_DIHEDRAL,
    dihedral,
    dihedral_inverse,
    dihedral_inverse_index,
    pad_to_size,
    paired_center_crop,
    paired_crop,
    paired_random_crop,
    paired_random_dihedral,
)
from taskderain.data.paired import LAYOUTS, Layout, Pair, PairedRainDataset, find_pairs, match_pairs, natural_key

__all__ = [
    "LAYOUTS",
    "NUM_DIHEDRAL",
    "Layout",
    "Pair",
    "PairedRainDataset",
    "dihedral",
    "dihedral_inverse",
    "dihedral_inverse_index",
    "find_pairs",
    "match_pairs",
    "natural_key",
    "pad_to_size",
    "paired_center_crop",
    "paired_crop",
    "paired_random_crop",
    "paired_random_dihedral",
]
