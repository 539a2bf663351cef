"""Weights shipped inside the package, by preset and tag: ``create_derainer("mspfn_lite", weights="default")``.

Each file is a taskderain checkpoint under ``taskderain/weights/`` whose metadata holds its
recipe, training data, seed, steps and measured metrics (the README's model card repeats them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

from ..types import PathLike

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

#: preset → {tag: file name in WEIGHTS_DIR}
PRETRAINED: Dict[str, Dict[str, str]] = {
    # default: light synthetic streaks (32.7 dB Rain100L); allweather: the rain-zoo mixture (31.1 dB Rain100L);
    # taskdriven: allweather fine-tuned with the frozen COCO YOLOv8n's loss and features, tone anchored to
    # its start (the task-driven experiment's winner, 30.9 dB Rain100L)
    "mspfn_lite": {"default": "mspfn_lite-synthrain-coco.pt", "allweather": "mspfn_lite-allweather.pt",
                   "taskdriven": "mspfn_lite-taskdriven.pt"},
}


def pretrained_tags(name: str) -> Dict[str, Path]:
    """``{tag: path}`` of the weights shipped for preset ``name`` (empty when none)."""
    return {tag: WEIGHTS_DIR / file for tag, file in PRETRAINED.get(name, {}).items()}


def resolve_weights(name: str, weights: Optional[PathLike]) -> Optional[PathLike]:
    """``weights`` itself, or the shipped file when it is a tag (``"default"``) of preset ``name``.

    Raises:
        FileNotFoundError: a tag that preset ``name`` does not ship (the message lists the presets
            and tags that exist), or a shipped file missing from the installation.
    """
    if weights is None or not isinstance(weights, str) or os.sep in weights or Path(weights).suffix:
        return weights
    tags = pretrained_tags(name)
    if weights not in tags:
        if Path(weights).exists():
            return weights
        known = "; ".join(f"{n}: {', '.join(t)}" for n, t in PRETRAINED.items())
        raise FileNotFoundError(f"no weights file {weights!r}, and {weights!r} is not a shipped tag of derainer "
                                f"{name!r} (shipped: {known})")
    path = tags[weights]
    if not path.is_file():
        raise FileNotFoundError(f"the shipped weights {path} of {name!r} ({weights!r}) are missing from this "
                                "installation; reinstall taskderain")
    return path
