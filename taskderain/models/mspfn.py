"""MSPFN (Jiang et al., "Multi-Scale Progressive Fusion Network for Single Image Deraining", CVPR 2020).

Clean-room PyTorch version of the graph the authors' TensorFlow code builds (see the ``mspfn``
and ``mspfn_m17n1`` presets for the two published configurations). The network sees a three-level
box-filter pyramid of the rainy image on [-1, 1], predicts the rain layer R and returns
``rainy - R``; the API takes and returns RGB on [0, 1].

Faithful details a weight port relies on:

- Channels are **RGB** (the original reads BGR): reverse the input channels of the ``extract*``
  convs and the output channels of ``out`` when porting.
- TensorFlow's ``SAME`` padding of a stride-2 conv on an even size pads only bottom/right (and its
  transposed conv crops there); PyTorch's ``padding=1`` does the mirror image. :meth:`MSPFN.restore`
  therefore runs the graph on the image rotated by 180° and rotates R back, which reproduces the TF
  alignment exactly at no cost. A port rotates the kernels of TF ``conv2d`` and stride-2
  ``conv2d_transpose`` layers by 180°; TF's stride-1 ``conv2d_transpose`` layers (the bias-free
  3x3 convs here) are already correlations with a rotated kernel, so they port unrotated.
- The ConvLSTM cells start from a zero state; with ``recurrent_steps=1`` (the released graph) the
  zero h-half of each gate conv is skipped, see :class:`~taskderain.models.layers.ConvLSTMCell`.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import Derainer
from .layers import RCAB, ConvLSTMCell, ConvPReLU, UpPReLU
from .registry import register_derainer

Scales = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (1/4, 1/2, 1) resolution


def _triple(value: Sequence[int], name: str) -> Tuple[int, int, int]:
    values = tuple(int(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"MSPFN {name} needs 3 values for the (1/4, 1/2, 1) scales, got {list(value)}")
    return values  # type: ignore[return-value]


class CoarseFusion(nn.Module):
    """One CFM branch: PReLU(conv width→lstm_in) → ConvLSTM → PReLU(conv hidden→width).

    (B, width, H, W) → (B, width, H, W); the caller adds the scale's features (residual).
    With ``steps > 1`` the cell runs ``steps`` times on the same input, feeding its (h, c) back,
    the first time from h = c = 0; the last h goes on.
    """

    def __init__(self, width: int, lstm_in: int, hidden: int, steps: int = 1) -> None:
        super().__init__()
        self.steps = steps
        self.pre = ConvPReLU(width, lstm_in)
        self.cell = ConvLSTMCell(lstm_in, hidden)
        self.post = ConvPReLU(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        state = None
        for _ in range(self.steps):
            state = self.cell(x, state)
        return self.post(state[0])


class UBlock(nn.Module):
    """FFM U-block: s = PReLU(stride-2 conv)(x), t = RCABs(s), PReLU(up(cat(s, t))) at x's size.

    (B, width, H, W) → (B, width, H, W), any H, W; the caller adds x (residual).
    """

    def __init__(self, width: int, rcabs: int, reduction: int) -> None:
        super().__init__()
        self.down = ConvPReLU(width, width, stride=2)
        self.body = nn.Sequential(*(RCAB(width, reduction) for _ in range(rcabs)))
        self.up = UpPReLU(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.down(x)
        return self.up(torch.cat((s, self.body(s)), 1), x.shape[-2:])


class FusionStage(nn.Module):
    """One FFM iteration over the three scales, coarse to fine (own weights per iteration)::

        r4 += U4(r4);  t42 = up(r4);  r2 += U2(r2 + t42);  t41 = up(t42);  t21 = up(r2)
        r1 += U1(r1 + t41 + t21)
    """

    def __init__(self, width: int, rcabs: Tuple[int, int, int], reduction: int) -> None:
        super().__init__()
        self.u4, self.u2, self.u1 = (UBlock(width, n, reduction) for n in rcabs)
        self.up42, self.up41, self.up21 = (UpPReLU(width, width) for _ in range(3))

    def forward(self, r: Scales) -> Scales:
        r4, r2, r1 = r
        size2, size1 = r2.shape[-2:], r1.shape[-2:]
        r4 = self.u4(r4).add_(r4)  # in-place adds land on fresh PReLU outputs only
        t42 = self.up42(r4, size2)
        r2 = self.u2(r2 + t42).add_(r2)
        x1 = self.up21(r2, size1).add_(r1).add_(self.up41(t42, size1))
        r1 = self.u1(x1).add_(r1)
        return r4, r2, r1


class MSPFN(Derainer):
    """Multi-scale progressive fusion deraining network.

    ``forward``: rainy RGB (B, 3, H, W) float in [0, 1], any H, W (reflect-padded to multiples of
    8) → derained (B, 3, H, W), not clamped. Internally ``rainy = 2x - 1``, the graph predicts the
    rain layer R and the output is ``(rainy - R + 1) / 2``, computed in the input's dtype (float32
    under bf16 autocast, where only the graph producing R runs in bf16).

    Args:
        width: feature channels (64 in the paper).
        fusion_blocks: FFM iterations M (17).
        rcab_per_scale: RCABs N per U-block for the (1/4, 1/2, 1) scales ((1, 3, 3) in the paper's
            training graph, (1, 1, 1) in the released checkpoint).
        lstm_hidden: ConvLSTM hidden channels for the (1/4, 1/2, 1) scales ((64, 128, 256)).
        lstm_in: channels fed to each ConvLSTM (32).
        recon_width: channels of the last hidden layer (32).
        rcab_reduction: channel-attention squeeze factor (4).
        recurrent_steps: ConvLSTM steps. 1 is the released graph (one step from a zero state);
            k > 1 is the recurrence the paper describes: each cell runs k times on the same input,
            with its own (h, c) fed back.
    """

    arch = "mspfn"
    # The graph needs multiples of 4 (the 1/4 pyramid level; U-blocks handle odd sizes below it), but
    # it is shift-equivariant only for shifts by 8 (1/4 level x stride-2 U-block): padding to 8, as
    # the authors crop, keeps that lattice fixed to the top-left corner, so tiles starting at
    # multiples of 8 reproduce the untiled output.
    pad_multiple = 8

    def __init__(self, width: int = 64, fusion_blocks: int = 17, rcab_per_scale: Sequence[int] = (1, 3, 3),
                 lstm_hidden: Sequence[int] = (64, 128, 256), lstm_in: int = 32, recon_width: int = 32,
                 rcab_reduction: int = 4, recurrent_steps: int = 1) -> None:
        super().__init__()
        rcabs, hidden = _triple(rcab_per_scale, "rcab_per_scale"), _triple(lstm_hidden, "lstm_hidden")
        if recurrent_steps < 1 or fusion_blocks < 0:
            raise ValueError(f"MSPFN needs recurrent_steps >= 1 and fusion_blocks >= 0, "
                             f"got {recurrent_steps} and {fusion_blocks}")
        w = width
        self.extract4, self.extract2, self.extract1 = (ConvPReLU(3, w) for _ in range(3))
        self.cfm4, self.cfm2, self.cfm1 = (CoarseFusion(w, lstm_in, h, recurrent_steps) for h in hidden)
        self.cfm_up42, self.cfm_up41, self.cfm_up21 = (UpPReLU(w, w) for _ in range(3))
        self.ffm = nn.ModuleList(FusionStage(w, rcabs, rcab_reduction) for _ in range(fusion_blocks))
        self.recon4, self.recon2, self.recon1 = (ConvPReLU(2 * w, w) for _ in range(3))
        self.recon_up42 = UpPReLU(w, w)
        self.recon_up21 = UpPReLU(2 * w, w)
        self.fuse = ConvPReLU(2 * w, recon_width)
        self.out = nn.Conv2d(recon_width, 3, 3, 1, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's initialisation: Glorot-uniform kernels, zero biases and PReLU slopes,
        ConvLSTM gate kernels N(0, 1e-3) truncated at 2σ."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.PReLU):
                nn.init.zeros_(m.weight)
        for m in self.modules():
            if isinstance(m, ConvLSTMCell):
                nn.init.trunc_normal_(m.conv.weight, std=1e-3, a=-2e-3, b=2e-3)

    def rain_layer(self, rainy: torch.Tensor) -> torch.Tensor:
        """The graph: rainy (B,3,H,W) on [-1,1], H, W multiples of 4 → rain layer R (B,3,H,W).

        :meth:`restore` feeds it the image rotated by 180° (TF alignment, see the module docstring).
        """
        rainy4, rainy2 = F.avg_pool2d(rainy, 4), F.avg_pool2d(rainy, 2)
        f4, f2, f1 = self.extract4(rainy4), self.extract2(rainy2), self.extract1(rainy)
        size2, size1 = f2.shape[-2:], f1.shape[-2:]
        # coarse fusion: ConvLSTM branches, coarse scales up-sampled into finer ones
        c4 = self.cfm4(f4).add_(f4)
        u42 = self.cfm_up42(c4, size2)
        c2 = self.cfm2(f2 + u42).add_(f2)
        x1 = self.cfm_up21(c2, size1).add_(f1).add_(self.cfm_up41(u42, size1))
        c1 = self.cfm1(x1).add_(f1)
        # fine fusion: M progressive multi-scale stages
        r: Scales = (c4, c2, c1)
        for stage in self.ffm:
            r = stage(r)
        # reconstruction
        q4 = self.recon4(torch.cat((r[0], c4), 1))
        q2 = self.recon2(torch.cat((r[1], c2), 1))
        q1 = self.recon1(torch.cat((r[2], c1), 1))
        q21 = self.recon_up21(torch.cat((self.recon_up42(q4, size2), q2), 1), size1)
        return self.out(self.fuse(torch.cat((q1, q21), 1)))

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """Rainy (B,3,H,W) on [0,1], H, W multiples of 4 (8 from ``forward``) → derained, not clamped."""
        # rotate by 180° for TF's stride-2 alignment (module docstring); channels_last suits oneDNN
        rainy = (x.flip(-2, -1) * 2 - 1).contiguous(memory_format=torch.channels_last)
        rain = self.rain_layer(rainy).flip(-2, -1)
        return (x - 0.5 * rain.to(x.dtype)).contiguous()  # = (rainy - R + 1) / 2


def _mspfn(**config) -> dict:
    return {"width": 64, "fusion_blocks": 17, "rcab_per_scale": [1, 3, 3], "lstm_hidden": [64, 128, 256],
            "lstm_in": 32, "recon_width": 32, "rcab_reduction": 4, "recurrent_steps": 1, **config}


@register_derainer("mspfn", MSPFN)
def mspfn() -> dict:
    """MSPFN as trained in the paper: M=17, N=(1,3,3), 64 channels (20,995,776 parameters)."""
    return _mspfn()


@register_derainer("mspfn_m17n1", MSPFN)
def mspfn_m17n1() -> dict:
    """MSPFN graph of the released checkpoint: M=17, N=(1,1,1), 64 channels (15,823,424 parameters)."""
    return _mspfn(rcab_per_scale=[1, 1, 1])


@register_derainer("mspfn_lite", MSPFN)
def mspfn_lite() -> dict:
    """CPU-trainable MSPFN: M=6, N=(1,1,1), 32 channels, LSTM (32,64,64) (1,616,688 parameters)."""
    return _mspfn(width=32, fusion_blocks=6, rcab_per_scale=[1, 1, 1], lstm_hidden=[32, 64, 64],
                  lstm_in=16, recon_width=16)


@register_derainer("mspfn_tiny", MSPFN)
def mspfn_tiny() -> dict:
    """Test-sized MSPFN: M=2, N=(1,1,1), 8 channels (57,560 parameters)."""
    return _mspfn(width=8, fusion_blocks=2, rcab_per_scale=[1, 1, 1], lstm_hidden=[8, 8, 16],
                  lstm_in=8, recon_width=8)
