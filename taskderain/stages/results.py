"""Detections of one image, in the original image's pixel coordinates, and their COCO rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

CategoryIds = Union[Sequence[int], Mapping[int, int]]


@dataclass
class Detections:
    """The detections of one image after NMS.

    Attributes:
        boxes: (N, 4) float xyxy in pixels of the original image (x right, y down, clipped to it).
        scores: (N,) float confidences in [0, 1].
        classes: (N,) long class indices into ``names``.
        names: class index → name.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    names: Dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: Union[str, torch.device]) -> "Detections":
        """The same detections on ``device``."""
        return Detections(self.boxes.to(device), self.scores.to(device), self.classes.to(device), self.names)

    def to_coco(self, image_id: Any, category_ids: Optional[CategoryIds] = None) -> List[Dict[str, Any]]:
        """COCO result rows ``{"image_id", "category_id", "bbox": [x, y, w, h] (pixels), "score"}``.

        Args:
            image_id: the image's COCO id.
            category_ids: class index → COCO category id (e.g. ultralytics' ``coco80_to_coco91_class()``);
                ``None`` keeps the class index. Coordinates are rounded to 1/1000 px and scores to 1e-5,
                as ultralytics writes its ``predictions.json``.
        """
        rows = []
        for (x1, y1, x2, y2), score, cls in zip(self.boxes.tolist(), self.scores.tolist(), self.classes.tolist()):
            rows.append({
                "image_id": image_id,
                "category_id": int(category_ids[cls]) if category_ids is not None else int(cls),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
            })
        return rows

    def __repr__(self) -> str:
        pairs = zip(self.classes.tolist(), self.scores.tolist())
        found = ", ".join(f"{self.names.get(c, c)} {s:.2f}" for c, s in pairs)
        return f"Detections({len(self)}: {found})"
