"""``RainModel``: the thin class every rain family is — parameters in, seeded pure functions out.

A family is a frozen parameter dataclass (``intensity`` in [0, 1] plus its own fields) and two
pure functions, ``<family>_rain(image, params, rng)`` (NumPy) and ``<family>_rain_torch(images,
params, generators)`` (torch); the class only holds the parameters and optional
:class:`~taskderain.rain.zoo.camera.CameraEffects`, turns seeds into generators and calls them.

Seeding: ``apply(image, seed)`` makes one PCG64 generator from ``seed``
(:func:`~taskderain.rain.as_generator`); the rain draws come first, then the camera draws from the
same generator. ``apply_torch(images, seeds)`` gives image ``i`` a generator from ``seeds[i]``
and the same draws, so image ``i`` of a batch gets the rain ``apply(image_i, seeds[i])`` gives.

Training pairs: ``apply_pair(image, seed)`` is ``(apply(image, seed), target)`` where the target
is the clean image as the same camera saw it (its exposure, colour cast and shake, without rain,
noise or JPEG; the image itself without camera effects) — see
:mod:`~taskderain.rain.zoo.camera` for why the target keeps the camera's tone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch

from ..blend import check_image
from ..seeding import SeedLike, as_generator
from ..synthesis_torch import SeedsLike, batch_seeds
from .camera import CameraEffects, apply_camera_torch, camera_float, camera_pair, camera_pair_torch
from .ops import as_float32

CameraLike = Union[None, CameraEffects, Mapping[str, Any]]


def check_batch(images: Any) -> None:
    """ValueError unless ``images`` is a (B, 3, H, W) float tensor."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a (B, 3, H, W) float tensor in [0, 1], got {shape}; for one image use images[None]")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got {images.dtype}; use images.float() / 255")


def generators_for(seeds: SeedsLike, batch: int) -> List[np.random.Generator]:
    """One generator per image: a sequence of B seeds, or an int ``s`` meaning ``image_seed(i, s)``."""
    return [as_generator(s) for s in batch_seeds(seeds, batch)]


def build_params(owner: str, cls: Type, kwargs: Dict[str, Any]) -> Any:
    """``cls(**kwargs)`` with a TypeError naming unknown parameters and listing the valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise TypeError(f"unknown parameter(s) {unknown} for rain {owner!r}; valid: {', '.join(names)} (and camera)")
    return cls(**kwargs)


def as_camera(camera: CameraLike) -> Optional[CameraEffects]:
    """None, a :class:`CameraEffects` or a dict of its fields → Optional[CameraEffects]."""
    if camera is None or isinstance(camera, CameraEffects):
        return camera
    if isinstance(camera, Mapping):
        return build_params("camera", CameraEffects, dict(camera))
    raise TypeError(f"camera must be None, a CameraEffects or a dict of its fields, got {type(camera).__name__}")


class RainModel:
    """A rain family: parameters + the seeded functions that render it (see the module docstring).

    Subclasses set ``Params`` (a frozen dataclass with ``intensity``) and implement ``_rain``
    (NumPy, same dtype out) and ``_rain_torch`` (float32 (B, 3, H, W) in and out), and
    ``_rain_float`` where their float32 NumPy path is not ``_rain`` on a float32 image.

    Args:
        params: the family's parameter record (default: ``Params()``).
        camera: optional :class:`CameraEffects` (or a dict of its fields) applied after the rain;
            they apply even at intensity 0 (they are not rain).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[Type] = type(None)

    def __init__(self, params: Any = None, camera: CameraLike = None) -> None:
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} takes a {self.Params.__name__}, got {type(params).__name__}")
        self.params = params
        self.camera = as_camera(camera)

    @classmethod
    def create(cls, camera: CameraLike = None, **params: Any) -> "RainModel":
        """Build from keyword parameters (what :func:`create_rain` calls)."""
        return cls(build_params(cls.name or cls.__name__, cls.Params, params), camera=camera)

    @property
    def intensity(self) -> float:
        return float(self.params.intensity)

    def _camera_on(self) -> bool:
        return self.camera is not None and self.camera.strength > 0

    @property
    def changes_tone(self) -> bool:
        """Whether targets can differ from the clean image (camera effects on; see :meth:`apply_pair`)."""
        return self._camera_on()

    def _before_camera(self, image: np.ndarray, seed: SeedLike) -> Tuple[np.random.Generator, Optional[np.ndarray], np.ndarray]:
        """(generator, the clean image as float32 or None, the rain before any camera): without
        camera effects the rain in the image's dtype and None; with them both in float32 (the camera
        then rounds once, as a camera does). The generator has made the rain's draws."""
        check_image(image)
        rng = as_generator(seed)
        if not self._camera_on():
            return rng, None, (self._rain(image, rng) if self.intensity > 0 else image.copy())
        x = as_float32(image)
        return rng, x, (self._rain_float(x, rng) if self.intensity > 0 else x)

    def _before_camera_torch(self, images: torch.Tensor, seeds: SeedsLike) -> Tuple[List[np.random.Generator], torch.Tensor]:
        """Torch twin of :meth:`_before_camera`: (generators, the rain of the float32 batch)."""
        check_batch(images)
        generators = generators_for(seeds, images.shape[0])
        if self.intensity <= 0 and not self._camera_on():
            return generators, images.clone()
        x = images.float()
        return generators, (self._rain_torch(x, generators) if self.intensity > 0 else x.clone())

    def apply(self, image: np.ndarray, seed: SeedLike) -> np.ndarray:
        """Rain on one (H, W, 3) RGB image, uint8 or float in [0, 1]; same shape and dtype.

        A pure function of (image, params, camera, seed); intensity 0 without camera effects
        returns a copy. With camera effects the rain stays in float32 until the camera has acted
        (one rounding to 8 bits at the end, as in a camera), exactly as in :meth:`apply_torch`.
        """
        rng, x, y = self._before_camera(image, seed)
        return y if x is None else camera_float(y, self.camera, rng, like_dtype=image.dtype)

    def apply_torch(self, images: torch.Tensor, seeds: SeedsLike) -> torch.Tensor:
        """Rain on a (B, 3, H, W) float batch in [0, 1] on any device; one seed per image.

        Same draws as :meth:`apply` (made on the CPU with NumPy); the image maths runs on the
        images' device in float32 and returns the images' dtype. Agrees with :meth:`apply` on the
        8-bit image within 2/255 (bit-equal on the CPU for the zoo's own families; JPEG caveat in
        :mod:`~taskderain.rain.zoo.camera`).
        """
        generators, out = self._before_camera_torch(images, seeds)
        if self._camera_on():
            out = apply_camera_torch(out, self.camera, generators)
        return out.to(images.dtype)

    def apply_pair(self, image: np.ndarray, seed: SeedLike) -> Tuple[np.ndarray, np.ndarray]:
        """(rainy, target) of one (H, W, 3) image: ``apply(image, seed)`` and the camera's scene view
        of the clean image (a copy of it without camera effects); both in the image's dtype."""
        rng, x, y = self._before_camera(image, seed)
        if x is None:
            return y, image.copy()
        return camera_pair(x, y, self.camera, rng, like_dtype=image.dtype)

    def apply_pair_torch(self, images: torch.Tensor, seeds: SeedsLike) -> Tuple[torch.Tensor, torch.Tensor]:
        """Torch twin of :meth:`apply_pair` for a (B, 3, H, W) float batch: (rainy, target)."""
        generators, out = self._before_camera_torch(images, seeds)
        if not self._camera_on():
            return out.to(images.dtype), images.clone()
        out, view = camera_pair_torch(images.float(), out, self.camera, generators)
        return out.to(images.dtype), view.to(images.dtype)

    def _rain_float(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The rain of (H, W, 3) float32 → float32 that the camera effects act on (and the torch path mirrors)."""
        return self._rain(image, rng)

    def _rain(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _rain_torch(self, images: torch.Tensor, generators: Sequence[np.random.Generator]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        camera = f", camera={self.camera}" if self.camera is not None else ""
        return f"{type(self).__name__}({self.params}{camera})"


def with_frame(model: RainModel, frame: float) -> RainModel:
    """``model`` for crops cut from a frame whose long side is ``frame`` px: families that scale
    with the image (and the mix) keep the frame's scale instead of the crop's; the others (the
    streak presets, sized in pixels) are returned unchanged."""
    if "frame" not in {f.name for f in dataclasses.fields(model.params)}:
        return model
    return type(model)(dataclasses.replace(model.params, frame=float(frame)), camera=model.camera)
