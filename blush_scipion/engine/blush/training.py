"""Training the denoiser on half maps simulated from atomic models (halfmaps.py).

Each sample: a model's density at the denoiser's voxel size, one half map of a simulated pair
(random resolution and misalignment blur), the two input channels, and as target the truth in
the input's normalised units; a random block around the particle, randomly rotated by 90
degrees. Loss: mean squared error inside the particle mask, plus the solvent-mask logit's
binary cross-entropy against the thresholded truth (weight 0.1).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..density import density_from_model, model_centre, read_model
from ..mask import spherical_mask
from .features import denoiser_inputs
from .halfmaps import simulate_half_maps
from .model import BlushUNet


@dataclass
class TrainSettings:
    depth: int = 5
    width: int = 16
    block: int = 64
    voxel_size: float = 1.5
    steps: int = 2000
    batch_size: int = 2
    learning_rate: float = 1e-3
    resolution_min: float = 3.0
    resolution_max: float = 12.0
    blur_max: float = 150.0
    seed: int = 0
    device: str = "cpu"


def model_truth(path, voxel_size: float, block: int) -> tuple[torch.Tensor, float]:
    """A model's density in the smallest even box that holds it (at least one block), and its radius (voxels)."""
    st = read_model(path)
    xyz = np.array([cra.atom.pos.tolist() for cra in st[0].all()])
    radius = float(np.linalg.norm(xyz - xyz.mean(0), axis=1).max()) / voxel_size
    box = max(block, 2 * math.ceil(radius + 6))
    return density_from_model(path, box, voxel_size, bfactor=0.0, centre=model_centre(path)), radius


def training_sample(truth: torch.Tensor, radius: float, s: TrainSettings, g: torch.Generator):
    """-> inputs (2, b, b, b), target (b, b, b), mask (b, b, b), solvent label (b, b, b)."""
    u = torch.rand(3, generator=g).tolist()
    resolution = s.resolution_min + (s.resolution_max - s.resolution_min) * u[0]
    half, _ = simulate_half_maps(truth, s.voxel_size, resolution, g, blur_bfactor=s.blur_max * u[1])
    n = truth.shape[-1]
    mask = spherical_mask(n, radius + 2, edge=5)
    inputs = denoiser_inputs(half, mask)
    centred = half - half.mean()
    target = (truth - half.mean()) / centred.std().clamp(min=1e-12) * mask
    solvent = (truth > 0.1 * truth.max()).float()
    b = s.block
    lo = torch.randint(0, n - b + 1, (3,), generator=g).tolist() if n > b else [0, 0, 0]
    crop = (slice(lo[0], lo[0] + b), slice(lo[1], lo[1] + b), slice(lo[2], lo[2] + b))
    out = [inputs[(slice(None),) + crop], target[crop], mask[crop], solvent[crop]]
    k, dims = int(torch.randint(0, 4, (1,), generator=g)), [(1, 2), (0, 2), (0, 1)][int(u[2] * 3) % 3]
    return [torch.rot90(x, k, dims=[d + (x.dim() - 3) for d in dims]) for x in out]


def train(models: list, s: TrainSettings, out: str | Path, log=print) -> dict:
    """Train a BlushUNet; writes `out` (safetensors) and `out`.json (settings and loss curve)."""
    from safetensors.torch import save_file
    torch.manual_seed(s.seed)
    g = torch.Generator().manual_seed(s.seed)
    truths = [model_truth(m, s.voxel_size, s.block) for m in models]
    net = BlushUNet(s.depth, s.width).to(s.device)
    opt = torch.optim.AdamW(net.parameters(), lr=s.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.steps)
    losses, t0 = [], time.time()
    for step in range(1, s.steps + 1):
        batch = [training_sample(*truths[int(torch.randint(0, len(truths), (1,), generator=g))], s, g)
                 for _ in range(s.batch_size)]
        inputs, target, mask, solvent = (torch.stack(x).to(s.device) for x in zip(*batch))
        denoised, logit = net(inputs)
        loss = ((denoised - target) ** 2 * mask).sum() / mask.sum().clamp(min=1) + \
            0.1 * torch.nn.functional.binary_cross_entropy_with_logits(logit, solvent)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % max(1, s.steps // 20) == 0 or step == s.steps:
            log(f"step {step:6d}/{s.steps}: loss {np.mean(losses[-max(1, s.steps // 20):]):.4f}  "
                f"{time.time() - t0:.0f} s")
    out = Path(out)
    meta = {"voxel_size": str(s.voxel_size), "block_size": str(s.block), "depth": str(s.depth), "width": str(s.width)}
    with atomic_path(out) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)
    record = {"settings": asdict(s), "models": [str(m) for m in models], "losses": losses,
              "seconds": round(time.time() - t0, 1)}
    with atomic_path(out.with_suffix(out.suffix + ".json")) as tmp:
        tmp.write_text(json.dumps(record))
    return record
