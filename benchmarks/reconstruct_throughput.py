"""Known-pose reconstruction throughput: `blush reconstruct` beside `relion_reconstruct`.

Simulates N particles of 128 px from a real atomic model, then times both programs on the same
truth.star (RELION where it is installed: the checked peer of peer.py), each pinned to --cores with
one thread per core, and measures each map's FSC against the truth.
Writes benchmarks/results/reconstruct_throughput.{json,md}.

    .venv/bin/python benchmarks/reconstruct_throughput.py [--n 5000] [--device cpu] [--cores 0]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer import checked_relion, cores_of, find_relion, pinned, thread_env  # noqa: E402

MODEL = HERE.parent.parent / "shared" / "data" / "atomic_models" / "3PWP.pdb.gz"


def timed(cmd, cwd, cores: str):
    """Wall seconds of `cmd` pinned to `cores`, one thread per core."""
    t0 = time.perf_counter()
    subprocess.run(pinned(cmd, cores), cwd=cwd, check=True, capture_output=True, env=thread_env(cores))
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--apix", type=float, default=1.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=str(MODEL))
    p.add_argument("--work", default=str(HERE / "work" / "reconstruct"))
    p.add_argument("--cores", default="0", help="taskset list for both programs (%(default)s)")
    args = p.parse_args()
    work = Path(args.work)
    if not (work / "summary.json").exists():
        simulate_from_model(
            args.model,
            SimulationSettings(n_particles=args.n, box=args.box, pixel_size=args.apix, snr=0.1, seed=11),
            work,
        )
    truth, apix = read_map(work / "truth.mrc")
    rows = []
    ours = timed(
        [
            sys.executable,
            "-m",
            "blush_scipion.engine.cli",
            "reconstruct",
            "--particles",
            "truth.star",
            "--out",
            "blush.mrc",
            "--device",
            args.device,
        ],
        work,
        args.cores,
    )
    rows.append(("blush reconstruct", ours, work / "blush.mrc"))
    if find_relion():
        relion = checked_relion(HERE / "work")
        cmd = [relion.program("relion_reconstruct"), "--i", "truth.star", "--o", "relion.mrc", "--ctf"]
        rows.append(
            (
                f"relion_reconstruct --ctf ({relion.version})",
                timed(cmd, work, args.cores),
                work / "relion.mrc",
            )
        )
    results = []
    for name, seconds, path in rows:
        fsc = fourier_shell_correlation(read_map(path)[0], truth)
        results.append(
            {
                "program": name,
                "particles": args.n,
                "box": args.box,
                "seconds": round(seconds, 2),
                "particles_per_second": round(args.n / seconds, 1),
                "fsc_truth_05_A": round(resolution_at(fsc, 0.5, args.box, apix), 2),
                "threads": len(cores_of(args.cores)),
                "device": args.device if "blush" in name else "cpu",
            }
        )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "reconstruct_throughput.json").write_text(json.dumps(results, indent=2))
    lines = [
        "| program | particles | box | wall s | particles/s | FSC vs truth 0.5 (A) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['program']} | {r['particles']} | {r['box']} | {r['seconds']} | {r['particles_per_second']} | "
        f"{r['fsc_truth_05_A']} |"
        for r in results
    ]
    (out / "reconstruct_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
