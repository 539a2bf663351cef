"""A content-addressed cache of per-image evaluation results, so a killed evaluation resumes.

Entries live under ``ROOT/KIND/KEY[:2]/KEY.*``: ``derained`` (8-bit PNG + JSON timing),
``detections`` (JSON) and ``masks`` (class-id PNG + JSON). A key is the SHA-256 of everything the
result depends on (see :func:`cache_key`); change any part — derainer weights, rain parameters,
seed, image bytes, image size, detector — and the key changes, so stale entries are never read.
Files are written atomically and the JSON is written last: an entry exists completely or not at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..data.segmentation import read_mask
from ..imageio import ImageReadError, read_rgb, write_bytes_atomic, write_mask, write_rgb
from ..types import PathLike

CACHE_FORMAT = "taskderain.eval-cache/1"


def cache_key(**parts: Any) -> str:
    """Hex SHA-256 of ``parts`` (JSON, sorted keys; dataclasses and paths via ``str``)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class EvalCache:
    """Per-image results on disk (``root=None``: nothing kept, every lookup a miss — for weights
    that change between evaluations, as in training validation). ``hits`` / ``misses`` count
    lookups per kind."""

    def __init__(self, root: Optional[PathLike]) -> None:
        self.root = None if root is None else Path(root)
        self.hits: Dict[str, int] = {}
        self.misses: Dict[str, int] = {}

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def _count(self, kind: str, hit: bool) -> None:
        counter = self.hits if hit else self.misses
        counter[kind] = counter.get(kind, 0) + 1

    def get_json(self, kind: str, key: str) -> Optional[Dict[str, Any]]:
        """The JSON entry, or None (counted as a miss) when absent or unreadable."""
        if self.root is None:
            self._count(kind, False)
            return None
        path = self._path(kind, key, ".json")
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            self._count(kind, False)
            return None
        self._count(kind, True)
        return value

    def put_json(self, kind: str, key: str, value: Dict[str, Any]) -> None:
        if self.root is None:
            return
        write_bytes_atomic(self._path(kind, key, ".json"), json.dumps(value).encode())

    def get_image(self, kind: str, key: str, mask: bool = False) -> Optional[Tuple[np.ndarray, Dict[str, Any]]]:
        """(image or mask array, its JSON metadata), or None when the entry is incomplete."""
        meta = self.get_json(kind, key)
        if meta is None:
            return None
        path = self._path(kind, key, ".png")
        try:
            array = read_mask(path) if mask else read_rgb(path)
        except (OSError, ImageReadError):
            self.hits[kind] -= 1
            self._count(kind, False)
            return None
        return array, meta

    def put_image(self, kind: str, key: str, array: np.ndarray, meta: Dict[str, Any], mask: bool = False) -> None:
        """Write the PNG, then the JSON that marks the entry complete."""
        if self.root is None:
            return
        path = self._path(kind, key, ".png")
        write_mask(path, array) if mask else write_rgb(path, array)
        self.put_json(kind, key, meta)

    def counts(self) -> Dict[str, Dict[str, int]]:
        """``{kind: {"reused": n, "computed": m}}`` of the lookups so far."""
        kinds = sorted(set(self.hits) | set(self.misses))
        return {k: {"reused": self.hits.get(k, 0), "computed": self.misses.get(k, 0)} for k in kinds}
