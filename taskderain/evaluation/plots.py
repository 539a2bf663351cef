"""Report figures: task metrics vs rain intensity per derainer, and a grid of sample images."""

from __future__ import annotations

import io
import math
from typing import Any, Dict, List, Sequence

import numpy as np

from ..imageio import write_bytes_atomic, write_rgb
from ..stages.results import Detections
from ..visualize import draw_detections, make_panel
from ..types import PathLike

PANELS = (("map50_95", "mAP50-95 (%)", 100.0), ("map50", "mAP50 (%)", 100.0), ("miou", "mIoU (%)", 100.0))


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def plot_metrics_vs_intensity(records: Sequence[Dict[str, Any]], path: PathLike, title: str = "") -> bool:
    """One panel per task metric (mAP50-95, mAP50, mIoU when present), one line per derainer.

    x = rain intensity (0 = clean, 0.25 light, 0.5 medium, 0.75 heavy, 1 storm). Returns False
    (nothing written) when no record has a task metric.
    """
    panels = [p for p in PANELS if any(_finite(r.get(p[0])) for r in records)]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    derainers = list(dict.fromkeys(r["derainer"] for r in records))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (key, label, scale) in zip(axes[0], panels):
        for name in derainers:
            points = sorted((r["intensity"], r[key] * scale) for r in records
                            if r["derainer"] == name and _finite(r.get(key)))
            if points:
                xs, ys = zip(*points)
                style = "--" if name == "identity" else "-"
                ax.plot(xs, ys, style, marker="o", label="rainy input (identity)" if name == "identity" else name)
        ticks = sorted({r["intensity"] for r in records})
        ax.set_xticks(ticks)
        ax.set_xticklabels([next(r["condition"] for r in records if r["intensity"] == t) + f"\n{t:g}" for t in ticks],
                           fontsize=8)
        ax.set_xlabel("rain intensity")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return True


def sample_grid(samples: Sequence[Any], conditions: Sequence[str], derainers: Sequence[str], names: Dict[int, str],
                path: PathLike, min_score: float = 0.25, height: int = 220) -> bool:
    """Rows: (sample image, rain condition); columns: clean | rainy | each derainer, boxes drawn.

    Boxes are the detections with score ≥ ``min_score`` (the evaluation keeps low-score boxes
    for mAP). Returns False when there is nothing to draw.
    """
    images: List[np.ndarray] = []
    titles: List[str] = []
    rainy_label = derainers[0]
    columns = 2 + len(derainers) - 1
    for view in samples:
        short = view.image_id.lstrip("0") or "0" if view.image_id.isdigit() else view.image_id
        clean_out = view.outputs.get((conditions[0], rainy_label))
        for cond in conditions[1:] or conditions:
            row = [(_draw(clean_out, view, names, min_score) if clean_out else view.clean, f"#{short} clean")]
            for label in derainers:
                out = view.outputs.get((cond, label))
                if out is None:
                    continue
                row.append((_draw(out, view, names, min_score), f"{cond} / {'rainy' if label == rainy_label else label}"))
            if len(row) != columns:
                continue
            for image, title in row:
                images.append(image)
                titles.append(title)
    if not images:
        return False
    write_rgb(path, make_panel(images, titles, height=height, columns=columns))
    return True


def _draw(output: Any, view: Any, names: Dict[int, str], min_score: float) -> np.ndarray:
    import torch

    image, (boxes, scores, classes) = output
    keep = scores >= min_score
    dets = Detections(torch.as_tensor(view.geometry.to_resized(boxes[keep])),
                      torch.as_tensor(scores[keep]), torch.as_tensor(classes[keep]), names)
    return draw_detections(image, dets)

