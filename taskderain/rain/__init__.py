"""Synthetic rain calibrated to the deraining benchmarks (Rain100L / Rain100H).

Pure functions do the work (kornia style) and the :class:`Rain` module only holds parameters and
seeds::

    from taskderain.rain import Rain, add_rain, image_seed, rain_params

    rainy, streaks = add_rain(image, rain_params("light"), image_seed("rain-001", seed=0))
    rainy = Rain("heavy", seed=0)(batch, ids=names)          # (B, 3, H, W) tensors, any device

Model: sparse drops smeared by oriented motion-blur kernels give the white streak layer ``S``
(:mod:`~taskderain.rain.streaks`); it is added to the (optionally blurred) image and an
atmospheric veil ``I = R·t + A·(1 - t)`` is laid over it (:mod:`~taskderain.rain.blend`). The
NumPy path is byte-identical for a given (image, params, seed) on any machine and thread count.

Other, physically distinct rain models (Garg–Nayar streaks, heavy rain with fog, raindrops on the
lens, drizzle, a per-image mix, camera effects) live in the rain zoo
(:mod:`taskderain.rain.zoo`): ``create_rain("garg_nayar", intensity=0.75).apply(image, seed)``.
"""

from taskderain.rain.blend import composite
from taskderain.rain.params import PRESET_INTENSITY, PRESETS, RainParams, list_presets, params_at_intensity, rain_params
from taskderain.rain.rainy_dataset import Rainy
from taskderain.rain.seeding import as_generator, image_seed
from taskderain.rain.streaks import StreakSample, render_streaks, sample_streaks, streak_kernel
from taskderain.rain.synthesis import add_rain
from taskderain.rain.synthesis_torch import add_rain_torch, composite_torch, render_streaks_torch
from taskderain.rain.transform import Rain
from taskderain.rain.zoo import CameraEffects, RainModel, create_rain, list_rains, register_rain

__all__ = [
    "CameraEffects",
    "PRESETS",
    "PRESET_INTENSITY",
    "Rain",
    "RainModel",
    "RainParams",
    "Rainy",
    "StreakSample",
    "add_rain",
    "add_rain_torch",
    "as_generator",
    "composite",
    "composite_torch",
    "create_rain",
    "image_seed",
    "list_presets",
    "list_rains",
    "params_at_intensity",
    "rain_params",
    "register_rain",
    "render_streaks",
    "render_streaks_torch",
    "sample_streaks",
    "streak_kernel",
]
