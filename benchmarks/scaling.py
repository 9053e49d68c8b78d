"""What a refinement iteration costs at real box sizes: time and peak memory of one refine3d iteration
(both half sets: E-step, back-projection, FSC, tau2 maps, accuracy estimate) against the box size, at
a global 7.5 deg iteration (HEALPix order 3, 10 A) and a local 0.94 deg one (order 6, 3 A or Nyquist),
and against the number of particles at 128 px. Each point runs in a fresh process (its own peak RSS)
under an address-space limit, so a size that does not fit says so instead of taking the machine down.

Particles are simulated from PDB 3PWP (91 kDa) at max(1, 2 (R + 10 A) / box) A/px, with their true
poses, so posteriors are as sharp as a converged refinement's. The E-step scales with the number of
particles, the M-step (Fourier volumes, tau2 maps, FSC) does not: both are reported, and the
projections combine them.

    .venv/bin/python benchmarks/scaling.py [--boxes 64 128 192 256 384] [--n 128] \
        [--counts 500 1000 2000 4000] [--device cpu] [--limit-gb 20]

Writes benchmarks/results/scaling.{json,md} (scaling_<device>.* off the CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent.parent / "shared" / "data" / "atomic_models" / "3PWP.pdb.gz"
RADIUS = 73.4  # A, 3PWP's atoms from their centre
OLD_CODE = "full volumes, <= 393ae1a"  # rows measured before points carried their commit
MODES = {"global": {"order": 3, "resolution": 10.0}, "local": {"order": 6, "resolution": 3.0}}
PLAN = {"global": 6, "local": 10}  # iterations of a refinement at 256 px, for the projection


def pixel_size(box: int) -> float:
    return max(1.0, round(2 * (RADIUS + 10) / box, 2))


def one_point(box: int, mode: str, n: int, device: str, memory_gb: float | None, work: Path) -> dict:
    """Simulate (cached), then time one iteration of `mode` in this process, set up as the `blush`
    command sets up its own."""
    import numpy as np
    import torch

    from blush_scipion.engine.images import initial_sigma2
    from blush_scipion.engine.memory import peak_memory_gb
    from blush_scipion.engine.mrc import read_map
    from blush_scipion.engine.particles import Particles
    from blush_scipion.engine.refine3d import RefineSettings, RefineState, greyscale_scale, run_iteration
    from blush_scipion.engine.runtime import prepare_process
    from blush_scipion.engine.sampling import angular_step, orientation_grid
    from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

    prepare_process()
    apix = pixel_size(box)
    folder = work / f"box{box}_n{n}"
    if not (folder / "truth.star").exists():
        simulate_from_model(
            MODEL, SimulationSettings(n_particles=n, box=box, pixel_size=apix, snr=0.05, seed=3), folder
        )
    particles = Particles.read(folder / "truth.star")
    truth, _ = read_map(folder / "truth.mrc")
    spec = MODES[mode]
    r_current = int(min(box // 2, math.ceil(box * apix / spec["resolution"]) + 5))
    local = mode == "local"
    state = RefineState(
        iteration=5 if local else 1,
        order=spec["order"],
        offset_range=1.5 if local else 5.0,
        offset_step=1.0 if local else 2.0,
        r_current=r_current,
        poses_given=True,
        sigma2=initial_sigma2(particles, box).tolist(),
    )
    settings = RefineSettings(local_from_order=4, device=device, memory_gb=memory_gb)
    scale = greyscale_scale(particles, truth, torch.tensor(state.sigma2), r_current, 2, 1.0, 1.0, device)
    subsets = np.arange(n) % 2 + 1

    def iteration(rows):
        return run_iteration(
            particles.subset(rows),
            [truth * scale, truth * scale],
            state,
            settings,
            subsets[rows],
            particles.rotations(rows),
            particles.origins(rows),
            progress=False,
        )

    if device.startswith("cuda"):  # CUDA's first calls (kernels loaded, FFT plans made) are not the rate
        iteration(np.arange(min(n, 16)))
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    result = iteration(np.arange(n))
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    e_step = result.expectation_seconds
    return {
        "box": box,
        "pixel_size": apix,
        "mode": mode,
        "angular_step": angular_step(spec["order"]),
        "orientations": len(orientation_grid(spec["order"])) if not local else None,
        "r_current": r_current,
        "resolution_angstrom": round(box * apix / (r_current - 5), 2),
        "particles": n,
        "seconds": round(seconds, 2),
        "expectation_seconds": round(e_step, 2),
        "other_seconds": round(seconds - e_step, 2),
        "expectation_seconds_per_1000": per_1000(e_step, n),
        **peak_memory_gb(device),
        "device": device,
        "threads": torch.get_num_threads(),
        "commit": commit(),
    }


def per_1000(seconds: float, n: int) -> float:
    """Seconds per 1,000 particles to three significant digits (at least one decimal): a GPU's
    0.23 s is not rounded to 0.2."""
    value = 1000 * seconds / n
    return round(value, max(1, 2 - math.floor(math.log10(value)))) if value > 0 else 0.0


def commit() -> str:
    """The code that measured a point: HEAD, marked when the working tree differs from it; on a copy
    of the tree without git (a device machine), BLUSH_COMMIT as the command that sent it says."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    if head.returncode != 0:
        return os.environ.get("BLUSH_COMMIT", "unknown")
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "blush_scipion"], cwd=HERE).returncode
    return head.stdout.strip() + ("+changes" if dirty else "")


def run_point(args, box: int, mode: str, n: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        str(box),
        mode,
        str(n),
        "--device",
        args.device,
        "--work",
        args.work,
        "--limit-gb",
        str(args.limit_gb),
    ]
    if args.memory_gb is not None:
        cmd += ["--memory-gb", str(args.memory_gb)]
    print(f"box {box} {mode} n {n} ...", flush=True)
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["killed"])[-1]
        print(f"  failed: {tail}", flush=True)
        return {
            "box": box,
            "mode": mode,
            "particles": n,
            "device": args.device,
            "failed": tail[:200],
            "commit": commit(),
        }
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(
        f"  {result['seconds']} s, E-step {result['expectation_seconds_per_1000']} s per 1000, "
        f"peak {result['peak_rss_gb']} GB",
        flush=True,
    )
    return result


def projection(results: list[dict], box: int, particles: int, iterations: dict[str, int]) -> float | None:
    """Hours for `particles` of `box` px: per mode, iterations x (E-step per particle x N + the rest)."""
    total = 0.0
    for mode, count in iterations.items():
        row = next((r for r in results if r["box"] == box and r["mode"] == mode and "failed" not in r), None)
        if row is None:
            return None
        total += count * (row["expectation_seconds_per_1000"] * particles / 1000 + row["other_seconds"])
    return total / 3600


def table(results: list[dict]) -> str:
    gpu = any("cuda_peak_allocated_gb" in r for r in results)
    lines = [
        "| box px | A/px | iteration | E-step radius (A) | particles | E-step s per 1,000 | other s per "
        "iteration | peak RSS GB |" + (" peak GPU allocation GB |" if gpu else "") + " code |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|",
    ]
    for r in results:
        if "failed" in r:
            lines.append(
                f"| {r['box']} | {pixel_size(r['box'])} | {r['mode']} | | {r['particles']} | "
                f"failed: {r['failed']} | | |" + (" |" if gpu else "") + f" {r.get('commit', OLD_CODE)} |"
            )
            continue
        label = f"{r['mode']} {r['angular_step']:.2f} deg"
        lines.append(
            f"| {r['box']} | {r['pixel_size']} | {label} | {r['resolution_angstrom']} | {r['particles']} | "
            f"{r['expectation_seconds_per_1000']} | {r['other_seconds']} | {r['peak_rss_gb']} |"
            + (f" {r.get('cuda_peak_allocated_gb', '')} |" if gpu else "")
            + f" {r.get('commit', OLD_CODE)} |"
        )
    return "\n".join(lines)


def write(out: Path, summary: dict) -> None:
    """results/scaling[_device].json as given, and its .md table."""
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    hours = summary["projected_hours_100k_256px"]
    out.with_suffix(".md").write_text(
        f"# One refine3d iteration against box size and particle count ({summary['device']}, "
        f"{summary['cores']} cores)\n\n"
        + "".join(f"`.venv/bin/python {c}`\n\n" for c in summary["commands"])
        + f"{table(summary['results'])}\n\n"
        "Each row carries the commit that measured it (`commit` in the json).\n\n"
        f"Projected wall time of 100,000 particles of 256 px ({summary['projection_assumes']}): "
        + (
            f"{hours:.2g} hours on this device.\n"
            if hours is not None
            else "not available (a point failed).\n"
        )
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boxes", type=int, nargs="*", default=[64, 128, 192, 256, 384])
    p.add_argument("--n", type=int, default=128, help="particles per box-size point")
    p.add_argument(
        "--counts",
        type=int,
        nargs="*",
        default=[500, 1000, 2000, 4000],
        help="particle counts at 128 px (local iteration)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-gb", type=float, help="E-step batch budget (refine3d --memory-gb)")
    p.add_argument("--limit-gb", type=float, default=20.0, help="address-space limit of each point's process")
    p.add_argument("--work", default=str(HERE / "work" / "scaling"))
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the results file's other rows, replacing those of the points run now",
    )
    p.add_argument("--one", nargs=3, metavar=("BOX", "MODE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        if not args.device.startswith("cuda"):  # a CUDA context reserves address space beyond any sane limit
            limit = int(args.limit_gb * 1e9)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        box, mode, n = int(args.one[0]), args.one[1], int(args.one[2])
        try:
            print(json.dumps(one_point(box, mode, n, args.device, args.memory_gb, Path(args.work))))
        except (MemoryError, RuntimeError) as e:
            sys.exit(f"does not fit in {args.limit_gb:g} GB: {str(e).splitlines()[0][:120]}")
        return
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    out = HERE / "results" / f"scaling{suffix}"
    if not args.boxes and not args.counts and out.with_suffix(".json").exists():
        # nothing to measure: the tables again from the results file, per-1,000 rates from the seconds
        summary = json.loads(out.with_suffix(".json").read_text())
        for r in summary["results"]:
            if "failed" not in r:
                r["expectation_seconds_per_1000"] = per_1000(r["expectation_seconds"], r["particles"])
        summary["projected_hours_100k_256px"] = projection(summary["results"], 256, 100_000, PLAN)
        write(out, summary)
        print(out.with_suffix(".md").read_text())
        return
    results = [run_point(args, box, mode, args.n) for box in args.boxes for mode in MODES]
    results += [run_point(args, 128, "local", n) for n in args.counts]
    commands = ["benchmarks/scaling.py " + " ".join(sys.argv[1:])]
    if args.merge and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        done = {(r["box"], r["mode"], r["particles"]) for r in results}
        results = [r for r in old["results"] if (r["box"], r["mode"], r["particles"]) not in done] + results
        results.sort(key=lambda r: (r["particles"] != args.n, r["particles"], r["box"], r["mode"]))
        commands = old.get("commands", [old["command"]]) + commands
    write(
        out,
        {
            "command": " and ".join(commands),
            "commands": commands,
            "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "device": args.device,
            "results": results,
            "projection_assumes": f"a refinement of {PLAN['global']} global 7.5 deg and {PLAN['local']} "
            "local 0.94 deg iterations at these resolutions",
            "projected_hours_100k_256px": projection(results, 256, 100_000, PLAN),
        },
    )
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
