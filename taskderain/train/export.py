"""The trained stages of a training checkpoint, as a pipeline or as stand-alone weights files.

A task-mode checkpoint (``OUT/best.pt``, ``OUT/last.pt``) holds the derainer's weights and the
trained detector / segmenter state_dicts; the untrained stages come from the run's config (the
pretrained detector checkpoint it started from must still be where the config says).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict

from ..models import CheckpointError
from .checkpoint import load_train_checkpoint
from .config import TASK_MODES
from ..types import PathLike

if TYPE_CHECKING:
    from ..pipeline import Pipeline



def load_trained_pipeline(path: PathLike) -> "Pipeline":
    """The :class:`~taskderain.pipeline.Pipeline` of a training checkpoint, every stage frozen, on the CPU.

    Restoration checkpoints give a derainer-only pipeline.

    Raises:
        CheckpointError: not a training checkpoint, or its stage weights do not fit the config.
    """
    return _trained_pipeline(load_train_checkpoint(path), path)


def _trained_pipeline(obj: Dict[str, Any], path: PathLike) -> "Pipeline":
    """:func:`load_trained_pipeline` on the already-read checkpoint ``obj`` of ``path``."""
    from ..models import derainer_from_checkpoint
    from ..pipeline import Pipeline
    from .config import with_heads
    from .tasks import build_heads

    config = with_heads(obj["train"]["config"])
    derainer = derainer_from_checkpoint(obj, path)  # architecture, config and weights from the checkpoint
    heads = build_heads(config) if config["mode"] in TASK_MODES else {}  # the heads as configured
    pipeline = Pipeline(derainer, heads)
    try:
        for name, state in (obj["train"].get("stages") or {}).items():
            pipeline.head(name).load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: stage weights do not fit the run's config: "
                              f"{(str(exc).splitlines() or [''])[0]}") from None
    for head in heads.values():
        head.freeze()
    return pipeline.eval()


def export_stages(path: PathLike, out: PathLike, half: bool = True) -> Dict[str, Path]:
    """Write the stages of training checkpoint ``path`` to ``out/``: ``derainer.pt``
    (:func:`~taskderain.models.save_derainer`; not for the identity), ``detector.pt`` (an ultralytics
    checkpoint) and ``segmenter.pt`` (:func:`~taskderain.stages.save_segmenter`), each when the run
    has that stage; float16 storage by default. Returns ``{stage: path}``.
    """
    from ..models import save_derainer

    obj = load_train_checkpoint(path)
    pipeline = _trained_pipeline(obj, path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"exported_from": str(path), "mode": obj["train"]["config"]["mode"], "step": obj["train"]["step"],
            "metrics": dict(obj.get("metadata", {}).get("metrics", {}))}
    written: Dict[str, Path] = {}
    if any(True for _ in pipeline.derainer.parameters()):
        written["derainer"] = save_derainer(pipeline.derainer, out / "derainer.pt", meta, half=half)
    for name, head in pipeline.heads.items():
        written[name] = head.save(out / f"{name}.pt", meta, half=half)
    return written
