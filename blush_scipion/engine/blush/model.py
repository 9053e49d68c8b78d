"""The Blush denoiser: a 3D U-Net of RELION 5's Blush v1.0 design, configurable; also in 2D
(dim=2: the same network on images, for class averages).

Two input channels (the standardised map and its local standard deviation), two outputs: a
noise estimate subtracted from the standardised input, and a solvent-mask logit. Each block is
standardised inside the network and the result brought back to the block's scale.

Two layouts share the encoder, bottleneck and head:

* "symmetric" (ours, the default): each decoder level keeps its width, (c_up + c_skip) -> w -> w;
  both input channels are standardised per block; up-sampling with align_corners=False.
* "relion": the layout of RELION 5's `blush_v1.0.ckpt`, whose decoder halves the width,
  (c_up + c_skip) -> w -> w/2 (the last level w -> w); only the map channel is standardised (the
  local standard deviation, already over its mean, goes in as it is); up-sampling with
  align_corners=True. relion_checkpoint.py maps RELION's parameters onto it.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUTS = ("symmetric", "relion")


CONV = {2: nn.Conv2d, 3: nn.Conv3d}
NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _double_conv(c_in: int, c_out: int, c_mid: int | None = None, dim: int = 3) -> nn.Sequential:
    """(Conv 3^dim -> InstanceNorm (affine) -> SiLU) x 2: c_in -> c_mid (default c_out) -> c_out."""
    c_mid = c_mid or c_out
    return nn.Sequential(
        CONV[dim](c_in, c_mid, 3, padding=1),
        NORM[dim](c_mid, affine=True),
        nn.SiLU(),
        CONV[dim](c_mid, c_out, 3, padding=1),
        NORM[dim](c_out, affine=True),
        nn.SiLU(),
    )


class BlushUNet(nn.Module):
    """depth 2x max-pool steps; level widths width * 2^i capped at `max_width`; the bottleneck
    keeps the last width. depth=5, width=16 is Blush v1.0 (16, 32, 64, 128, 256; 256).
    layout: "symmetric" or "relion" (see the module's docstring); parameter names are the same.
    dim: 3 (maps) or 2 (images)."""

    def __init__(
        self, depth: int = 5, width: int = 16, max_width: int = 256, layout: str = "symmetric", dim: int = 3
    ):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        if dim not in CONV:
            raise ValueError(f"dim {dim}: expected 2 or 3")
        widths = [min(width * 2**i, max_width) for i in range(depth)]
        self.widths = widths  # channels per level (the first: the first encoder's)
        self.depth = depth
        self.layout = layout
        self.dim = dim
        self.encoders = nn.ModuleList()
        c = 2
        for w in widths:
            self.encoders.append(_double_conv(c, w, dim=dim))
            c = w
        self.bottleneck = _double_conv(c, widths[-1], dim=dim)
        self.decoders = nn.ModuleList()
        c = widths[-1]
        for i in reversed(range(depth)):
            w = widths[i]
            out = widths[max(i - 1, 0)] if layout == "relion" else w
            self.decoders.append(_double_conv(c + w, out, c_mid=w, dim=dim))
            c = out
        self.head = CONV[dim](c, 2, 1)
        self.pool = nn.MaxPool3d(2) if dim == 3 else nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 2, d, d, d) (dim 2: (B, 2, d, d)), d divisible by 2^depth -> (denoised (B, d, d, d),
        mask logit (B, d, d, d)).

        Channel 0 is the map, channel 1 its local standard deviation; both are standardised per
        block here ("relion" layout: channel 0 only) and the denoised map is returned on channel
        0's original scale.
        """
        dims = tuple(range(2, 2 + self.dim))
        relion = self.layout == "relion"
        if relion:
            mean = x[:, :1].mean(dim=dims, keepdim=True)
            std = x[:, :1].std(dim=dims, keepdim=True) + 1e-12
            h = torch.cat([(x[:, :1] - mean) / std, x[:, 1:]], dim=1)
        else:
            mean = x.mean(dim=dims, keepdim=True)
            std = x.std(dim=dims, keepdim=True).clamp(min=1e-6)
            h = (x - mean) / std
        standardised = h[:, 0]
        skips = []
        for enc in self.encoders:
            h = enc(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        for dec, skip in zip(self.decoders, reversed(skips)):
            h = nn.functional.interpolate(
                h,
                size=skip.shape[2:],
                mode="trilinear" if self.dim == 3 else "bilinear",
                align_corners=relion,
            )
            h = dec(torch.cat([h, skip], dim=1))
        out = self.head(h)
        denoised = (standardised - out[:, 0]) * std[:, 0] + mean[:, 0]
        return denoised, out[:, 1]
