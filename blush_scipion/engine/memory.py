"""What a run holds in memory: the peaks it reports (summary.json), so that what a refinement costs
at a given box size is measured, not guessed."""

from __future__ import annotations

import resource
import sys

import torch

from .device import Device


def peak_memory_gb(device: Device = "cpu", world=None) -> dict:
    """The process's peak resident memory and, on a CUDA device, torch's peak allocation, in GB.
    Given a `world` of several ranks (every rank calls it then), the largest rank's peaks, and each
    rank's under `..._per_rank`: what one rank needs is what sizes a node."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    peaks: dict = {"peak_rss_gb": round(rss / 1e9, 3)}
    device = torch.device(device)
    if device.type == "cuda":
        peaks["cuda_peak_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    if world is not None and world.size > 1:
        for key in list(peaks):
            peaks[f"{key}_per_rank"] = world.gather(peaks[key])
            peaks[key] = max(peaks[f"{key}_per_rank"])
    return peaks


def memory_budget_bytes(device: Device = "cpu", gigabytes: float | None = None) -> int:
    """What the E-step's batches may hold: `gigabytes` when given; else half of what the device has
    free now (a CUDA device's free memory, or the machine's MemAvailable), so that the rest of the
    run (Fourier volumes, the other half set's sums) keeps room."""
    if gigabytes is not None:
        return int(gigabytes * 1e9)
    device = torch.device(device)
    if device.type == "cuda":
        return int(0.5 * torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(0.5 * int(fields["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        return int(4e9)


def batch_size(per_image_bytes: int, budget_bytes: int, cap: int, fixed_bytes: int = 0) -> int:
    """Images per batch: as many as the budget holds after `fixed_bytes`, at most `cap`, at least 1."""
    return int(max(1, min(cap, (budget_bytes - fixed_bytes) // max(per_image_bytes, 1))))
