"""MSPFN: parameter counts of the published graphs, compute, the zero-state ConvLSTM shortcut,
TF alignment, any-size input and checkpoints. Forward passes use ``mspfn_tiny`` only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from taskderain.models import CheckpointError, create_derainer, load_derainer, save_derainer
from taskderain.models.layers import ConvLSTMCell, ConvPReLU, UpPReLU
from taskderain.models.mspfn import MSPFN

EXPECTED_PARAMS = {"mspfn": 20_995_776, "mspfn_m17n1": 15_823_424, "mspfn_lite": 1_616_688, "mspfn_tiny": 57_560}


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cells(model: torch.nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, ConvLSTMCell)]


def set_naive(model: torch.nn.Module, naive: bool) -> None:
    for cell in cells(model):
        cell.skip_zero_state = not naive


def tiny(**overrides) -> MSPFN:
    """mspfn_tiny with weights large enough that every branch (LSTM, PReLU slopes) matters."""
    torch.manual_seed(0)
    model = create_derainer("mspfn_tiny", **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.3))
    return model


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name):
    with torch.device("meta"):  # shapes only: the 21M-parameter graph builds in ~0.1 s
        model = create_derainer(name)
    assert isinstance(model, MSPFN) and model.preset == name
    assert n_params(model) == EXPECTED_PARAMS[name]
    assert (1_000_000 < n_params(model) < 2_000_000) if name == "mspfn_lite" else True
    assert (n_params(model) < 100_000) if name == "mspfn_tiny" else True


class ConvMacs(TorchFunctionMode):
    """Counts multiply-accumulates of every conv / transposed conv call (module or functional);
    a transposed conv counts per input pixel, as the TF graph's FLOP count does."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is F.conv2d:
            self.macs += out.numel() * args[1][0].numel()
        elif func is F.conv_transpose2d:
            self.macs += args[0].numel() * args[1][0].numel()
        return out


def test_macs_of_released_graph_match_the_paper_code():
    """301.7 GMAC at 256x256 for the naive graph; conv MACs scale with the pixel count, so a 32x32
    forward x 64 gives them (all sizes stay even; only the 1x1 channel attention is off, ~1e-5)."""
    model = create_derainer("mspfn_m17n1").eval()
    x = torch.rand(1, 3, 32, 32)

    def gmac_256():
        with torch.no_grad(), ConvMacs() as counter:
            model(x)
        return counter.macs * 64 / 1e9

    fast = gmac_256()
    set_naive(model, True)
    naive = gmac_256()
    assert naive == pytest.approx(301.7, rel=0.005)
    # skipped: (32+256)·1024 → 32·768 at full res, likewise at 1/2 and 1/4 (9 taps · 65536 px)
    skipped = 9 * 65536 * (288 * 1024 - 32 * 768 + (160 * 512 - 32 * 384) / 4 + (96 * 256 - 32 * 192) / 16) / 1e9
    assert naive - fast == pytest.approx(skipped, rel=1e-6)


def reference_cell(cell: ConvLSTMCell, x, h, c):
    """The TF BasicConvLSTMCell written out: gates i, j, f, o from conv(cat(x, h)), forget bias 1."""
    i, j, f, o = F.conv2d(torch.cat((x, h), 1), cell.conv.weight, cell.conv.bias, padding=1).chunk(4, 1)
    c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
    return torch.tanh(c) * torch.sigmoid(o), c


def test_zero_state_cell_matches_full_gate_conv():
    cell = ConvLSTMCell(5, 7)
    torch.nn.init.normal_(cell.conv.weight, std=0.3)
    torch.nn.init.normal_(cell.conv.bias, std=0.5)
    x = torch.randn(2, 5, 9, 11)
    zeros = torch.zeros(2, 7, 9, 11)
    h_ref, c_ref = reference_cell(cell, x, zeros, zeros)
    results = [cell(x), cell(x, (zeros, zeros))]  # autograd shortcut, naive full gate conv
    with torch.no_grad():
        results.append(cell(x))  # inference: one stripe
        cell.stripe_bytes = 1
        results.append(cell(x))  # one row per stripe
    for h, c in results:
        torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-6)
    state = (torch.randn_like(zeros), torch.randn_like(zeros))  # and a real recurrent step
    for got, want in zip(cell(x, state), reference_cell(cell, x, *state)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_zero_state_shortcut_gives_the_naive_model_output():
    model = tiny().eval()
    x = torch.rand(2, 3, 24, 28)
    with torch.no_grad():
        fast = model(x)
        for cell in cells(model):
            cell.stripe_bytes = 1  # one image row per stripe
        striped = model(x)
        set_naive(model, True)
        naive = model(x)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(striped, naive, rtol=1e-5, atol=1e-5)


def lstm_grads(model: MSPFN, x: torch.Tensor):
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    return [(c.conv.weight.grad, c.cin, c.hidden) for c in cells(model)]


def test_recurrent_steps_change_output_and_train_the_h_half():
    one, two = tiny(), tiny(recurrent_steps=2)
    two.load_state_dict(one.state_dict())
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        assert not torch.allclose(one(x), two(x), atol=1e-4)
    for grad, cin, hd in lstm_grads(one, x):  # released graph: x-half of i, j, o only
        used = torch.cat((grad[:2 * hd, :cin], grad[3 * hd:, :cin]))
        assert torch.count_nonzero(used) == used.numel()
        assert torch.count_nonzero(grad[:, cin:]) == 0
        assert torch.count_nonzero(grad[2 * hd:3 * hd]) == 0  # forget gate meets c = 0
    for grad, cin, hd in lstm_grads(two, x):
        assert grad[:, cin:].abs().sum() > 0 and grad[2 * hd:3 * hd].abs().sum() > 0
    # what each step sees: the same pre-conv input, the previous (h, c); the last h goes on
    cfm, f = two.cfm2, torch.randn(1, 8, 6, 7)
    with torch.no_grad():
        u = cfm.pre(f)
        zeros = torch.zeros(1, cfm.cell.hidden, 6, 7)
        h, _ = reference_cell(cfm.cell, u, *reference_cell(cfm.cell, u, zeros, zeros))
        torch.testing.assert_close(cfm(f), cfm.post(h))


def test_default_initialisation_follows_the_original():
    model = create_derainer("mspfn_tiny")
    prelus = [m.weight for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 48 and all(torch.count_nonzero(w) == 0 for w in prelus)
    for cell in cells(model):
        assert 0 < cell.conv.weight.abs().max() <= 2e-3 and torch.count_nonzero(cell.conv.bias) == 0
    bound = (6 / (9 * (8 + 8))) ** 0.5  # Glorot-uniform 3x3, 8 → 8 channels
    assert 0.9 * bound < model.ffm[0].u1.down.conv.weight.abs().max() <= bound


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (33, 47), (36, 44), (13, 8)])
def test_any_size_input(size):
    model = tiny().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_graph_runs_on_multiples_of_4_with_odd_quarter_scale():
    model = tiny().eval()
    with torch.no_grad():
        rain = model.rain_layer(torch.rand(1, 3, 36, 20))  # 1/4 level 9x5: U-blocks go to 5x3 and back
    assert rain.shape == (1, 3, 36, 20) and torch.isfinite(rain).all()


def test_tiles_on_the_8_pixel_lattice_reproduce_the_whole_image():
    """Shifts by multiples of 8 commute with the network away from the borders (what a tiler needs);
    other shifts move the pyramid / stride-2 lattice and change the output."""
    torch.manual_seed(0)
    model = create_derainer("mspfn_tiny").eval()
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        centre = model(x)[..., 64:96, 64:96]
        on = model(x[..., 48:, 40:])[..., 16:48, 24:56]
        off = model(x[..., 50:, 40:])[..., 14:46, 24:56]
    assert (on - centre).abs().max() < 1e-3  # not 0: the RCAB attention pools globally
    assert (off - centre).abs().max() > 1e-2


def test_output_is_input_minus_half_the_rain_layer():
    model = tiny().eval()
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        rain = model.rain_layer((2 * x - 1).flip(-2, -1)).flip(-2, -1)  # graph runs rotated (TF alignment)
        assert rain.abs().mean() > 1e-2
        torch.testing.assert_close(model(x), x - rain / 2, rtol=1e-5, atol=1e-5)
        model.out.weight.zero_()  # R = 0 → the input comes back unchanged
        torch.testing.assert_close(model(x), x, rtol=0, atol=1e-7)


def tf_same_pads(n: int):
    total = max(((n + 1) // 2 - 1) * 2 + 3 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("size", [(8, 10), (9, 7), (1, 2)])
def test_stride2_layers_reproduce_tf_same_alignment_in_the_rotated_frame(size):
    """MSPFN runs its graph on the 180°-rotated image; there PyTorch's padding equals TF 'SAME'."""
    rot = lambda t: t.flip(-2, -1)  # noqa: E731
    down, up = ConvPReLU(4, 5, stride=2), UpPReLU(5, 4)
    for act in (down.act, up.act):
        torch.nn.init.ones_(act.weight)  # identity PReLU: compare the convs alone
    x = torch.randn(1, 4, *size)
    (hb, ha), (wb, wa) = tf_same_pads(size[0]), tf_same_pads(size[1])
    tf_down = F.conv2d(F.pad(x, (wb, wa, hb, ha)), rot(down.conv.weight), stride=2)
    with torch.no_grad():
        torch.testing.assert_close(rot(down(rot(x))), tf_down)
        y = torch.randn_like(tf_down)
        tf_up = F.conv_transpose2d(y, rot(up.conv.weight), stride=2)[..., hb:hb + size[0], wb:wb + size[1]]
        torch.testing.assert_close(rot(up(rot(y), size)), tf_up)


def test_gradients_reach_input_and_every_used_parameter():
    model = tiny()
    x = torch.rand(1, 3, 20, 20, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())
    dead = [n for n, p in model.named_parameters() if p.ndim > 1 and not p.grad.abs().sum() > 0]
    assert dead == [], dead


def test_gradients_match_finite_differences():
    """The in-place residual adds and the sliced LSTM kernel must leave autograd exact (float64)."""
    model = tiny().double()
    x = torch.rand(1, 3, 12, 16, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(1, 3, 12, 16, dtype=torch.float64)
    params = list(model.parameters())
    loss = (model(x) * probe).sum()
    grads = torch.autograd.grad(loss, [x, *params])
    dx = torch.randn_like(x)
    dp = [torch.randn_like(p) for p in params]
    predicted = (grads[0] * dx).sum() + sum((g * d).sum() for g, d in zip(grads[1:], dp))
    eps = 1e-6

    def shifted(sign: float) -> torch.Tensor:
        with torch.no_grad():
            for p, d in zip(params, dp):
                p.add_(sign * eps * d)
            value = (model(x + sign * eps * dx) * probe).sum()
            for p, d in zip(params, dp):
                p.sub_(sign * eps * d)
        return value

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    assert float(predicted) == pytest.approx(float(numeric), rel=1e-6)


def test_deterministic_and_bf16_close_to_fp32():
    model = tiny().eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.inference_mode():
        y = model(x)
        assert torch.equal(y, model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = model(x)
    assert y16.dtype == torch.float32
    assert 0 < (y16 - y).abs().mean() < 0.02 * y.abs().mean()


def test_state_dict_keys_are_stable():
    state = tiny().state_dict()
    assert len(state) == 139
    shapes = {"extract1.conv.weight": (8, 3, 3, 3), "extract4.act.weight": (8,),
              "cfm1.cell.conv.weight": (64, 24, 3, 3), "cfm4.cell.conv.bias": (32,),
              "cfm_up41.conv.weight": (8, 8, 3, 3), "ffm.1.u1.down.conv.weight": (8, 8, 3, 3),
              "ffm.1.u1.body.0.excite.bias": (8,), "ffm.0.u4.up.conv.weight": (16, 8, 3, 3),
              "recon_up21.conv.weight": (16, 8, 3, 3), "fuse.conv.weight": (8, 16, 3, 3), "out.weight": (3, 8, 3, 3)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert list(tiny(recurrent_steps=3).state_dict()) == list(state)


def test_checkpoint_roundtrip(tmp_path):
    model = tiny().eval()
    path = save_derainer(model, tmp_path / "tiny.pt", metadata={"training_data": "none"})
    x = torch.rand(1, 3, 12, 16)
    for loaded in (load_derainer(path), create_derainer("mspfn_tiny", weights=path)):
        assert loaded.preset == "mspfn_tiny" and loaded.config == model.config
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), model(x))


def test_prenet_weights_give_a_clear_error(tmp_path):
    path = save_derainer(create_derainer("prenet"), tmp_path / "prenet.pt")
    with pytest.raises(CheckpointError, match="prenet"):
        create_derainer("mspfn_tiny", weights=path)
    torch.save(create_derainer("prenet").state_dict(), tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="missing keys"):
        create_derainer("mspfn_tiny", weights=tmp_path / "plain.pth")


def test_bad_config_names_the_option():
    with pytest.raises(ValueError, match="rcab_per_scale"):
        MSPFN(rcab_per_scale=[1, 1])
    with pytest.raises(ValueError, match="recurrent_steps"):
        MSPFN(width=8, fusion_blocks=1, recurrent_steps=0)
