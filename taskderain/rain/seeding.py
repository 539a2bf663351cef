"""Seeds: a stable per-image seed from (image id, seed) and the generator every draw comes from.

All rain randomness is drawn from NumPy's PCG64 (``numpy.random.Generator``), whose integer and
uniform streams are the same on every platform, so the same (image id, seed) gives the same rain
everywhere. Python's ``hash()`` is salted per process and is never used.
"""

from __future__ import annotations

import hashlib
from typing import Union

import numpy as np

SeedLike = Union[int, np.integer, np.random.Generator, np.random.SeedSequence]


def image_seed(image_id: Union[str, int], seed: int = 0) -> int:
    """A 63-bit seed for one image, stable across processes and machines.

    ``blake2b(f"{seed}:{image_id}")`` truncated to 63 bits; ids are converted with ``str`` (so
    ``7`` and ``"7"`` name the same image). Use the file stem (``"rain-001"``) or dataset index.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    digest = hashlib.blake2b(f"{int(seed)}:{image_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def as_generator(seed: SeedLike) -> np.random.Generator:
    """``int`` / ``SeedSequence`` → a fresh PCG64 generator; a ``Generator`` is used (and advanced) as is."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.Generator(np.random.PCG64(seed))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(
            f"seed must be a non-negative int, numpy Generator or SeedSequence, got {seed!r}; "
            "derive one per image with image_seed(image_id, seed)"
        )
    return np.random.Generator(np.random.PCG64(int(seed)))
