"""Camera effects that come with rain: dull overcast exposure, colour cast, shake, sensor noise, JPEG.

Applied after any family (``create_rain(name, ..., camera=CameraEffects(strength=0.5))``), in the
order light takes through a camera, on (H, W, 3) float32 ``x`` in [0, 1]::

    y = x·g                                 exposure drop under an overcast sky, g = 1 − exposure·a
    y = Y + s·(y − Y)                       desaturation, Y = 0.299 R + 0.587 G + 0.114 B
    y = y ⊙ (1 + c)                         colour cast, c a cool-leaning (R−, B+) per-channel offset
    y = k ∗ y                               frame motion blur: a short line kernel (length, angle)
    y = y + sqrt(shot·a·y + (noise·a)²)·n   Poisson–Gaussian sensor noise (Foi et al. 2008), n ~ N(0, 1)
    y = jpeg(clip(y, 0, 1), q)              JPEG re-encoding at quality q (cv2.imencode, 4:2:0)

Each effect's amount ``a = strength·(0.5 + 0.5·u)`` takes its own uniform ``u`` from the
generator (in the order of the fields), so ``strength`` 0 is the identity and 1 the strongest.
The motion-blur kernel is centred (no shift of the frame): boxes stay valid.

The *scene view* (:func:`camera_pair`) is the clean image through the same exposure,
desaturation, colour cast and shake — what the camera saw, without the rain, the noise or the
JPEG. It is the restoration target of a rainy image: a derainer can tell rain, noise and
blocking from the scene, but not an overcast scene from a dull exposure or a cool cast from a
blue wall, so asking it to undo those teaches it a global tone shift it then applies to every
image (measured: trained against the clean image, an all-weather MSPFN-lite darkened Rain100L's
output by 0.045 on average and fell below the rainy input's PSNR).

Torch: the same draws and float32 maths on the images' device, differentiable except JPEG, which
is encoded on the CPU per image with the same OpenCV call and passes the gradient straight through
(identity Jacobian — JPEG itself has no gradient). JPEG amplifies differences: where the torch
image before JPEG differs from the NumPy one by one 8-bit level (a float rounding tie, e.g. on
CUDA), that 8×8 block can differ by a few levels after JPEG; on the CPU the zoo's families hand
JPEG the same bytes on both paths.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .ops import as_float32, like, quantize, reflect_index
from .validate import check_range

#: Rec. 601 luma weights (float32).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class CameraEffects:
    """Camera effects; each field is the effect's size at ``strength`` 1 (0 turns it off).

    Attributes:
        strength: overall strength in [0, 1] (0 = no effect).
        exposure: largest exposure drop, fraction of the signal, in [0, 1).
        desaturation: largest loss of saturation, in [0, 1].
        cast: largest per-channel gain offset of the colour cast, in [0, 0.5].
        motion_blur: largest blur length as a fraction of the image's long side (0.01 ≈ 6 px at 640).
        noise: read-noise std in [0, 1] units (the Gaussian part).
        shot: Poisson gain: shot-noise variance = shot · signal (the signal-dependent part).
        jpeg: JPEG quality range (low, high) in 1..100; quality is drawn from [high − (high − low)·strength,
            high]; None = no JPEG.
    """

    strength: float = 0.5
    exposure: float = 0.35
    desaturation: float = 0.4
    cast: float = 0.06
    motion_blur: float = 0.008
    noise: float = 0.015
    shot: float = 0.01
    jpeg: Optional[Tuple[int, int]] = (60, 95)

    def __post_init__(self) -> None:
        check_range("CameraEffects", "strength", self.strength, 0, 1)
        check_range("CameraEffects", "exposure", self.exposure, 0, 0.95)
        check_range("CameraEffects", "desaturation", self.desaturation, 0, 1)
        check_range("CameraEffects", "cast", self.cast, 0, 0.5)
        check_range("CameraEffects", "motion_blur", self.motion_blur, 0, 0.1)
        check_range("CameraEffects", "noise", self.noise, 0, 0.5)
        check_range("CameraEffects", "shot", self.shot, 0, 0.5)
        if self.jpeg is not None:
            ok = isinstance(self.jpeg, (tuple, list)) and len(self.jpeg) == 2 and all(
                isinstance(q, (int, np.integer)) and not isinstance(q, bool) and 1 <= q <= 100 for q in self.jpeg)
            if not ok or self.jpeg[0] > self.jpeg[1]:
                raise ValueError(f"CameraEffects.jpeg must be None or (low, high) qualities with 1 <= low <= high <= 100, got {self.jpeg!r}")
            object.__setattr__(self, "jpeg", (int(self.jpeg[0]), int(self.jpeg[1])))


@dataclass(frozen=True)
class CameraSample:
    """The draws of one image: tone factors, blur kernel taps, noise field and JPEG quality."""

    gain: np.float32
    saturation: np.float32
    cast: np.ndarray                      # (3,) float32 channel gains
    taps: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]   # (dy, dx) int offsets, float32 weights
    noise: Optional[np.ndarray]           # (H, W, 3) float32 standard normals
    shot: np.float32
    read_var: np.float32
    quality: Optional[int]


def motion_kernel(length: float, angle: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred line kernel of ``length`` px at ``angle`` radians: bilinear splats of points along the
    line, as integer offsets ``dy``, ``dx`` and float32 weights summing to ~1."""
    n = int(math.ceil(length)) + 1
    t = np.linspace(-length / 2, length / 2, n)
    px, py = t * math.cos(angle), t * math.sin(angle)
    acc: Dict[Tuple[int, int], float] = {}
    for x, y in zip(px, py):
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            if w > 0:
                acc[(y0 + dy, x0 + dx)] = acc.get((y0 + dy, x0 + dx), 0.0) + w / n
    keys = sorted(acc)
    return (np.array([k[0] for k in keys], np.int64), np.array([k[1] for k in keys], np.int64),
            quantize(np.array([acc[k] for k in keys])))


def sample_camera(height: int, width: int, params: CameraEffects, rng: np.random.Generator) -> CameraSample:
    """Draw one image's camera effects: 8 uniforms (see the module docstring), then the noise field."""
    p, s = params, params.strength
    u = rng.random(8)
    amount = s * (0.5 + 0.5 * u)
    cast_dir = np.array([-(0.5 + 0.5 * u[2]), 0.6 * (u[3] - 0.5), 0.5 + 0.5 * (1 - u[2])])
    length = p.motion_blur * max(height, width) * s * u[4]
    taps = motion_kernel(length, math.pi * u[5]) if length >= 1 else None
    noisy = s > 0 and (p.noise > 0 or p.shot > 0)
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) if noisy else None
    quality = None
    if p.jpeg is not None and s > 0:
        low, high = p.jpeg
        quality = int(round(high - (high - low) * s * u[7]))
    return CameraSample(
        gain=np.float32(1 - p.exposure * amount[0]),
        saturation=np.float32(1 - p.desaturation * amount[1]),
        cast=quantize(1 + p.cast * s * (0.5 + 0.5 * u[3]) * cast_dir),
        taps=taps,
        noise=noise,
        shot=np.float32(p.shot * amount[6]),
        read_var=np.float32((p.noise * amount[6]) ** 2),
        quality=quality,
    )


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an (H, W, 3) RGB uint8 image as JPEG at ``quality`` and decode it (uint8)."""
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a JPEG")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def _camera_np(x: np.ndarray, c: CameraSample) -> np.ndarray:
    y = x * c.gain
    lum = y[:, :, 0:1] * LUMA[0] + y[:, :, 1:2] * LUMA[1] + y[:, :, 2:3] * LUMA[2]
    y = lum + (y - lum) * c.saturation
    y = y * c.cast
    if c.taps is not None:
        dy, dx, w = c.taps
        r = int(max(np.abs(dy).max(), np.abs(dx).max()))
        h, wd = y.shape[:2]
        yp = y[reflect_index(h, r)][:, reflect_index(wd, r)]
        out = yp[r + dy[0] : r + dy[0] + h, r + dx[0] : r + dx[0] + wd] * w[0]
        for k in range(1, w.size):
            out += yp[r + dy[k] : r + dy[k] + h, r + dx[k] : r + dx[k] + wd] * w[k]
        y = out
    if c.noise is not None:
        y = y + np.sqrt(np.maximum(y, 0) * c.shot + c.read_var) * c.noise
    return np.clip(y, 0, 1)


def _finish_np(y: np.ndarray, c: CameraSample, like_dtype: np.dtype) -> np.ndarray:
    y = _camera_np(y, c)
    if c.quality is not None:
        coded = jpeg_roundtrip(np.rint(y * np.float32(255)).astype(np.uint8), c.quality)
        if like_dtype == np.uint8:
            return coded
        y = coded.astype(np.float32) / np.float32(255)
    return like(y, np.empty(0, like_dtype))


def camera_float(x: np.ndarray, params: CameraEffects, rng: np.random.Generator, like_dtype: np.dtype = np.float32) -> np.ndarray:
    """Camera effects on (H, W, 3) float32 in [0, 1]; the result in ``like_dtype`` (uint8: rounded once)."""
    return _finish_np(x, sample_camera(x.shape[0], x.shape[1], params, rng), like_dtype)


def scene_sample(c: CameraSample) -> CameraSample:
    """The tone and shake of a draw without its noise and JPEG (see the module docstring)."""
    return dataclasses.replace(c, noise=None, quality=None)


def camera_pair(clean: np.ndarray, rainy: np.ndarray, params: CameraEffects, rng: np.random.Generator,
                like_dtype: np.dtype = np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """(camera effects on ``rainy``, the scene view of ``clean``) from one draw; float32 (H, W, 3)
    in, ``like_dtype`` out. The first is exactly :func:`camera_float` of ``rainy``."""
    c = sample_camera(rainy.shape[0], rainy.shape[1], params, rng)
    return _finish_np(rainy, c, like_dtype), _finish_np(clean, scene_sample(c), like_dtype)


def apply_camera(image: np.ndarray, params: CameraEffects, rng: np.random.Generator) -> np.ndarray:
    """Camera effects on one (H, W, 3) RGB image, uint8 or float in [0, 1]; same shape and dtype."""
    return camera_float(as_float32(image), params, rng, like_dtype=image.dtype)


def _camera_torch(x: torch.Tensor, c: CameraSample) -> torch.Tensor:
    dev = x.device
    y = x * float(c.gain)
    lum = y[:, 0:1] * float(LUMA[0]) + y[:, 1:2] * float(LUMA[1]) + y[:, 2:3] * float(LUMA[2])
    y = lum + (y - lum) * float(c.saturation)
    y = y * torch.from_numpy(c.cast).to(dev).view(1, 3, 1, 1)
    if c.taps is not None:
        dy, dx, w = c.taps
        r = int(max(np.abs(dy).max(), np.abs(dx).max()))
        h, wd = y.shape[-2:]
        yp = y.index_select(-2, torch.from_numpy(reflect_index(h, r)).to(dev)).index_select(-1, torch.from_numpy(reflect_index(wd, r)).to(dev))
        out = yp[..., r + dy[0] : r + dy[0] + h, r + dx[0] : r + dx[0] + wd] * float(w[0])
        for k in range(1, w.size):
            out = out + yp[..., r + dy[k] : r + dy[k] + h, r + dx[k] : r + dx[k] + wd] * float(w[k])
        y = out
    if c.noise is not None:
        n = torch.from_numpy(c.noise).to(dev).permute(2, 0, 1)[None]
        y = y + torch.sqrt(y.clamp_min(0) * float(c.shot) + float(c.read_var)) * n
    y = y.clamp(0, 1)
    if c.quality is not None:
        q = torch.round(y.detach() * 255).to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
        coded = torch.from_numpy(jpeg_roundtrip(q, c.quality)).to(dev).permute(2, 0, 1)[None].float() / 255
        y = y + (coded - y).detach()
    return y


def apply_camera_torch(images: torch.Tensor, params: CameraEffects, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """Torch twin of :func:`apply_camera` for (B, 3, H, W) float32 in [0, 1], one generator per image."""
    h, w = images.shape[-2:]
    return torch.cat([_camera_torch(images[i : i + 1], sample_camera(h, w, params, g)) for i, g in enumerate(generators)])


def camera_pair_torch(clean: torch.Tensor, rainy: torch.Tensor, params: CameraEffects,
                      generators: Sequence[np.random.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`camera_pair` for (B, 3, H, W) float32 batches, one generator per image."""
    h, w = rainy.shape[-2:]
    out, view = [], []
    for i, g in enumerate(generators):
        c = sample_camera(h, w, params, g)
        out.append(_camera_torch(rainy[i : i + 1], c))
        view.append(_camera_torch(clean[i : i + 1], scene_sample(c)))
    return torch.cat(out), torch.cat(view)
