"""Stages from their spec entries: the one place a derainer, a head or a whole pipeline is built.

``run``, ``eval``, ``train``, ``export`` and ``demo`` all build through these functions, so a spec
means the same thing everywhere (a head's options, ``imgsz`` where the command decides the size).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from ..inference import resolve_device
from ..models import Derainer, create_derainer
from ..stages.head import TaskHead, create_head, head_class

if TYPE_CHECKING:
    from .pipeline import Pipeline


def build_derainer(spec: Mapping[str, Any], warn_random: bool = True) -> Derainer:
    """A ``derainer`` section (``name``, ``weights``, ``options``) → the derainer (CPU, train mode);
    warns when a network is left with random weights (``warn_random``: not when training from scratch)."""
    derainer = create_derainer(spec["name"], weights=spec.get("weights"), **(spec.get("options") or {}))
    if warn_random and spec.get("weights") is None and any(True for _ in derainer.parameters()):
        warnings.warn(f"derainer {spec['name']!r} has random weights (derainer.weights is null); "
                      "its output is meaningless until you pass a checkpoint", stacklevel=3)
    return derainer


def build_head(spec: Mapping[str, Any], **override: Any) -> TaskHead:
    """A ``heads.<name>`` entry (``type`` + options) → the head; ``override`` replaces options the
    type has (e.g. ``imgsz`` fixed by the command), None values leave them as they are."""
    options = {k: v for k, v in spec.items() if k != "type"}
    known = head_class(spec["type"]).OPTIONS
    options.update({k: v for k, v in override.items() if v is not None and (k in known or not known)})
    return create_head(spec["type"], **options)


def build_heads(specs: Mapping[str, Mapping[str, Any]], **override: Any) -> Dict[str, TaskHead]:
    """Every entry of a ``heads`` section, by name (see :func:`build_head`)."""
    return {name: build_head(spec, **override) for name, spec in specs.items()}


def build_pipeline(config: Mapping[str, Any], device: Optional[Any] = None) -> "Pipeline":
    """A validated pipeline config (:func:`~taskderain.pipeline.load_config`) → the
    :class:`~taskderain.pipeline.Pipeline` on ``device`` (default: the config's), in eval mode."""
    from .pipeline import Pipeline

    pipeline = Pipeline(build_derainer(config["derainer"]), build_heads(config["heads"]))
    pipeline = pipeline.to(resolve_device(device if device is not None else config.get("device", "auto"))).eval()
    pipeline.config = dict(config)
    return pipeline
