"""A trained denoiser and its use on a map: resampling into the network's voxel-size range,
the two input channels, block-wise inference, and the result back on the map's grid and scale.

Our weights carry their voxel-size range, block size and shape as safetensors metadata; a
RELION checkpoint carries one voxel size and its block size (weights.py reads it safely).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..fourier import resize_fourier, resize_fourier_3d
from ..mask import circular_mask
from .features import denoiser_inputs, standardise
from .inference import infer_blocks, particle_mask
from .model import BlushUNet
from .weights import (
    WeightsError,
    check_finite,
    checked_metadata,
    expected_sha256,
    load_state,
    model_state_dict,
    safetensors_metadata,
)

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "blush_cpu_v1.safetensors"
SHIPPED_WEIGHTS_2D = Path(__file__).resolve().parents[2] / "data" / "blush2d_cpu_v1.safetensors"


@dataclass
class Denoiser:
    net: BlushUNet
    voxel_min: float  # A: maps are Fourier-resampled into [voxel_min, voxel_max]
    voxel_max: float
    block: int
    source: str

    @property
    def dim(self) -> int:
        return self.net.dim


def load_denoiser(
    path: str | os.PathLike | None = None, device: str = "cpu", sha256: str | None = None, dim: int = 3
) -> Denoiser:
    """The denoiser in `path` (default: the weights shipped with the package for maps, or with
    dim=2 for images), on `device`.

    RELION's blush_v1.0.ckpt(.gz) is recognised by its parameter names and read as plain tensors
    into BlushUNet(layout="relion"), after a sha256 check (`sha256` or $BLUSH_WEIGHTS_SHA256, else
    RELION's published one for the .gz download; WeightsError without either). The metadata is
    range-checked before the network is built and non-finite weights are refused (weights.py)."""
    from .relion_checkpoint import is_relion_checkpoint, relion_params

    path = Path(path) if path else (SHIPPED_WEIGHTS_2D if dim == 2 else SHIPPED_WEIGHTS)
    sha256 = expected_sha256(sha256)
    state = load_state(path, sha256)
    meta = checked_metadata(path, _metadata(path, state))
    params = relion_params(path, state, sha256) if is_relion_checkpoint(state) else model_state_dict(state)
    check_finite(path, params)
    try:
        net = BlushUNet(
            meta.get("depth", 5),
            meta.get("width", 16),
            layout=str(meta.get("layout", "symmetric")),
            dim=meta.get("dim", 3),
        )
        net.load_state_dict(params)
    except (RuntimeError, ValueError) as e:
        raise WeightsError(
            f"{path}: its tensors do not fit a BlushUNet of depth {meta.get('depth', 5)}, "
            f"width {meta.get('width', 16)}: {str(e).splitlines()[0]}"
        ) from e
    if net.dim != dim:
        raise WeightsError(f"{path}: a {net.dim}D denoiser, where a {dim}D one is needed")
    voxel = meta.get("voxel_size", 1.5)
    return Denoiser(
        net.to(device).eval(), voxel, meta.get("voxel_size_max", voxel), meta.get("block_size", 64), str(path)
    )


def _metadata(path: Path, state: dict) -> dict:
    from .relion_checkpoint import is_relion_checkpoint, relion_metadata

    if path.name.endswith(".safetensors"):
        meta = safetensors_metadata(path)
    else:
        meta = {k: v for k, v in state.items() if not isinstance(v, (dict, torch.Tensor))}
    if is_relion_checkpoint(state):  # depth, width and layout follow from RELION's tensors
        meta.update(relion_metadata(state))
    return meta


def working_grid(n: int, pixel_size: float, denoiser: Denoiser) -> tuple[int, float]:
    """The even box and voxel size (same physical extent) at which the denoiser sees an
    (n, n, n) map of `pixel_size` A: unchanged when the pixel size lies in its range."""
    return grid_in_range(n, pixel_size, denoiser.voxel_min, denoiser.voxel_max)


def grid_in_range(n: int, pixel_size: float, voxel_min: float, voxel_max: float) -> tuple[int, float]:
    """working_grid for a voxel-size range [voxel_min, voxel_max] (also what training uses)."""
    target = min(max(pixel_size, voxel_min), voxel_max)
    m = max(2, 2 * round(n * pixel_size / target / 2))
    return m, n * pixel_size / m


def denoise_map(
    volume: torch.Tensor,
    pixel_size: float,
    denoiser: Denoiser,
    diameter: float,
    stride: int | None = None,
    batch_size: int = 4,
) -> tuple[torch.Tensor, int]:
    """(n, n, n) map -> (denoised (n, n, n) map on its grid and grey scale, the denoiser grid's
    Nyquist in shells of the input map).

    diameter (A): the particle's; the inputs are masked by a soft sphere of it and the result is
    the map's mean outside it. stride: between blocks; by default half a block, where the sin^2
    blending windows of neighbours sum to one (RELION's 64/20 overlaps more, for 2.4x the work).
    """
    n = volume.shape[-1]
    device = next(denoiser.net.parameters()).device
    m, voxel = working_grid(n, pixel_size, denoiser)
    work = resize_fourier_3d(volume.to(device, torch.float32), m)
    mask = particle_mask(m, diameter / voxel, device)
    _, mean, std = standardise(work)
    inputs = denoiser_inputs(work, mask)
    stride = stride or denoiser.block // 2
    out = infer_blocks(denoiser.net, inputs, mask, block=denoiser.block, stride=stride, batch_size=batch_size)
    denoised = mean + std * out * mask
    return resize_fourier_3d(denoised, n).to(volume.device), m // 2


def denoise_images(
    images: torch.Tensor, pixel_size: float, denoiser: Denoiser, diameter: float
) -> tuple[torch.Tensor, int]:
    """(K, n, n) images (class averages) -> (denoised (K, n, n) on their grid and grey scale, the
    denoiser grid's Nyquist in shells of the input), with a 2D denoiser. Images are small: each
    goes through the network whole, zero-padded to a multiple of 2^depth."""
    n = images.shape[-1]
    device = next(denoiser.net.parameters()).device
    m, pixel = working_grid(n, pixel_size, denoiser)
    work = resize_fourier(images.to(device, torch.float32), m, 2)
    mask = circular_mask(m, diameter / pixel / 2, edge=5, device=device)
    unit = 2**denoiser.net.depth
    size = unit * -(-m // unit)
    lo = (size - m) // 2
    inputs = torch.zeros(len(work), 2, size, size, device=device)
    scale = []
    for i, image in enumerate(work):
        inputs[i, :, lo : lo + m, lo : lo + m] = denoiser_inputs(image, mask)
        scale.append(standardise(image)[1:])
    with torch.no_grad():
        out = denoiser.net(inputs)[0][:, lo : lo + m, lo : lo + m]
    denoised = torch.stack([mean + std * o * mask for o, (mean, std) in zip(out, scale)])
    return resize_fourier(denoised, n, 2).to(images.device), m // 2
