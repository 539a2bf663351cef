"""The models an evaluation compares: derainer specs (``identity,prenet:PATH,...``) and content digests.

A digest identifies a model by what it computes — architecture, config and every tensor of its
``state_dict`` — so cached results are reused exactly when the same weights run again, whether
they came from a file, another path to the same file, or random initialisation.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import torch
from torch import nn

from ..models import Derainer, create_derainer, load_derainer, list_derainers
from ..models.pretrained import resolve_weights
from ..types import PathLike

IDENTITY = "identity"


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def module_digest(module: Optional[nn.Module]) -> str:
    """Hex SHA-256 of a module's class, ``config`` and state_dict (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    if module is None:
        return "none"
    config = getattr(module, "config", {})
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    digest.update(json.dumps(config if isinstance(config, dict) else str(config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class DerainerSpec:
    """One derainer of the comparison.

    Attributes:
        label: its name in tables (``name``, or ``name(weights stem)`` when a name repeats).
        name: registry preset (or the arch of a taskderain checkpoint given alone).
        weights: weights file or None.
        model: the built :class:`~taskderain.models.Derainer` (eval mode).
        digest: :func:`module_digest` of ``model`` (the cache key part).
        weights_sha256: SHA-256 of the weights file (provenance), or None.
    """

    label: str
    name: str
    weights: Optional[str]
    model: Derainer
    digest: str = ""
    weights_sha256: Optional[str] = None
    random_weights: bool = field(default=False)

    def __post_init__(self) -> None:
        self.model.eval()
        self.digest = self.digest or module_digest(self.model)

    @property
    def is_identity(self) -> bool:
        """True for the plain identity derainer (derained = rainy, nothing to run)."""
        return type(self.model).__name__ == "Identity" and getattr(self.model, "arch", "") == IDENTITY

    def describe(self) -> dict:
        return {"label": self.label, "name": self.name, "weights": self.weights, "weights_sha256": self.weights_sha256,
                "digest": self.digest, "random_weights": self.random_weights}


def build_derainer_spec(name: str, weights: Optional[PathLike] = None, label: Optional[str] = None,
                        **options: Any) -> DerainerSpec:
    """A :class:`DerainerSpec` from a preset name (+ weights, + config ``options``), or a taskderain checkpoint path.

    Raises:
        KeyError: unknown derainer name (the message lists the known ones).
        FileNotFoundError: the weights file does not exist (named), or an unknown shipped tag.
        CheckpointError: the weights do not fit the derainer.
    """
    if weights is not None and name in list_derainers():
        weights = resolve_weights(name, weights)  # a shipped tag ("default") → its file
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file for derainer {name!r} not found: {weights}")
    if weights is None and name not in list_derainers() and Path(name).is_file():
        model = load_derainer(name)  # a taskderain checkpoint carries its architecture
        name, weights = model.preset, str(name)
    else:
        if name not in list_derainers():
            raise KeyError(f"unknown derainer {name!r}; available: {', '.join(list_derainers())} "
                           "(or the path of a taskderain checkpoint)")
        model = create_derainer(name, weights=weights, **options)
    random = weights is None and any(True for _ in model.parameters())
    if random:
        warnings.warn(f"derainer {name!r} has no weights (random initialisation): its rows are meaningless; "
                      f"write {name}:PATH", stacklevel=2)
    return DerainerSpec(label or name, name, None if weights is None else str(weights), model,
                        weights_sha256=None if weights is None else file_sha256(weights), random_weights=random)


def parse_derainers(text: str) -> List[DerainerSpec]:
    """``"identity,prenet:w.pth,mspfn_lite:ckpt.pt"`` → specs, identity first (always included).

    An entry is ``NAME``, ``NAME:WEIGHTS`` or the path of a taskderain checkpoint. Labels repeat
    the name, with the weights' file stem added where a name occurs twice.
    """
    entries = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, _, weights = item.partition(":")
        entries.append((name.strip(), weights.strip() or None))
    if not entries:
        raise ValueError(f"--derainers needs NAME or NAME:WEIGHTS entries separated by commas, got {text!r}")
    if (IDENTITY, None) not in entries:
        entries.insert(0, (IDENTITY, None))  # the rainy and clean reference rows
    counts = {n: sum(1 for m, _ in entries if m == n) for n, _ in entries}
    specs, seen = [], set()
    for name, weights in entries:
        base = Path(name).stem if weights is None and name not in list_derainers() and Path(name).is_file() else name
        label = base if counts[name] == 1 or weights is None else f"{name}({Path(weights).stem})"
        if label in seen:
            raise ValueError(f"--derainers lists {label!r} twice")
        seen.add(label)
        specs.append(build_derainer_spec(name, weights, label))
    return specs


def identity_spec() -> DerainerSpec:
    """The identity derainer (rainy input = "derained")."""
    return DerainerSpec(IDENTITY, IDENTITY, None, create_derainer(IDENTITY))
