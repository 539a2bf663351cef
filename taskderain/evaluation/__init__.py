"""Evaluation of derainers (paired PSNR/SSIM) and of whole pipelines under rain (mAP, mIoU, recovery).

``evaluate_derainer`` scores a derainer on a paired rain set. ``evaluate_report`` runs
``taskderain eval``: every rain condition × derainer on the same images, with the clean images as
the reference row, cached per image so a killed run resumes, and writes ``results.json``,
``results.csv``, ``report.md`` and the figures. ``ultralytics_crosscheck`` compares the pycocotools
mAP with ultralytics' own validator on the same images.
"""

from .cache import EvalCache, cache_key
from .conditions import RainCondition, clean_condition, condition_at, parse_intensity, parse_rain
from .crosscheck import ultralytics_crosscheck
from .dataset import EvalData, check_label_pairing, open_eval_data
from .derain import evaluate_derainer
from .eval_report import evaluate_report
from .report import add_recovery, recovery
from .runner import Evaluation, EvalSettings
from .stages import DerainerSpec, build_derainer_spec, file_sha256, identity_spec, module_digest, parse_derainers

__all__ = [
    "DerainerSpec",
    "EvalCache",
    "EvalData",
    "EvalSettings",
    "Evaluation",
    "RainCondition",
    "add_recovery",
    "build_derainer_spec",
    "cache_key",
    "check_label_pairing",
    "clean_condition",
    "condition_at",
    "evaluate_derainer",
    "evaluate_report",
    "file_sha256",
    "identity_spec",
    "module_digest",
    "open_eval_data",
    "parse_derainers",
    "parse_intensity",
    "parse_rain",
    "recovery",
    "ultralytics_crosscheck",
]
