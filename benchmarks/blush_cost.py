"""What Blush costs per iteration at real box sizes: the denoiser on one half map of 128-384 px.

The map is PDB 3PWP's density (91 kDa, 167 A across with margin) plus noise at scaling.py's pixel
sizes (1-1.3 A/px). The shipped denoiser works at 1.5-3 A voxels, so a finer map is Fourier-cropped
to its grid first (working_grid); blocks whose share of the particle mask is under 5% are skipped.
Each point runs in a fresh process (its own peak RSS). Reported per box: the denoiser's grid, the
blocks run of those that tile it, seconds for one half map and for an iteration (two halves), and
the share of a local iteration of 100,000 particles that Blush takes, from scaling.py's E-step time
at the same box where results/scaling.json has it.

    .venv/bin/python benchmarks/blush_cost.py [--boxes 128 192 256 384] [--device cpu]

Writes benchmarks/results/blush_cost.{json,md} (blush_cost_<device>.* off the CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scaling import MODEL, RADIUS, pixel_size  # noqa: E402


def one_point(box: int, device: str) -> dict:
    import torch

    from blush_scipion.engine.blush.denoiser import denoise_map, load_denoiser, working_grid
    from blush_scipion.engine.blush.inference import block_starts
    from blush_scipion.engine.density import density_from_model
    from blush_scipion.engine.memory import peak_memory_gb

    apix = pixel_size(box)
    diameter = 2 * (RADIUS + 10)
    denoiser = load_denoiser(device=device)
    volume = density_from_model(MODEL, box, apix)
    volume = volume + volume.std() * torch.randn(volume.shape, generator=torch.Generator().manual_seed(0))
    m, voxel = working_grid(box, apix, denoiser)
    tiles = len(block_starts(m, denoiser.block, denoiser.block // 2)) ** 3
    calls = []
    original = denoiser.net.forward

    def counting(x):
        calls.append(len(x))
        return original(x)

    if device.startswith("cuda"):  # cuDNN picks its kernels on the first calls: not the rate
        denoise_map(volume.to(device), apix, denoiser, diameter)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    denoiser.net.forward = counting
    t0 = time.perf_counter()
    denoise_map(volume.to(device), apix, denoiser, diameter)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return {
        "box": box,
        "pixel_size": apix,
        "denoiser_grid": m,
        "denoiser_voxel": round(voxel, 3),
        "blocks_run": sum(calls),
        "blocks_tiling": tiles,
        "seconds_per_half": round(seconds, 2),
        "seconds_per_iteration": round(2 * seconds, 2),
        **peak_memory_gb(device),
        "device": device,
        "threads": torch.get_num_threads(),
    }


def share_of_iteration(row: dict, scaling: dict | None, particles: int = 100_000) -> str:
    """Blush's share of a local iteration of `particles` at this box, from scaling.json's E-step rate."""
    rows = [
        r
        for r in (scaling or {}).get("results", [])
        if r.get("box") == row["box"] and r.get("mode") == "local" and "failed" not in r
    ]
    if not rows:
        return ""
    other = rows[0]["expectation_seconds_per_1000"] * particles / 1000 + rows[0]["other_seconds"]
    return f"{100 * row['seconds_per_iteration'] / (other + row['seconds_per_iteration']):.2f}%"


REDRAW = "none: the table again from the results file (shares from the scaling file as it is now)"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boxes", type=int, nargs="*", default=[128, 192, 256, 384], help=REDRAW)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_point(args.one, args.device)))
        return
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    scaling_file = HERE / "results" / f"scaling{suffix}.json"
    scaling = json.loads(scaling_file.read_text()) if scaling_file.exists() else None
    out = HERE / "results" / f"blush_cost{suffix}"
    command = "benchmarks/blush_cost.py " + " ".join(sys.argv[1:])
    rows = []
    if not args.boxes and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        command, rows = old["command"], old["rows"]
        for row in rows:
            if "failed" not in row:
                row["share_of_local_iteration_100k"] = share_of_iteration(row, scaling)
    for box in args.boxes:
        print(f"box {box} ...", flush=True)
        run = subprocess.run(
            [sys.executable, __file__, "--one", str(box), "--device", args.device],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            rows.append({"box": box, "failed": (run.stderr.strip().splitlines() or ["killed"])[-1][:200]})
            continue
        row = json.loads(run.stdout.strip().splitlines()[-1])
        row["share_of_local_iteration_100k"] = share_of_iteration(row, scaling)
        rows.append(row)
        print(f"  {row}", flush=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    keys = [
        "box",
        "pixel_size",
        "denoiser_grid",
        "denoiser_voxel",
        "blocks_run",
        "blocks_tiling",
        "seconds_per_half",
        "seconds_per_iteration",
        "peak_rss_gb",
        "share_of_local_iteration_100k",
    ]
    lines = [
        f"# Blush's denoiser per iteration against box size ({args.device})",
        "",
        f"`.venv/bin/python {command}`",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
    ]
    lines += ["| " + " | ".join(str(r.get(k, r.get("failed", ""))) for k in keys) + " |" for r in rows]
    lines += [
        "",
        "The share is of a local 0.94 deg iteration of 100,000 particles at the same box, its E-step "
        f"rate and M-step from `{scaling_file.relative_to(HERE.parent)}`.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
