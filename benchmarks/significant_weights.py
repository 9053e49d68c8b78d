"""The M-step with and without significant-weights pruning, on one E-step batch of refine3d's
global pass (128 images x 21 shifts x 4,608 orientations, 1,000 Fourier points), for a broad
posterior (low SNR) and a sharp one (high SNR, where most weights are denormal floats). "Dense"
is the M-step without pruning: two strided complex GEMMs over every orientation, timed with
denormals flushed to zero as the command line runs (the fair baseline) and, beside it, without.
The pruned path's time includes finding the significant set. Each time is the median of --repeats.

    .venv/bin/python benchmarks/significant_weights.py [--repeats 5]

Writes benchmarks/results/significant_weights.{json,md}.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from refine3d_vs_relion import write_results  # noqa: E402

from blush_scipion.engine.expectation import posteriors, significant, weighted_sums  # noqa: E402


def median_seconds(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    b, t, r, n_points = 128, 21, 4608, 1000
    y = torch.randn(b, t, n_points, dtype=torch.complex64, generator=g)
    ctf2 = torch.rand(b, n_points, generator=g)
    rows = []
    for label, spread in (("broad", 6.0), ("sharp", 48.0)):
        probs = posteriors(torch.randn(b, t, r, generator=g) * spread)[0]
        flat, yf = probs.reshape(b * t, r), y.reshape(b * t, n_points)

        def pruned():
            kept = significant(probs)
            weighted_sums(
                kept, y, ctf2, torch.zeros(r, n_points, dtype=torch.complex64), torch.zeros(r, n_points)
            )

        def dense():
            return torch.complex(flat.T @ yf.real, flat.T @ yf.imag), probs.sum(1).T @ ctf2

        kept = float((significant(probs).sum(1) > 0).sum(1).float().mean())
        row = {"posterior": label, "orientations_kept_per_image": round(kept)}
        row["significant_s"] = median_seconds(lambda: significant(probs), args.repeats)
        row["pruned_m_step_s"] = median_seconds(pruned, args.repeats)
        torch.set_flush_denormal(True)
        row["dense_m_step_s"] = median_seconds(dense, args.repeats)
        torch.set_flush_denormal(False)
        row["dense_with_denormals_s"] = median_seconds(dense, args.repeats)
        rows.append(row)
        print(row, flush=True)
    command = "benchmarks/significant_weights.py " + " ".join(sys.argv[1:])
    write_results(
        "significant_weights",
        {"command": command, "threads": torch.get_num_threads(), "rows": rows},
        list(rows[0]),
        f"`.venv/bin/python {command}`: one E-step batch of the global pass ({b} images x {t} shifts x {r} "
        f"orientations, {n_points} points), {torch.get_num_threads()} threads; the pruned M-step includes "
        "finding the significant set; the dense M-step runs with denormals flushed (as the command line "
        "does), the last column without.",
    )


if __name__ == "__main__":
    main()
