"""``curves.png`` of a run: training loss vs step and each validation metric vs epoch, from ``log.csv``."""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..types import PathLike



def _float(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_log(log: PathLike) -> Tuple[List[Tuple[int, float]], Dict[str, List[Tuple[int, float]]]]:
    """(``[(step, loss)]``, ``{metric: [(epoch, value)]}``) from a run's ``log.csv``."""
    losses: List[Tuple[int, float]] = []
    metrics: Dict[str, List[Tuple[int, float]]] = {}
    with open(log, newline="") as handle:
        reader = csv.DictReader(handle)
        names = [n for n in (reader.fieldnames or []) if n.startswith("val_")]
        for n in names:
            metrics[n[4:]] = []
        for row in reader:
            loss = _float(row.get("loss"))
            if loss is not None:
                losses.append((int(row["step"]), loss))
            for n in names:
                value = _float(row.get(n))
                if value is not None:
                    metrics[n[4:]].append((int(row["epoch"]), value))
    return losses, metrics


def write_curves(log: PathLike, png: PathLike) -> Optional[Path]:
    """Plot ``log`` into ``png`` (matplotlib, Agg canvas; no pyplot state). Returns the path, or
    None (with a warning) when matplotlib is missing or the log cannot be read."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed: no curves.png (pip install matplotlib)")
        return None
    try:
        losses, metrics = read_log(log)
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"cannot read {log} for curves.png: {exc}")
        return None
    panels = 1 + len(metrics)
    fig = Figure(figsize=(5 * panels, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    if losses:
        ax.plot([s for s, _ in losses], [v for _, v in losses], lw=1)
    ax.set(title="training loss", xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)
    for ax, (name, points) in zip(axes[1:], metrics.items()):
        if points:
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", lw=1)
        ax.set(title=f"val {name}", xlabel="epoch", ylabel=name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(png)
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, png)
    return png
