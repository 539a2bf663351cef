"""The trained stages of a training checkpoint, as a pipeline or as stand-alone weights files, and
a run's ``config.yaml`` as a pipeline config (so ``run`` and ``eval`` take it as it is).

A task-mode checkpoint (``OUT/best.pt``, ``OUT/last.pt``) holds the derainer's weights and the
trained detector / segmenter state_dicts; the untrained stages come from the run's config (the
pretrained detector checkpoint it started from must still be where the config says).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict

from ..models import CheckpointError
from ..types import PathLike
from .checkpoint import load_train_checkpoint
from .config import TASK_MODES, TRAIN_HEAD_DEFAULTS, with_heads

if TYPE_CHECKING:
    from ..pipeline import Pipeline

#: the checkpoint a run's config.yaml stands for: the best validated weights, else the last
RUN_CHECKPOINTS = ("best.pt", "last.pt")


def is_run_config(raw: Any) -> bool:
    """Whether a YAML mapping is a training config (``taskderain train``'s, or the ``config.yaml`` a run writes)."""
    return isinstance(raw, dict) and "mode" in raw and "derainer" not in raw


def run_pipeline_config(path: PathLike) -> Dict[str, Any]:
    """The pipeline config (a raw dict for :func:`~taskderain.pipeline.load_config`) of a training
    run's ``config.yaml``: the run's derainer (``best.pt``, else ``last.pt`` beside it; no
    checkpoint yet: the config's start weights), its heads — those the run trained exported once
    to ``<run>/stages-<checkpoint>/`` (:func:`export_stages`, redone when the checkpoint is newer) —
    its rain as the evaluation rain and its device.

    Raises:
        ConfigError: not a training config. CheckpointError: a checkpoint that does not fit it.
    """
    from ..config import ConfigError, read_yaml
    from .config import validate

    path = Path(path)
    raw = read_yaml(path, "train YAML")
    if not is_run_config(raw):
        raise ConfigError(f"{path} is not a training config (no 'mode')")
    config = with_heads(validate(raw, str(path)))
    run = path.parent
    checkpoint = next((run / n for n in RUN_CHECKPOINTS if (run / n).is_file()), None)
    m, d = config["model"], config["data"]
    derainer = {"name": m["name"], "weights": str(checkpoint) if checkpoint else m["weights"], "options": m["options"]}
    if config["mode"] in ("detector_on_rain", "segmenter"):
        derainer = {"name": "identity", "weights": None, "options": {}}
    heads = {}
    for name, spec in (config["heads"] if config["mode"] in TASK_MODES else {}).items():
        train_only = TRAIN_HEAD_DEFAULTS.get(spec["type"], {})
        heads[name] = {k: v for k, v in spec.items() if not (k in train_only and v == train_only[k])}
    if checkpoint is not None and heads:
        stages = load_train_checkpoint(checkpoint)["train"].get("stages") or {}
        if stages:
            folder = run / f"stages-{checkpoint.stem}"
            files = {n: folder / f"{n}.pt" for n in stages}
            if not all(f.is_file() and f.stat().st_mtime >= checkpoint.stat().st_mtime for f in files.values()):
                export_stages(checkpoint, folder, half=False)
            for name, file in files.items():
                heads[name] = {**heads[name], "weights": str(file), **({"cfg": None} if "cfg" in heads[name] else {}),
                               **({"arch": None} if heads[name].get("type") == "smp" else {})}
    rain = ({"model": d["rain"], "preset": None} if d["rain"] is not None else
            {"preset": d["rain_preset"] if not isinstance(d["rain_intensity"], (int, float)) else None,
             "intensity": d["rain_intensity"] if isinstance(d["rain_intensity"], (int, float)) else None})
    return {"derainer": derainer, "heads": heads, "rain": {**rain, "seed": d["rain_seed"]}, "device": config["device"]}



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
