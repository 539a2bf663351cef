"""Datasets: rainy/clean pairs in the published layouts, detection (YOLO, COCO-json) and mask
segmentation sets, letterboxing and the ultralytics-style collate."""

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
from taskderain.data.batching import Letterbox, collate_batch
from taskderain.data.detection import CocoDetectionDataset, YoloDetectionDataset, load_data_yaml
from taskderain.data.labels import LabelError, LabelReport
from taskderain.data.paired import LAYOUTS, Layout, Pair, PairedRainDataset, find_pairs, match_pairs, natural_key
from taskderain.data.segmentation import MaskSegmentationDataset, class_map_from_yaml

__all__ = [
    "CocoDetectionDataset",
    "LabelError",
    "LabelReport",
    "Letterbox",
    "MaskSegmentationDataset",
    "YoloDetectionDataset",
    "class_map_from_yaml",
    "collate_batch",
    "load_data_yaml",
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
