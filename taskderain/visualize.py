"""Drawing detections and masks on images, and side-by-side panels (cv2, RGB uint8 in and out)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import cv2
import numpy as np


def class_color(index: int) -> tuple:
    """A stable, well-spread RGB colour for class ``index``."""
    hue = (index * 0.618033988749895) % 1.0
    hsv = np.uint8([[[int(hue * 180), 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(image: np.ndarray, detections: Any, thickness: int = 0) -> np.ndarray:
    """Boxes with "name score" labels on a copy of (H,W,3) uint8 RGB ``image``.

    ``detections`` has ``boxes`` (N,4) xyxy px, ``scores``, ``classes`` and ``names``
    (a :class:`~taskderain.stages.Detections`).
    """
    out = np.ascontiguousarray(image.copy())
    thickness = thickness or max(1, round(sum(out.shape[:2]) / 600))
    scale = thickness / 3
    for box, score, cls in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.classes.tolist()):
        color = class_color(int(cls))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = f"{detections.names.get(int(cls), int(cls))} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thickness // 2))
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(1, thickness // 2), cv2.LINE_AA)
    return out


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45, ignore_index: int = 255) -> np.ndarray:
    """Blend class colours of an (H,W) class-index ``mask`` over (H,W,3) uint8 RGB ``image``."""
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    colors = np.zeros((*mask.shape, 3), np.float32)
    present = [c for c in np.unique(mask) if c != ignore_index]
    for cls in present:
        colors[mask == cls] = class_color(int(cls))
    weight = np.where((mask != ignore_index)[..., None], alpha, 0.0).astype(np.float32)
    return np.clip(image * (1 - weight) + colors * weight + 0.5, 0, 255).astype(np.uint8)


def make_panel(images: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None, height: int = 360,
               columns: Optional[int] = None) -> np.ndarray:
    """Tile (H,W,3) uint8 RGB images in a grid at a common row ``height``, with optional titles.

    Rows narrower than the widest are scaled up to its width, so the panel has no empty margins.
    """
    columns = columns or len(images)
    titles = list(titles or [""] * len(images))
    bar = 28 if any(titles) else 0
    cells: List[np.ndarray] = []
    for image, title in zip(images, titles):
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        cell = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if bar:
            strip = np.full((bar, width, 3), 20, np.uint8)
            cv2.putText(strip, title, (6, bar - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (240, 240, 240), 1, cv2.LINE_AA)
            cell = np.concatenate([strip, cell])
        cells.append(cell)
    rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
    width = max(r.shape[1] for r in rows)  # rows of other aspect ratios are scaled to the widest
    rows = [r if r.shape[1] == width else
            cv2.resize(r, (width, round(r.shape[0] * width / r.shape[1])), interpolation=cv2.INTER_AREA) for r in rows]
    return np.concatenate(rows, axis=0)
