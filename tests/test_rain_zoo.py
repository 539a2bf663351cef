"""The rain zoo: registry, per-family invariants (parametrised over ``list_rains()``), torch/NumPy
agreement, the streaks wrapper, mix, camera effects and the families' physical signatures."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from taskderain.rain import add_rain, add_rain_torch, list_presets, rain_params
from taskderain.rain.zoo import CameraEffects, RainModel, apply_camera, create_rain, list_rains, register_rain
from taskderain.rain.zoo import registry as zoo_registry
from taskderain.rain.spec import describe_rain
from taskderain.rain.zoo.camera import jpeg_roundtrip
from taskderain.rain.zoo.drizzle import DrizzleParams, splash_layer
from taskderain.rain.zoo.garg_nayar import mp_slope, number_density, rain_rate, terminal_velocity
from taskderain.rain.zoo.accumulation import AccumulationParams, sample_accumulation
from taskderain.rain.zoo.ops import gaussian_blur
from taskderain.rain.zoo.raindrops import RaindropsParams, sample_raindrops

from synthetic_images import scene as synthetic_scene, to_tensor, to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
FAMILIES = list_rains()
PHYSICAL = [n for n in FAMILIES if n != "mix"]


def scene(h: int = 48, w: int = 64) -> np.ndarray:
    """A small deterministic textured image (the zoo tests run every family on it)."""
    return synthetic_scene(h, w)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# --- registry ----------------------------------------------------------------------------------

def test_registry_has_the_families_and_builds_models():
    assert {"streaks", "garg_nayar", "accumulation", "raindrops", "drizzle", "mix"} <= set(FAMILIES)
    assert FAMILIES == sorted(FAMILIES)
    for name in FAMILIES:
        model = create_rain(name, intensity=0.5)
        assert isinstance(model, RainModel) and model.name == name
        assert type(model).__doc__ and inspect.getmodule(type(model)).__doc__   # source and model documented


def test_registry_errors_name_the_family_or_parameter():
    with pytest.raises(KeyError, match="hail.*available: .*garg_nayar"):
        create_rain("hail")
    with pytest.raises(TypeError, match="bogus"):
        create_rain("accumulation", bogus=1)
    with pytest.raises(ValueError, match="intensity"):
        create_rain("garg_nayar", intensity=1.5)
    with pytest.raises(ValueError, match="intensity"):
        create_rain("raindrops", intensity="heavy")
    with pytest.raises(ValueError, match="scale"):
        create_rain("drizzle", scale=-1)
    with pytest.raises(ValueError, match="preset"):
        create_rain("streaks", preset="monsoon")
    with pytest.raises(ValueError, match="preset= or intensity="):
        create_rain("streaks", preset="heavy", intensity=0.3)
    with pytest.raises(TypeError, match="camera.*bogus|bogus"):
        create_rain("accumulation", camera={"bogus": 1})
    with pytest.raises(ValueError, match="strength"):
        CameraEffects(strength=2)
    with pytest.raises(ValueError, match="registered twice"):
        register_rain("accumulation")(type(create_rain("accumulation")))


def test_a_registered_family_is_listed_and_built():
    @register_rain("_test_identity")
    def build(intensity: float = 0.5) -> RainModel:
        """Test family."""
        return create_rain("streaks", intensity=intensity)

    try:
        assert "_test_identity" in list_rains()
        assert isinstance(create_rain("_test_identity", intensity=0.2), RainModel)
    finally:
        zoo_registry._REGISTRY.remove("_test_identity")
    assert "_test_identity" not in list_rains()


# --- every family (timm style: add one and it is tested) ------------------------------------------

@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_shape_dtype_and_range_kept(name, dtype):
    img = scene()
    img = img if dtype == np.uint8 else (img.astype(dtype) / 255)
    out = create_rain(name, intensity=0.75).apply(img, 7)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert not np.array_equal(out, img)
    if dtype != np.uint8:
        assert out.min() >= 0 and out.max() <= 1 and np.isfinite(out).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_intensity_zero_is_an_identity_copy(name):
    img = scene()
    model = create_rain(name, intensity=0.0)
    for clean in (img, img.astype(np.float32) / 255):
        out = model.apply(clean, 3)
        assert out is not clean and out.dtype == clean.dtype and np.array_equal(out, clean)
    x = to_tensor(img)[None]
    assert torch.equal(model.apply_torch(x, [3]), x) and torch.equal(model.apply_torch(x.double(), [3]), x.double())


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_bytes_other_seed_differs(name):
    img, model = scene(), create_rain(name, intensity=0.6)
    a = model.apply(img, 11)
    assert np.array_equal(a, create_rain(name, intensity=0.6).apply(img, 11))
    assert np.array_equal(a, model.apply(img, np.random.default_rng(11)))    # int seed = PCG64(seed)
    s = model.apply(img, np.random.SeedSequence(5))
    assert np.array_equal(s, model.apply(img, np.random.SeedSequence(5)))
    assert not np.array_equal(a, model.apply(img, 12))
    assert not np.array_equal(a, s)


@pytest.mark.parametrize("name", FAMILIES)
def test_rain_grows_with_intensity(name):
    img = scene()
    change = [mean_change(create_rain(name, intensity=x).apply(img, 21), img) for x in (0.25, 0.5, 1.0)]
    assert 0 < change[0] < change[1] < change[2], change


@pytest.mark.parametrize("name", FAMILIES)
def test_torch_matches_numpy_and_is_batch_independent(name):
    imgs = [scene(), scene()[::-1, ::-1].copy()]
    model, seeds = create_rain(name, intensity=0.75), [101, 102]
    x = torch.stack([to_tensor(i) for i in imgs])
    out = model.apply_torch(x, seeds)
    assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1
    for i, img in enumerate(imgs):
        ref = model.apply(img, seeds[i])
        assert np.abs(to_uint8(out[i]).astype(int) - ref.astype(int)).max() <= 2
    assert torch.equal(model.apply_torch(x[1:], seeds[1:]), out[1:])
    assert model.apply_torch(x.double(), seeds).dtype == torch.float64


@pytest.mark.parametrize("name", FAMILIES)
def test_torch_gradient_reaches_the_images(name):
    x = torch.stack([to_tensor(scene())] * 2).requires_grad_(True)
    create_rain(name, intensity=0.5).apply_torch(x, [1, 2]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", PHYSICAL)
def test_label_preserving_the_scene_is_not_moved(name):
    """The rainy image correlates better with the clean one than with a copy shifted by 1 px."""
    img = scene(96, 128)
    rainy = create_rain(name, intensity=0.75).apply(img, 5).astype(np.float64)[4:-4, 4:-4].ravel()

    def corr(dy: int, dx: int) -> float:
        return float(np.corrcoef(rainy, np.roll(img.astype(np.float64), (dy, dx), (0, 1))[4:-4, 4:-4].ravel())[0, 1])

    assert all(corr(0, 0) > corr(dy, dx) for dy, dx in ((1, 0), (0, 1), (-1, 0), (0, -1)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_matches_numpy(name):
    img, model = scene(), create_rain(name, intensity=0.75)
    out = model.apply_torch(to_tensor(img)[None].cuda(), [8])
    assert out.device.type == "cuda"
    assert np.abs(to_uint8(out[0]).astype(int) - model.apply(img, 8).astype(int)).max() <= 2


def test_bad_inputs_are_refused_clearly():
    model = create_rain("accumulation")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        model.apply(scene()[:, :, 0], 0)
    with pytest.raises(ValueError, match="float"):
        model.apply_torch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), [0])
    with pytest.raises(ValueError, match="one per image"):
        model.apply_torch(torch.zeros(2, 3, 8, 8), [0])


_THREAD_SCRIPT = """
import hashlib, sys, cv2, numpy as np, torch
cv2.setNumThreads(int(sys.argv[1])); torch.set_num_threads(int(sys.argv[1]))
from taskderain.rain.zoo import CameraEffects, create_rain, list_rains

{helpers}
img = scene(48, 64)
for name in list_rains():
    print(name, digest(create_rain(name, intensity=0.8).apply(img, 9)))
print("camera", digest(create_rain("garg_nayar", intensity=0.5, camera=CameraEffects(strength=0.9)).apply(img, 9)))
"""


def test_same_bytes_in_another_process_and_thread_count():
    img = scene()
    here = {name: digest(create_rain(name, intensity=0.8).apply(img, 9)) for name in FAMILIES}
    here["camera"] = digest(create_rain("garg_nayar", intensity=0.5, camera=CameraEffects(strength=0.9)).apply(img, 9))
    helpers = inspect.getsource(synthetic_scene) + inspect.getsource(digest)  # defines scene()
    script = _THREAD_SCRIPT.format(helpers=helpers)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", script, "2"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert dict(line.split() for line in proc.stdout.splitlines()) == here


# --- streaks wraps add_rain ----------------------------------------------------------------------

@pytest.mark.parametrize("preset", list_presets())
def test_streaks_preset_is_exactly_add_rain(preset):
    img = scene()
    model = create_rain("streaks", preset=preset)
    assert model.intensity == {"light": 0.25, "medium": 0.5, "heavy": 0.75, "storm": 1.0}[preset]
    for clean in (img, img.astype(np.float32) / 255):
        assert np.array_equal(model.apply(clean, 42), add_rain(clean, rain_params(preset), 42)[0])
    x = torch.stack([to_tensor(img)] * 2)
    assert torch.equal(model.apply_torch(x, [1, 2]), add_rain_torch(x, rain_params(preset), [1, 2])[0])


def test_streaks_intensity_maps_through_rain_params():
    assert create_rain("streaks", intensity=0.6).params.rain_params() == rain_params(intensity=0.6)
    p = create_rain("streaks", intensity=0.6, angle=10, scale=2).params.rain_params()
    assert p.angle == 10 and p.length == pytest.approx(2 * rain_params(intensity=0.6).length)


# --- mix -------------------------------------------------------------------------------------------

def test_mix_is_reproducible_and_covers_the_families():
    img, mix = scene(), create_rain("mix")
    draws = [mix.draw(s) for s in range(40)]
    assert draws == [create_rain("mix").draw(s) for s in range(40)]
    assert len({d.family for d in draws}) >= 4
    assert {d.camera is not None for d in draws} == {True, False}
    assert all(0 <= d.params["intensity"] <= 1 for d in draws)
    assert np.array_equal(mix.apply(img, 3), mix.apply(img, 3))
    d = mix.draw(3)
    assert np.array_equal(mix.apply(img, 3), mix.model(d).apply(img, d.seed))


def test_mix_respects_families_exclude_and_ranges():
    draws = [create_rain("mix", exclude=["raindrops", "streaks"]).draw(s) for s in range(40)]
    assert {d.family for d in draws} == {"drizzle", "garg_nayar", "accumulation"}
    draws = [create_rain("mix", families=["accumulation", "drizzle"], intensity=(0.3, 0.4), camera_prob=0.0).draw(s) for s in range(40)]
    assert {d.family for d in draws} == {"accumulation", "drizzle"}
    assert all(0.3 <= d.params["intensity"] <= 0.4 and d.camera is None for d in draws)
    assert all(d.camera is None for d in (create_rain("mix", intensity=0.0, camera_prob=1.0).draw(s) for s in range(10)))
    with pytest.raises(ValueError, match="no family left"):
        create_rain("mix", families=["accumulation"], exclude=["accumulation"])
    with pytest.raises(KeyError, match="hail"):
        create_rain("mix", exclude=["hail"])
    with pytest.raises(ValueError, match="intensity"):
        create_rain("mix", intensity=(0.8, 0.2))
    with pytest.raises(TypeError, match="camera_prob"):
        create_rain("mix", camera=CameraEffects())


def test_mix_weights_set_the_family_proportions():
    plain = [create_rain("mix").draw(s) for s in range(300)]
    assert [create_rain("mix", weights={"streaks": 1.0}).draw(s) for s in range(300)] == plain  # equal = none
    mix = create_rain("mix", weights={"streaks": 3, "raindrops": 0})
    families = [mix.draw(s).family for s in range(4000)]
    assert "raindrops" not in families
    share = families.count("streaks") / len(families)
    assert abs(share - 3 / 6) < 0.03, share                       # 3 of 3+1+1+1 (binomial sd ~0.008)
    assert abs(families.count("drizzle") / len(families) - 1 / 6) < 0.03
    assert describe_rain(mix)["params"]["weights"] == {"streaks": 3.0, "raindrops": 0.0}
    with pytest.raises(KeyError, match="hail"):
        create_rain("mix", weights={"hail": 2})
    with pytest.raises(ValueError, match=r"weights\['streaks'\]"):
        create_rain("mix", weights={"streaks": -1})
    with pytest.raises(ValueError, match="weight 0"):
        create_rain("mix", families=["streaks"], weights={"streaks": 0})
    with pytest.raises(ValueError, match="map family names"):
        create_rain("mix", weights=[3, 1])


def test_mix_draw_does_not_depend_on_the_batch():
    imgs = [scene(), scene()[::-1].copy(), scene()[:, ::-1].copy()]
    mix, seeds = create_rain("mix", intensity=(0.4, 1.0)), [5, 6, 7]
    x = torch.stack([to_tensor(i) for i in imgs])
    batch = mix.apply_torch(x, seeds)
    for i in range(3):
        assert torch.equal(mix.apply_torch(x[i : i + 1], [seeds[i]])[0], batch[i])
    assert torch.equal(mix.apply_torch(x[[2, 0]], [7, 5]), batch[[2, 0]])


# --- camera effects --------------------------------------------------------------------------------

def test_camera_jpeg_changes_bytes_keeps_shape():
    img = scene()
    only_jpeg = CameraEffects(strength=1.0, exposure=0, desaturation=0, cast=0, motion_blur=0, noise=0, shot=0, jpeg=(60, 60))
    out = apply_camera(img, only_jpeg, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == img.dtype and not np.array_equal(out, img)
    assert np.array_equal(out, jpeg_roundtrip(img, 60))
    assert np.array_equal(apply_camera(img, CameraEffects(strength=0.0), np.random.default_rng(0)), img)


def test_camera_torch_matches_numpy_and_passes_gradients():
    img = scene()
    for camera in (CameraEffects(strength=0.9), CameraEffects(strength=0.9, jpeg=None)):
        for name in ("accumulation", "streaks"):
            model = create_rain(name, intensity=0.5, camera=camera)
            x = to_tensor(img)[None].requires_grad_(True)
            out = model.apply_torch(x, [4])
            assert np.abs(to_uint8(out[0]).astype(int) - model.apply(img, 4).astype(int)).max() <= 2
            out.sum().backward()
            assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_camera_noise_is_signal_dependent_and_blur_keeps_the_frame():
    flat = np.full((64, 64, 3), 0.1, np.float32)
    noise_only = CameraEffects(strength=1.0, exposure=0, desaturation=0, cast=0, motion_blur=0, noise=0.01, shot=0.05, jpeg=None)
    dark = apply_camera(flat, noise_only, np.random.default_rng(1)).std()
    bright = apply_camera(flat * 8, noise_only, np.random.default_rng(1)).std()
    assert bright > 2 * dark > 0
    blur_only = CameraEffects(strength=1.0, exposure=0, desaturation=0, cast=0, motion_blur=0.1, noise=0, shot=0, jpeg=None)
    square = np.zeros((64, 64, 3), np.float32)
    square[24:40, 20:36] = 1
    out = apply_camera(square, blur_only, np.random.default_rng(2))
    assert not np.array_equal(out, square) and abs(out.sum() - square.sum()) < 1e-3 * square.sum()
    ys, xs = np.nonzero(out[:, :, 0])
    w = out[ys, xs, 0]
    assert abs((ys * w).sum() / w.sum() - 31.5) < 0.5 and abs((xs * w).sum() / w.sum() - 27.5) < 0.5   # centred



def test_pair_target_keeps_the_camera_tone_and_drops_rain_noise_and_jpeg():
    img = scene()
    # exposure only: the target is the clean image times one gain in [0.5, 0.75]; the rainy image is apply()'s
    exposure = CameraEffects(strength=1.0, exposure=0.5, desaturation=0, cast=0, motion_blur=0, noise=0, shot=0, jpeg=None)
    rainy, target = create_rain("garg_nayar", intensity=0.5, camera=exposure).apply_pair(img, 3)
    assert np.array_equal(rainy, create_rain("garg_nayar", intensity=0.5, camera=exposure).apply(img, 3))
    ratio = target[img > 40].astype(np.float64) / img[img > 40]
    assert 0.5 - 0.01 < ratio.min() and ratio.max() < 0.75 + 0.01 and ratio.max() - ratio.min() < 0.03
    # full camera: the target has the tone of the rainy image but neither its noise nor its JPEG
    full = create_rain("streaks", intensity=0.0, camera=CameraEffects(strength=1.0))
    rainy, target = full.apply_pair(img, 5)
    toned = create_rain("streaks", intensity=0.0, camera=CameraEffects(strength=1.0, noise=0, shot=0, jpeg=None)).apply(img, 5)
    assert np.abs(target.astype(int) - toned.astype(int)).max() <= 1
    assert np.abs(rainy.astype(int) - target.astype(int)).mean() > 1
    # no camera: the target is the clean image; the mix delegates to its draw; torch agrees
    assert np.array_equal(create_rain("drizzle", intensity=0.6).apply_pair(img, 1)[1], img)
    mix = create_rain("mix", camera_prob=1.0, intensity=(0.3, 0.8))
    for seed in range(3):
        rainy, target = mix.apply_pair(img, seed)
        assert np.array_equal(rainy, mix.apply(img, seed))
        t_rainy, t_target = mix.apply_pair_torch(to_tensor(img)[None], [seed])
        assert np.abs(to_uint8(t_target[0]).astype(int) - target.astype(int)).max() <= 1
        assert np.abs(to_uint8(t_rainy[0]).astype(int) - rainy.astype(int)).max() <= 2

# --- physics of the families -----------------------------------------------------------------------

def test_garg_nayar_physical_laws():
    assert [round(rain_rate(x), 1) for x in (0.25, 0.5, 0.75, 1.0)] == [2.5, 14.1, 39.0, 80.0]
    assert mp_slope(10.0) == pytest.approx(4.1 * 10**-0.21)
    assert terminal_velocity(2.0) == pytest.approx(9.65 - 10.3 * np.exp(-1.2))
    assert terminal_velocity(0.5) < terminal_velocity(2.0) < terminal_velocity(5.0) < 9.65
    assert number_density(2.5) < number_density(39.0)


def test_the_pure_functions_are_identities_at_intensity_zero():
    from taskderain.rain.zoo.drizzle import drizzle_rain
    from taskderain.rain.zoo.garg_nayar import GargNayarParams, garg_nayar_rain
    from taskderain.rain.zoo.accumulation import accumulation_rain
    from taskderain.rain.zoo.raindrops import raindrops_rain

    img = scene()
    for fn, params in ((garg_nayar_rain, GargNayarParams(intensity=0.0)), (accumulation_rain, AccumulationParams(intensity=0.0)),
                       (raindrops_rain, RaindropsParams(intensity=0.0)), (drizzle_rain, DrizzleParams(intensity=0.0))):
        assert np.array_equal(fn(img, params, np.random.default_rng(0)), img)


def _flat_rows(h: int = 96, w: int = 128) -> np.ndarray:
    """Every row identical (colour ramps along x): any top/bottom difference comes from the rain."""
    x = np.arange(w)[None, :].repeat(h, 0)
    return np.stack([30 + x * 120 // w, np.full_like(x, 60), 90 - x * 40 // w], -1).astype(np.uint8)


def _signature(name: str) -> dict:
    img = _flat_rows()
    c = img.astype(np.float32) / 255
    stats = []
    for seed in range(3):
        d = create_rain(name, intensity=0.5).apply(img, seed).astype(np.float32) / 255 - c
        low = gaussian_blur(d, 2.0)
        high = d - low
        g = high.mean(-1)
        third = d.shape[0] // 3
        stats.append({
            "changed": float((np.abs(d).mean(-1) > 4 / 255).mean()),
            "colour": float(np.abs(high - high.mean(-1, keepdims=True)).mean() / np.abs(high).mean()),
            "depth": float(np.abs(low[:third]).mean() / np.abs(low[-third:]).mean()),
            "oriented": float((np.diff(g, axis=1) ** 2).mean() / (np.diff(g, axis=0) ** 2).mean()),
            "texture": float(np.abs(high).mean()),
        })
    return {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}


def test_families_are_physically_distinct():
    sig = {name: _signature(name) for name in ("streaks", "garg_nayar", "accumulation", "raindrops", "drizzle")}
    others = lambda name: [v for k, v in sig.items() if k != name]   # noqa: E731
    # raindrops: local blobs, the rest of the frame untouched; every other family touches all of it
    assert sig["raindrops"]["changed"] < 0.3 < min(s["changed"] for s in others("raindrops"))
    # garg_nayar: streaks take the scene's colour (refraction); streaks / accumulation / drizzle add white
    assert sig["garg_nayar"]["colour"] > 2 * max(sig[n]["colour"] for n in ("streaks", "accumulation", "drizzle"))
    # accumulation: the veil grows with depth (top of the frame), the others are depth-blind
    assert sig["accumulation"]["depth"] > 2 and sig["accumulation"]["depth"] > 1.6 * max(sig[n]["depth"] for n in ("streaks", "garg_nayar", "drizzle"))
    # drizzle: short, fine, faint texture: the least oriented and fainter than the streak families
    assert sig["drizzle"]["oriented"] < 2 < min(sig[n]["oriented"] for n in ("streaks", "garg_nayar", "accumulation"))
    assert sig["drizzle"]["texture"] < min(sig["streaks"]["texture"], sig["accumulation"]["texture"])


def test_raindrops_show_a_flipped_view():
    """On a top-dark / bottom-bright ramp, the inside of drops darkens downwards (refraction flips it)."""
    h, w = 96, 128
    ramp = np.repeat(np.linspace(0.1, 0.9, h, dtype=np.float32)[:, None, None], w, 1).repeat(3, 2)
    p = RaindropsParams(intensity=0.8, blur=0.3)
    s = sample_raindrops(h, w, p, np.random.default_rng(8))
    out = create_rain("raindrops", intensity=0.8, blur=0.3).apply(ramp, 8)
    inside = (s.mask[:-1] > 0.95) & (s.mask[1:] > 0.95)
    assert inside.sum() > 100
    assert np.diff(out[:, :, 0], axis=0)[inside].mean() < 0 < np.diff(ramp[:, :, 0], axis=0)[inside].mean()


def test_accumulation_veil_and_drizzle_splashes_follow_the_depth_proxy():
    s = sample_accumulation(96, 128, AccumulationParams(intensity=0.75), np.random.default_rng(0))
    assert s.alpha[:20].mean() < s.alpha[-20:].mean() < 1            # far (top) rows are more veiled
    layer = splash_layer(96, 128, DrizzleParams(intensity=1.0, splash=20), 0.2, np.random.default_rng(0))
    assert layer[48:].sum() > 2 * layer[:48].sum() > 0               # splashes gather near the ground
