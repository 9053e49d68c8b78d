"""class2d at a real box size: is its memory flat in the number of particles?

Particles of PDB 3PWP (91 kDa) at BOX px and scaling.py's pixel size (1.0 A/px at 256 px), SNR 0.05,
N of them for each N of --counts (blush simulate, seed 3), classified by `blush class2d --grad` in a
fresh process per N: mini-batches of one fixed size (--subset, so that every N does the same work
per mini-batch iteration), then RELION's last iteration over every particle. Reported per N: the
run's peak resident memory (summary.json) and, sampled from /proc, its peak anonymous memory and
its peak mapped file pages (the stacks' pages it read, reclaimable), the mean seconds of a
mini-batch iteration, the last iteration's seconds and its seconds per 1,000 particles, the wall
time.

    .venv/bin/python benchmarks/class2d_memory.py [--counts 2000 8000 20000] [--box 256] [--k 20] \
        [--iter 5] [--subset 500] [--name class2d_memory]

Writes benchmarks/results/NAME.{json,md} (--name, class2d_memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from refine3d_vs_relion import BLUSH, write_results  # noqa: E402
from scaling import MODEL, commit, pixel_size  # noqa: E402

from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402


def sampled_peaks(proc: subprocess.Popen, every: float = 0.2) -> dict:
    """Waits for `proc`; the largest of its anonymous memory (what it allocated) and of its mapped
    file pages (the image stacks' pages it read, which the kernel drops under pressure), from
    /proc/PID/status every `every` s. Both count in the peak RSS that summary.json reports."""
    peaks = {"RssAnon": 0, "RssFile": 0}
    status_file = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            status = dict(line.split(":", 1) for line in status_file.read_text().splitlines())
            for key in peaks:
                peaks[key] = max(peaks[key], int(status[key].split()[0]))
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(every)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    gb = {key: round(kb * 1024 / 1e9, 3) for key, kb in peaks.items()}
    return {"peak_anonymous_gb": gb["RssAnon"], "peak_file_pages_gb": gb["RssFile"]}


def one_count(n: int, args) -> dict:
    """Simulate N particles (cached), classify them in a fresh process, read its summary."""
    work = HERE / "work" / f"class2d_{args.box}px_n{n}"
    if not (work / "particles.star").exists():
        settings = SimulationSettings(
            n_particles=n, box=args.box, pixel_size=pixel_size(args.box), snr=0.05, seed=3
        )
        simulate_from_model(MODEL, settings, work)
    out = work / f"k{args.k}_it{args.iter}_subset{args.subset}"
    if not (out / "summary.json").exists():
        options = ["--k", args.k, "--grad", "--iter", args.iter, "--grad-ini-subset", args.subset]
        options += ["--grad-fin-subset", args.subset, "--overwrite"]
        t0 = time.perf_counter()
        with open(work / f"{out.name}.log", "w") as log:
            cli = [*BLUSH, "class2d", "--particles", "particles.star", "--out", out.name, *map(str, options)]
            peaks = sampled_peaks(subprocess.Popen(cli, cwd=work, stdout=log, stderr=subprocess.STDOUT))
        seconds = time.perf_counter() - t0
        (out / "launch.json").write_text(json.dumps({"seconds": seconds, "commit": commit(), **peaks}))
    s = json.loads((out / "summary.json").read_text())
    launch = json.loads((out / "launch.json").read_text())
    batches, last = s["history"][:-1], s["history"][-1]
    return {
        "particles": n,
        "box": args.box,
        "pixel_size": pixel_size(args.box),
        "classes": args.k,
        "mini_batch": args.subset,
        "mini_batch_iterations": len(batches),
        "mini_batch_iteration_s": round(sum(h["seconds"] for h in batches) / max(len(batches), 1), 1),
        "last_iteration_particles": last["particles"],
        "last_iteration_s": last["seconds"],
        "last_iteration_seconds_per_1000": round(1000 * last["seconds"] / last["particles"], 1),
        "wall_s": round(launch["seconds"], 1),
        "peak_rss_gb": s["peak_rss_gb"],
        "peak_anonymous_gb": launch["peak_anonymous_gb"],
        "peak_file_pages_gb": launch["peak_file_pages_gb"],
        "threads": os.cpu_count(),
        "commit": launch["commit"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[2000, 8000, 20000])
    p.add_argument("--box", type=int, default=256)
    p.add_argument("--k", type=int, default=20, help="classes")
    p.add_argument("--iter", type=int, default=5, help="iterations, the last over every particle")
    p.add_argument("--subset", type=int, default=500, help="particles per mini-batch")
    p.add_argument("--name", default="class2d_memory", help="results file name")
    args = p.parse_args()
    rows = []
    for n in args.counts:
        print(f"{n} particles ...", flush=True)
        rows.append(one_count(n, args))
        print(f"  {rows[-1]}", flush=True)
    command = "benchmarks/class2d_memory.py " + " ".join(sys.argv[1:])
    write_results(
        args.name,
        {"command": command, "cores": os.cpu_count(), "rows": rows},
        list(rows[0]),
        f"`.venv/bin/python {command}`: `blush class2d --grad` on particles of 3PWP at SNR 0.05, "
        "mini-batches of one size for every N, the last iteration over every particle; one process per N "
        "on this machine's cores.",
    )


if __name__ == "__main__":
    main()
