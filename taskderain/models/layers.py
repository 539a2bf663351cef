"""Building blocks shared by the derainers: conv + PReLU, stride-2 up-sampling, RCAB, ConvLSTM cell.

All blocks take and return (B, C, H, W) feature maps; they work in any memory format
(channels_last is faster on CPU) and under ``torch.autocast``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

State = Tuple[torch.Tensor, torch.Tensor]


class ConvPReLU(nn.Module):
    """3x3 conv without bias (stride 1 or 2, zero padding 1) + per-channel PReLU (slopes start at 0).

    (B, cin, H, W) → (B, cout, H, W) for stride 1, (B, cout, ceil(H/2), ceil(W/2)) for stride 2.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.act = nn.PReLU(cout, init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class UpPReLU(nn.Module):
    """Stride-2 3x3 transposed conv without bias + per-channel PReLU.

    (B, cin, h, w) → (B, cout, H, W) for any ``size=(H, W)`` with H in {2h - 1, 2h} (padding 1;
    the output padding is chosen from ``size``), so it inverts the sizes of a stride-2 ConvPReLU.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 3, 2, 1, bias=False)
        self.act = nn.PReLU(cout, init=0.0)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.act(self.conv(x, output_size=list(size)))


class RCAB(nn.Module):
    """Residual channel-attention block (RCAN): ``x + f · a`` on (B, C, H, W).

    ``f = conv(PReLU(conv(x)))`` (3x3, with bias); ``a = σ(conv1x1(PReLU(conv1x1(mean_hw(f)))))``,
    squeezing C → C // reduction → C.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        squeezed = max(channels // reduction, 1)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.act1 = nn.PReLU(channels, init=0.0)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.squeeze = nn.Conv2d(channels, squeezed, 1)
        self.act2 = nn.PReLU(squeezed, init=0.0)
        self.excite = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv2(self.act1(self.conv1(x)))
        a = torch.sigmoid(self.excite(self.act2(self.squeeze(f.mean((2, 3), keepdim=True)))))
        return torch.addcmul(x, f, a)


class _ZeroStateGates(torch.autograd.Function):
    """``(h, c)`` of a ConvLSTM step from a zero state, given its (B, 3·hd, H, W) gates (i, o, j)."""

    @staticmethod
    def forward(ctx, gates: torch.Tensor, hd: int) -> State:
        act = torch.empty_like(gates)  # keeps the memory format (channels_last)
        torch.sigmoid(gates[:, : 2 * hd], out=act[:, : 2 * hd])
        torch.tanh(gates[:, 2 * hd:], out=act[:, 2 * hd:])
        i, o, j = act.split(hd, 1)
        c = i * j
        tanh_c = torch.tanh(c)
        ctx.hd = hd
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(act, tanh_c)
        return tanh_c * o, c

    @staticmethod
    def backward(ctx, grad_h: Optional[torch.Tensor], grad_c: Optional[torch.Tensor]):
        if grad_h is None and grad_c is None:
            return None, None
        act, tanh_c = ctx.saved_tensors
        i, o, j = act.split(ctx.hd, 1)
        grad = torch.empty_like(act)  # written in place, slice by slice: no zeros, no concatenation
        gi, go, gj = grad.split(ctx.hd, 1)
        aten = torch.ops.aten
        if grad_h is not None:
            torch.mul(grad_h, tanh_c, out=gi)  # gi as scratch
            aten.sigmoid_backward.grad_input(gi, o, grad_input=go)  # ∂h/∂o: tanh(c) · σ'
            torch.mul(grad_h, o, out=gi)
            dc = aten.tanh_backward.grad_input(gi, tanh_c, grad_input=gj)  # ∂h/∂c: o · tanh'(c), gj as scratch
            if grad_c is not None:
                dc.add_(grad_c)
        else:
            go.zero_()
            dc = gj.copy_(grad_c)
        scratch = dc * j
        torch.mul(dc, i, out=gj)
        aten.tanh_backward.grad_input(gj, j, grad_input=gj)  # ∂c/∂j: σ(i) · tanh'
        aten.sigmoid_backward.grad_input(scratch, i, grad_input=gi)  # ∂c/∂i: tanh(j) · σ'
        return grad, None


def zero_state_lstm_gates(gates: torch.Tensor, hd: int) -> State:
    """``(h, c)`` of a ConvLSTM step from h = c = 0: ``c = σ(i)·tanh(j)``, ``h = tanh(c)·σ(o)``.

    ``gates`` is (B, 3·hd, H, W) with the i, o, j pre-activations in that channel order. One
    autograd node: its backward writes the three gate gradients into one new tensor (the
    unfused ops allocate, zero and concatenate several full-size tensors). Same values as
    the unfused ops; gradients equal up to float rounding.
    """
    return _ZeroStateGates.apply(gates, hd)


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell with one 3x3 gate conv (with bias) over ``cat(x, h)``.

    The 4·hidden gate channels are, in order, i, j, f, o (the TensorFlow ``BasicConvLSTMCell``
    layout)::

        c' = c · σ(f + forget_bias) + σ(i) · tanh(j),    h' = tanh(c') · σ(o)

    ``forward(x)`` without a state starts from h = c = 0. Then only the x-half of the kernel meets
    non-zero input and c · σ(f) vanishes, so the cell convolves x with the i, j, o rows of
    ``conv.weight[:, :cin]`` alone: the same result for ``cin / (cin + hidden) · 3/4`` of the naive
    compute. The parameters are unchanged; the h-half and the f rows simply get zero gradient.
    Without autograd this path also runs in horizontal stripes of about :attr:`stripe_bytes` of
    gates, in place, so the 3·hidden-channel gate tensor never exists at full size. Set
    :attr:`skip_zero_state` to False (or pass an explicit zero state) for the naive computation.

    Args:
        cin: input channels of x.
        hidden: channels of h and c.
        forget_bias: added to f before the sigmoid (1.0 in the TF cell).
    """

    skip_zero_state: bool = True
    stripe_bytes: int = 8 << 20
    #: training: the gate activations as one autograd node (:func:`zero_state_lstm_gates`) instead
    #: of sigmoid / tanh / slices, whose backward fills and copies full-size gate tensors
    fused_gates: bool = True

    def __init__(self, cin: int, hidden: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.cin, self.hidden, self.forget_bias = cin, hidden, forget_bias
        self.conv = nn.Conv2d(cin + hidden, 4 * hidden, 3, 1, 1)

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        """x (B, cin, H, W), state (h, c) each (B, hidden, H, W) or None (zeros) → new (h, c)."""
        if state is None and self.skip_zero_state:
            return self._from_zero_state(x)
        hd = self.hidden
        if state is None:
            zeros = x.new_zeros(x.shape[0], hd, *x.shape[2:])
            state = (zeros, zeros)
        h, c = state
        i, j, f, o = self.conv(torch.cat((x, h.to(x.dtype)), 1)).split(hd, 1)
        c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * torch.tanh(j)
        return torch.tanh(c) * torch.sigmoid(o), c

    def _from_zero_state(self, x: torch.Tensor) -> State:
        hd, weight, bias = self.hidden, self.conv.weight[:, : self.cin], self.conv.bias
        rows = (slice(0, hd), slice(3 * hd, 4 * hd), slice(hd, 2 * hd))  # i, o, j: one sigmoid for i, o
        w, b = torch.cat([weight[r] for r in rows]), torch.cat([bias[r] for r in rows])
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            if not self.fused_gates:
                io, j = F.conv2d(x, w, b, 1, 1).split((2 * hd, hd), 1)
                io = torch.sigmoid(io)
                c = io[:, :hd] * torch.tanh(j)
                return torch.tanh(c) * io[:, hd:], c
            return zero_state_lstm_gates(F.conv2d(x, w, b, 1, 1), hd)
        n, _, height, width = x.shape
        step = max(1, self.stripe_bytes // (3 * hd * max(n * width, 1) * x.element_size()))
        padded = F.pad(x, (0, 0, 1, 1))  # zero rows above and below: stripes need no vertical padding
        h = c = torch.empty(0)
        for r0 in range(0, height, step):
            r1 = min(r0 + step, height)
            gates = F.conv2d(padded[:, :, r0:r1 + 2], w, b, 1, (0, 1))
            if r0 == 0:
                h = torch.empty((n, hd, height, width), dtype=gates.dtype, device=gates.device,
                                memory_format=torch.channels_last)
                c = torch.empty_like(h)
            io = gates[:, : 2 * hd].sigmoid_()
            c_rows = torch.mul(io[:, :hd], gates[:, 2 * hd:].tanh_(), out=c[:, :, r0:r1])
            torch.mul(torch.tanh(c_rows), io[:, hd:], out=h[:, :, r0:r1])
        return h, c
