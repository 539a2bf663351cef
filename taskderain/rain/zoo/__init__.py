"""The rain zoo: a registry of physically distinct rain models (timm-style registry, kornia-style functions).

A derainer trained on one rain family does not generalise to another; the zoo gives several::

    from taskderain.rain.zoo import create_rain, list_rains, CameraEffects

    list_rains()   # ['accumulation', 'drizzle', 'garg_nayar', 'mix', 'raindrops', 'streaks']
    rain = create_rain("garg_nayar", intensity=0.75, camera=CameraEffects(strength=0.5))
    rainy = rain.apply(image_uint8_rgb, seed)          # NumPy: (H, W, 3), same dtype, exact bytes
    rainy = rain.apply_torch(batch, seeds)             # torch: (B, 3, H, W) float, any device
    mix = create_rain("mix", exclude=["raindrops"], intensity=(0.0, 1.0), camera_prob=0.5)

Families: ``streaks`` (the calibrated Rain100L/H recipe), ``garg_nayar`` (physically based
streaks), ``accumulation`` (heavy rain with accumulation and depth-aware fog), ``raindrops`` (adherent drops),
``drizzle`` (fine streaks, mist, splashes) and ``mix`` (a seeded per-image draw of them). Every
family has ``intensity`` in [0, 1] (0 none, 0.25 light, 0.5 medium, 0.75 heavy, 1 storm) and
optional camera effects (:mod:`~taskderain.rain.zoo.camera`). Family modules load on first use
of the registry.
"""

from taskderain.rain.zoo.base import RainModel, with_frame
from taskderain.rain.zoo.camera import CameraEffects, apply_camera, apply_camera_torch
from taskderain.rain.zoo.registry import create_rain, list_rains, register_rain

__all__ = ["CameraEffects", "RainModel", "apply_camera", "apply_camera_torch", "create_rain", "list_rains", "register_rain",
           "with_frame"]
