"""refine3d, class2d and class3d against the number of ranks (torch.distributed under torchrun).

One model (validate split of ../shared/data), N particles of BOX px (blush simulate); each command
runs a fixed number of iterations with 1, 2, ... ranks: gloo on the CPU with the machine's cores
shared out (cores / ranks threads per rank, so every row uses the whole machine), or NCCL with one
GPU per rank on --device cuda. Reported per row: wall seconds per iteration (the mean of the
iterations' own times, start-up excluded), particle-iterations per second, the speed-up against
one rank, and each rank's peak memory (summary.json's peak_rss_gb_per_rank; on a GPU also torch's
peak allocation). With a --device cuda row at 256 px, the projected wall time of 500,000
particles of 256 px on 8 GPUs from the measured per-GPU throughput; without one, none is made up.
Writes benchmarks/results/NAME.{json,md}.

    .venv/bin/python benchmarks/ranks.py [--ranks 1 2] [--n 1000] [--box 64] [--iter 3] [--device cpu]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from refine3d_vs_relion import MODELS, write_results  # noqa: E402
from scaling import PLAN  # noqa: E402
from scaling import projection as scaled_hours  # noqa: E402

from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402

MODEL = "1osm"  # validate split, 20 kDa
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
# a global and a local refine3d iteration past the first (--max-order stops the sampling there),
# class2d EM over all particles, class3d with two classes
COMMANDS = {
    "refine3d": lambda it: ["--ref", "truth.mrc", "--max-iter", it, "--max-order", 3],
    "class2d": lambda it: ["--k", 10, "--iter", it],
    "class3d": lambda it: ["--ref", "truth.mrc", "--k", 2, "--iter", it],
}


def run(command: str, ranks: int, args, work: Path) -> dict:
    out = work / f"{command}_{args.device.split(':')[0]}_{ranks}ranks"
    if not (out / "summary.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        cli = [sys.executable, "-m", "blush_scipion.engine.cli", command, "--particles", "particles.star"]
        cli += [*map(str, COMMANDS[command](args.iter)), "--out", out.name, "--device", args.device]
        launch = [TORCHRUN, "--standalone", f"--nproc-per-node={ranks}", "--no-python"] if ranks > 1 else []
        threads = max(1, (os.cpu_count() or 1) // ranks) if args.device == "cpu" else 1
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        t0 = time.perf_counter()
        with open(work / f"{out.name}.log", "w") as log:
            subprocess.run(launch + cli, cwd=work, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
        (out / "launch.json").write_text(
            json.dumps({"seconds": time.perf_counter() - t0, "threads": threads})
        )
    s = json.loads((out / "summary.json").read_text())
    launch = json.loads((out / "launch.json").read_text())
    per_iteration = sum(h["seconds"] for h in s["history"]) / len(s["history"])
    row = {
        "command": command,
        "device": args.device,
        "ranks": s["ranks"],
        "threads_per_rank": launch["threads"],
        "box": s["box"],
        "particles": s["particles"],
        "iterations": s["iterations"],
        "seconds_per_iteration": round(per_iteration, 1),
        "particle_iterations_per_s": round(s["particles"] / per_iteration, 1),
        "wall_s": round(launch["seconds"], 1),
        "peak_rss_gb_per_rank": s.get("peak_rss_gb_per_rank", [s["peak_rss_gb"]]),
    }
    if "cuda_peak_allocated_gb" in s:
        row["cuda_peak_gb_per_rank"] = s.get("cuda_peak_allocated_gb_per_rank", [s["cuda_peak_allocated_gb"]])
    return row


def projection(rows: list) -> str:
    """500,000 particles of 256 px on 8 GPUs, from the best measured per-GPU refine3d throughput at
    256 px (20 iterations, as a refinement at that size takes)."""
    gpu = [r for r in rows if r["command"] == "refine3d" and r["device"] != "cpu" and r["box"] == 256]
    if not gpu:
        return from_scaling(HERE / "results" / "scaling_cuda.json")
    per_gpu = max(r["particle_iterations_per_s"] / r["ranks"] for r in gpu)
    hours = 500_000 * 20 / (8 * per_gpu) / 3600
    return f"{hours:.1f} hours for 20 iterations at {per_gpu:.0f} particle-iterations/s per GPU"


def from_scaling(path: Path) -> str:
    """The same projection from one GPU's refine3d iterations at 256 px (scaling.py --device cuda):
    each of 8 GPUs takes 62,500 particles and runs the M-step; the all-reduce of the sums is not in it."""
    if not path.exists():
        return "not made: no refine3d row on a GPU at 256 px (run with --device cuda --box 256)"
    hours = scaled_hours(json.loads(path.read_text())["results"], 256, 500_000 // 8, PLAN)
    if hours is None:
        return f"not made: {path.name} has no 256 px rows"
    return (
        f"{hours:.2g} hours ({60 * hours:.0f} minutes) for {PLAN['global']} global and {PLAN['local']} "
        f"local iterations, from one GPU's iterations at 256 px in {path.relative_to(HERE.parent)} "
        "(62,500 particles and the whole M-step per GPU; the all-reduce of the sums not measured)"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--apix", type=float, default=2.0)
    p.add_argument("--iter", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="ranks")
    args = p.parse_args()
    work = HERE / "work" / f"ranks_{MODEL}_{args.box}px_n{args.n}_it{args.iter}"
    if not (work / "particles.star").exists():
        settings = SimulationSettings(
            n_particles=args.n, box=args.box, pixel_size=args.apix, snr=0.05, seed=5
        )
        simulate_from_model(MODELS / f"{MODEL}.pdb.gz", settings, work)
    rows = []
    for command in args.commands:
        for ranks in args.ranks:
            rows.append(run(command, ranks, args, work))
            one = next(r for r in rows if r["command"] == command and r["ranks"] == min(args.ranks))
            rows[-1]["speed_up"] = round(one["seconds_per_iteration"] / rows[-1]["seconds_per_iteration"], 2)
            print(rows[-1], flush=True)
    keys = [
        "command",
        "device",
        "ranks",
        "threads_per_rank",
        "box",
        "particles",
        "iterations",
        "seconds_per_iteration",
        "particle_iterations_per_s",
        "speed_up",
        "peak_rss_gb_per_rank",
    ]
    if any("cuda_peak_gb_per_rank" in r for r in rows):
        keys.append("cuda_peak_gb_per_rank")
    command = "benchmarks/ranks.py " + " ".join(sys.argv[1:])
    results = {
        "command": command,
        "cores": os.cpu_count(),
        "rows": rows,
        "projection_500k_256px_8gpu": projection(rows),
    }
    write_results(
        args.name,
        results,
        keys,
        f"`.venv/bin/python {command}`: {args.n} particles of {MODEL}, {args.box} px at {args.apix} A/px, "
        f"SNR 0.05, {args.iter} iterations per command on {os.cpu_count()} cores; seconds per iteration are "
        "the mean of the iterations' own times (start-up excluded). Projected 500,000 particles of 256 px on "
        f"8 GPUs: {results['projection_500k_256px_8gpu']}.",
    )


if __name__ == "__main__":
    main()
