"""The fast CPU training path: fused ConvLSTM gates give the plain path's outputs and gradients,
and keeping freed memory removes the per-step page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.autograd import gradcheck

from taskderain.losses import MSPFNLoss
from taskderain.models import create_derainer
from taskderain.models.layers import ConvLSTMCell, zero_state_lstm_gates

pytestmark = pytest.mark.usefixtures("one_thread")


def outputs_and_grads(fused: bool, amp: bool):
    torch.manual_seed(0)
    model = create_derainer("mspfn_tiny").train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # gates and slopes off their initial values
    for cell in model.modules():
        if isinstance(cell, ConvLSTMCell):
            cell.fused_gates = fused
    rainy = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        out = model(rainy)
    MSPFNLoss()(out.float(), rainy * 0.9).backward()
    return out.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_fused_gates_match_the_plain_ops(amp):
    plain_out, plain_grads = outputs_and_grads(False, amp)
    fast_out, fast_grads = outputs_and_grads(True, amp)
    assert torch.equal(plain_out, fast_out)  # the same forward ops
    lstm = [n for n in plain_grads if ".cell.conv." in n]
    assert lstm and all(plain_grads[n].abs().sum() > 0 for n in lstm)
    tol = 2e-2 if amp else 1e-5  # bf16: the gradients pass through bf16 activations in other orders
    for name in plain_grads:
        scale = plain_grads[name].abs().max().clamp(min=1e-12)
        assert (plain_grads[name] - fast_grads[name]).abs().max() <= tol * scale, name


def test_zero_state_gates_gradcheck():
    gates = torch.randn(2, 12, 5, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda g: zero_state_lstm_gates(g, 4), (gates,))  # both h and c used
    assert gradcheck(lambda g: zero_state_lstm_gates(g, 4)[0], (gates,))  # c unused: no grad_c
    assert gradcheck(lambda g: zero_state_lstm_gates(g, 4)[1], (gates,))  # h unused: no grad_h


def test_keeping_freed_memory_removes_page_faults():
    """Training steps of a conv over a 38 MB activation page-fault their working set in again every
    step with glibc's defaults (blocks above 32 MB are mmapped and unmapped on free); after
    keep_freed_memory() the steps reuse their memory."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's allocator is tuned on Linux only")
    code = (
        "import resource, sys, torch\n"
        "from taskderain.train.allocator import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "torch.set_num_threads(1)\n"
        "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "conv, x = torch.nn.Conv2d(8, 64, 3, padding=1), torch.rand(1, 8, 384, 384, requires_grad=True)\n"
        "step = lambda: conv(x).square().sum().backward()\n"
        "step(); step()\n"
        "f0 = faults()\n"
        "for _ in range(3): step()\n"
        "print(faults() - f0)\n")
    counts = {mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                       check=True).stdout.split()[-1]) for mode in ("default", "keep")}
    assert counts["default"] > 100_000  # ~9,200 pages per 38 MB tensor, several tensors a step
    assert counts["keep"] < counts["default"] / 10
