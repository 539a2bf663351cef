"""A one-line statement of the scoring protocol, stored with every reported number."""

from __future__ import annotations

from taskderain.metrics.color import check_channel


def describe_protocol(channel: str = "y", round_y: bool = True) -> str:
    """Human-readable protocol string for reports (the eval CLI stores it under ``protocol``).

    ``describe_protocol()`` is :data:`PROTOCOL`, the deraining papers' convention.
    """
    check_channel(channel)
    if channel == "y":
        plane = f"Y (MATLAB rgb2ycbcr, BT.601 studio swing, {'rounded' if round_y else 'float'})"
    else:
        plane = "RGB (3 channels, 0..255; SSIM = mean over channels)"
    return f"{plane}, 8-bit, PSNR peak 255, SSIM Gaussian 11x11 sigma 1.5 valid"


#: The protocol :func:`~taskderain.metrics.psnr` and :func:`~taskderain.metrics.ssim` use by default.
PROTOCOL = describe_protocol()
