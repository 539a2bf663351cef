"""Reading and checking YOLO label files; problems are collected per file, never silently fixed.

A label line is ``class x_center y_center width height`` with coordinates normalised to [0, 1].
Rules (documented once, applied everywhere):

- missing label file or empty file → a background image (no objects), as in ultralytics;
- a class id that is not an integer in ``[0, nc)`` → the image is **skipped** (its labels cannot
  be trusted), reported with file and line;
- coordinates outside [0, 1] (beyond 1e-3), non-positive width/height, or a malformed line →
  the image is skipped, reported with file and line;
- a box whose extent crosses the image border (centre inside, edges outside) → clipped to the
  image, reported as a warning (ultralytics clips the same boxes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

TOLERANCE = 1e-3


class LabelError(ValueError):
    """A label file that cannot be trusted (names the file and line)."""


@dataclass
class LabelReport:
    """What a dataset scan found: skipped images with reasons, clipped boxes, background images."""

    skipped: List[str] = field(default_factory=list)
    clipped: List[str] = field(default_factory=list)
    background: int = 0
    missing_labels: int = 0

    def summary(self, name: str, kept: int) -> str:
        parts = [f"{name}: {kept} images"]
        if self.background:
            parts.append(f"{self.background} without objects ({self.missing_labels} of them without a label file)")
        if self.clipped:
            parts.append(f"{len(self.clipped)} boxes clipped to the image border")
        if self.skipped:
            parts.append(f"{len(self.skipped)} images skipped for invalid labels")
        return ", ".join(parts)

    def details(self, limit: int = 10) -> str:
        lines = [f"  skipped: {s}" for s in self.skipped[:limit]] + [f"  clipped: {c}" for c in self.clipped[:limit]]
        more = len(self.skipped) + len(self.clipped) - len(lines)
        return "\n".join(lines + ([f"  ... and {more} more"] if more > 0 else []))


def check_boxes(cls: np.ndarray, xywhn: np.ndarray, nc: int, where: str) -> Tuple[np.ndarray, List[str]]:
    """Validate class ids and normalised xywh boxes; returns boxes clipped to the image and warnings.

    Raises:
        LabelError: class id outside ``[0, nc)`` or not an integer, coordinates outside [0, 1],
            or non-positive size (``where`` and the row number name the offending line).
    """
    warnings: List[str] = []
    for row, (c, box) in enumerate(zip(cls, xywhn), start=1):
        if c != int(c) or not 0 <= c < nc:
            raise LabelError(f"{where} line {row}: class id {c:g} outside 0..{nc - 1} (nc={nc})")
        if not np.all(np.isfinite(box)) or box.min() < -TOLERANCE or box.max() > 1 + TOLERANCE:
            raise LabelError(f"{where} line {row}: box {box.tolist()} is not normalised to [0, 1]")
        if box[2] <= 0 or box[3] <= 0:
            raise LabelError(f"{where} line {row}: box {box.tolist()} has no area")
    if len(xywhn) == 0:
        return xywhn.reshape(0, 4).astype(np.float32), warnings
    x1y1 = xywhn[:, :2] - xywhn[:, 2:] / 2
    x2y2 = xywhn[:, :2] + xywhn[:, 2:] / 2
    outside = np.any((x1y1 < -TOLERANCE) | (x2y2 > 1 + TOLERANCE), axis=1)
    for row in np.flatnonzero(outside):
        warnings.append(f"{where} line {row + 1}: box {xywhn[row].round(4).tolist()} crosses the image border")
    x1y1, x2y2 = x1y1.clip(0, 1), x2y2.clip(0, 1)
    return np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], axis=1).astype(np.float32), warnings


def read_yolo_labels(path: Path, nc: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Read a YOLO label file → (cls (N,) int64, boxes (N,4) float32 normalised xywh, warnings).

    A missing or empty file gives N = 0. Segment-style lines (more than 5 values) are reduced to
    their bounding box, as ultralytics does for detection.

    Raises:
        LabelError: a malformed line or an invalid label (see the module rules).
    """
    if not path.exists():
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), []
    rows: List[List[float]] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise LabelError(f"{path} line {number}: not numbers: {line.strip()[:60]!r}") from None
        if len(values) == 5:
            rows.append(values)
        elif len(values) >= 7 and len(values) % 2 == 1:  # class + polygon
            xy = np.asarray(values[1:]).reshape(-1, 2)
            lo, hi = xy.min(0), xy.max(0)
            rows.append([values[0], *((lo + hi) / 2), *(hi - lo)])
        else:
            raise LabelError(f"{path} line {number}: expected 'class x y w h', got {len(values)} values")
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    boxes, warnings = check_boxes(data[:, 0], data[:, 1:], nc, str(path))
    return data[:, 0].astype(np.int64), boxes, warnings


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: replace the last ``/images/`` folder with ``/labels/`` and the suffix with .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def scan_labels(images: List[Path], nc: int, strict: bool = False,
                report: Optional[LabelReport] = None) -> Tuple[List[Tuple[Path, np.ndarray, np.ndarray]], LabelReport]:
    """Read the labels of ``images``; invalid ones are skipped and reported (raised when ``strict``)."""
    report = report or LabelReport()
    kept = []
    for image in images:
        label = label_path_for(image)
        try:
            cls, boxes, warnings = read_yolo_labels(label, nc)
        except LabelError as exc:
            if strict:
                raise
            report.skipped.append(f"{image.name}: {exc}")
            continue
        report.clipped.extend(warnings)
        if len(cls) == 0:
            report.background += 1
            report.missing_labels += not label.exists()
        kept.append((image, cls, boxes))
    return kept, report
