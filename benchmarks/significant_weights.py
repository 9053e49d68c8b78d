"""The M-step with and without significant-weights pruning, on one E-step batch of refine3d's
global pass (128 images x 21 shifts x 4,608 orientations, 1,000 Fourier points), for a broad
posterior (low SNR) and a sharp one (high SNR, where most weights are denormal floats). "Dense"
is the M-step as it was before pruning: two strided complex GEMMs over every orientation.

    .venv/bin/python benchmarks/significant_weights.py
"""

import time

import torch

from blush_scipion.engine.expectation import posteriors, significant, weighted_sums


def seconds(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    g = torch.Generator().manual_seed(0)
    b, t, r, p = 128, 21, 4608, 1000
    y = torch.randn(b, t, p, dtype=torch.complex64, generator=g)
    ctf2 = torch.rand(b, p, generator=g)
    print(
        "| posterior | orientations kept per image | significant (s) | pruned M-step (s) | dense M-step (s) |"
    )
    print("|---|---|---|---|---|")
    for label, spread in (("broad", 6.0), ("sharp", 48.0)):
        probs = posteriors(torch.randn(b, t, r, generator=g) * spread)[0]
        kept = significant(probs)
        s_sig = seconds(lambda: significant(probs))
        data, weight = torch.zeros(r, p, dtype=torch.complex64), torch.zeros(r, p)
        s_pruned = seconds(lambda: weighted_sums(kept, y, ctf2, data, weight))
        flat, yf = probs.reshape(b * t, r), y.reshape(b * t, p)
        s_dense = seconds(lambda: (torch.complex(flat.T @ yf.real, flat.T @ yf.imag), probs.sum(1).T @ ctf2))
        n_kept = float((kept.sum(1) > 0).sum(1).float().mean())
        print(f"| {label} | {n_kept:.0f} | {s_sig:.3f} | {s_pruned:.3f} | {s_dense:.3f} |")


if __name__ == "__main__":
    main()
