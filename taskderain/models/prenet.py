"""PReNet (Ren et al., "Progressive Image Deraining Networks: A Better and Simpler Baseline", CVPR 2019).

Clean-room implementation whose parameter names match the official ``prenet6_*.pth`` files,
which load with ``strict=True``: ``create_derainer("prenet", weights="prenet6_rain100l.pth")``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Derainer
from .registry import register_derainer


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class PReNet(Derainer):
    """Progressive recurrent deraining: ``stages`` passes of one shared conv-LSTM + ResNet stage.

    Each stage: ``x = relu(conv0(cat(input, x)))``; LSTM on ``cat(x, h)``; five residual blocks
    ``x = relu(block(x) + x)``; ``x = conv(x) + input``. The state (h, c) and x carry over.

    Args:
        stages: recurrent stages (6 in the official weights).
        width: feature channels (32 in the official weights).
        blocks: residual blocks per stage (5 in the official weights).
    """

    arch = "prenet"

    def __init__(self, stages: int = 6, width: int = 32, blocks: int = 5) -> None:
        super().__init__()
        self.stages, self.width, self.blocks = stages, width, blocks
        self.conv0 = nn.Sequential(_conv(6, width), nn.ReLU())
        for k in range(1, blocks + 1):
            setattr(self, f"res_conv{k}", nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU()))
        self.conv_i = nn.Sequential(_conv(2 * width, width), nn.Sigmoid())
        self.conv_f = nn.Sequential(_conv(2 * width, width), nn.Sigmoid())
        self.conv_g = nn.Sequential(_conv(2 * width, width), nn.Tanh())
        self.conv_o = nn.Sequential(_conv(2 * width, width), nn.Sigmoid())
        self.conv = nn.Sequential(_conv(width, 3))

    def restore(self, rainy: torch.Tensor) -> torch.Tensor:
        b, _, h, w = rainy.shape
        state_h = rainy.new_zeros(b, self.width, h, w)
        state_c = rainy.new_zeros(b, self.width, h, w)
        x = rainy
        for _ in range(self.stages):
            x = self.conv0(torch.cat((rainy, x), 1))
            xh = torch.cat((x, state_h), 1)
            state_c = self.conv_f(xh) * state_c + self.conv_i(xh) * self.conv_g(xh)
            state_h = self.conv_o(xh) * torch.tanh(state_c)
            x = state_h
            for k in range(1, self.blocks + 1):
                x = torch.relu(getattr(self, f"res_conv{k}")(x) + x)
            x = self.conv(x) + rainy
        return x


@register_derainer("prenet", PReNet)
def prenet() -> dict:
    """PReNet, 6 stages, 32 channels (168,963 parameters): loads the official prenet6_*.pth weights."""
    return {"stages": 6, "width": 32, "blocks": 5}
