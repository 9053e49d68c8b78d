"""Block-wise inference: overlapping 64^3 blocks, skipped where masked out, blended smoothly."""

from __future__ import annotations

import torch

from ..device import Device
from ..mask import spherical_mask


def blend_window(size: int, device: Device | None = None) -> torch.Tensor:
    """(size,)*3 weight: a separable sin^2, 1 at the centre and exactly 0 on the outermost voxels
    (where a network's zero padding shows most)."""
    t = torch.arange(size, device=device, dtype=torch.float32) / (size - 1)
    w = torch.sin(torch.pi * t) ** 2
    return w[:, None, None] * w[None, :, None] * w[None, None, :]


def block_starts(n: int, block: int, stride: int) -> list[int]:
    """Start indices along one axis so that blocks of `block` at `stride` cover [0, n) with
    the window's soft edges falling outside the map (blocks may hang over the borders)."""
    first, last = -block // 2 + stride // 2, n - block // 2 - stride // 2
    if last < first:  # a map smaller than half a block: one block centred on it
        return [(n - block) // 2]
    starts = list(range(first, last + 1, stride))
    if starts[-1] < last:
        starts.append(last)
    return starts


def infer_blocks(
    net,
    inputs: torch.Tensor,
    mask: torch.Tensor | None = None,
    block: int = 64,
    stride: int = 20,
    batch_size: int = 8,
    min_mask_fraction: float = 0.05,
) -> torch.Tensor:
    """Run `net` over (2, n, n, n) inputs in overlapping blocks -> (n, n, n) blended output.

    `net` maps (B, 2, b, b, b) to a (B, b, b, b) map (BlushUNet's first output). Blocks whose
    share of `mask` is below `min_mask_fraction` are skipped (zero there). The map is zero-padded
    past its borders; blocks are weighted by blend_window, so no seams.
    """
    n = inputs.shape[-1]
    device = inputs.device
    pad = block
    padded = torch.nn.functional.pad(inputs, (pad,) * 6)
    out = torch.zeros((n + 2 * pad,) * 3, device=device)
    weight = torch.zeros_like(out)
    window = blend_window(block, device)
    starts = [
        (z, y, x)
        for z in block_starts(n, block, stride)
        for y in block_starts(n, block, stride)
        for x in block_starts(n, block, stride)
    ]
    if mask is not None:
        mpad = torch.nn.functional.pad(mask.to(device), (pad,) * 6)
        starts = [s for s in starts if float(_cut(mpad, s, block, pad).mean()) >= min_mask_fraction]
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            chunk = starts[i : i + batch_size]
            blocks = torch.stack([_cut(padded, s, block, pad) for s in chunk])
            result = net(blocks)
            result = result[0] if isinstance(result, tuple) else result
            for s, r in zip(chunk, result):
                sl = tuple(slice(c + pad, c + pad + block) for c in s)
                out[sl] += r * window
                weight[sl] += window
    core = (slice(pad, pad + n),) * 3
    return out[core] / weight[core].clamp(min=1e-6) * (weight[core] > 1e-6)


def _cut(volume: torch.Tensor, start, block: int, pad: int) -> torch.Tensor:
    sl = tuple(slice(c + pad, c + pad + block) for c in start)
    return volume[(...,) + sl]


def particle_mask(n: int, diameter_px: float, device: Device | None = None) -> torch.Tensor:
    """Soft spherical mask of the particle diameter (voxels), as Blush applies to its inputs."""
    return spherical_mask(n, diameter_px / 2, edge=5, device=device)
