"""The engine on a GPU: one row of the Blush table (the same particle files) refined on `--device
cuda` with both arms, scored as on the CPU; the denoiser on a 128^3 map; 2D classification (EM,
mini-batches, Blush for 2D) and denoiser training steps, timed. Each job has a time cap so that
the whole fits a short lease; a job that hits it is reported as such.

    python benchmarks/gpu.py --work benchmarks/work/blush_4gcnA_snr0.02 --models DIR [--device cuda]

DIR holds the atomic models (../shared/data/atomic_models); the work folder's summary.json names
the one it was simulated from. Writes benchmarks/results/gpu.{json,md}.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from blush_vs_standard import denoiser_time, diameter_of, score_arm  # noqa: E402
from refine3d_vs_relion import write_results  # noqa: E402

VALIDATE = ["1osm", "2qdlA", "3PWP", "3nbkA", "4gcnA", "adk_open"]  # never trained on (README's command)


def timed(cmd: list, cwd: Path, timeout: float) -> dict:
    """Runs `blush CMD...` in cwd; wall seconds, or how it failed."""
    t0 = time.perf_counter()
    log = cwd / f"{cmd[0]}_{int(t0)}.log"
    try:
        with open(log, "w") as out:
            subprocess.run(
                [sys.executable, "-m", "blush_scipion.engine.cli"] + cmd,
                cwd=cwd,
                check=True,
                timeout=timeout,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return {"wall_s": round(time.perf_counter() - t0, 1)}
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "failed": f"stopped at its {timeout:.0f} s cap"}
    except subprocess.CalledProcessError:
        return {"wall_s": None, "failed": log.read_text()[-2000:]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="a Blush-table work folder (particles, truth)")
    p.add_argument("--models", type=Path, required=True, help="folder of the atomic models")
    p.add_argument("--device", default="cuda")
    p.add_argument("--refine-cap", type=float, default=240, help="seconds per refine3d arm (%(default)s)")
    p.add_argument("--job-cap", type=float, default=120, help="seconds per other job (%(default)s)")
    args = p.parse_args()
    work = args.work.resolve()
    args.models = args.models.resolve()
    model = args.models / Path(json.loads((work / "summary.json").read_text())["model"]).name
    results = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "work": work.name,
        "rows": [],
    }

    def add(job, row):
        results["rows"].append({"job": job, **row})
        print(results["rows"][-1], flush=True)

    add("denoise 128^3 at 1.5 A", {"wall_s": denoiser_time(args.device)})
    for arm in ("standard", "blush"):
        try:
            add(f"refine3d {arm}", score_arm(work, arm, diameter_of(model), args.device, args.refine_cap))
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
            add(f"refine3d {arm}", {"failed": type(e).__name__})
    base = ["class2d", "--particles", "particles.star", "--k", "6", "--device", args.device]
    add(
        "class2d EM, 6 classes, 10 iterations",
        timed(base + ["--out", "c2d_em", "--iter", "10"], work, args.job_cap),
    )
    add(
        "class2d mini-batches, 30 iterations",
        timed(base + ["--out", "c2d_grad", "--grad", "--iter", "30"], work, args.job_cap),
    )
    add(
        "class2d Blush, 5 iterations",
        timed(base + ["--out", "c2d_blush", "--blush", "--iter", "5"], work, args.job_cap),
    )
    train = [
        "train",
        "--out",
        "gpu_train.safetensors",
        "--models",
        *map(str, sorted(args.models.glob("*.pdb.gz"))),
        "--exclude",
        *VALIDATE,
        "--steps",
        "100",
        "--batch",
        "8",
        "--device",
        args.device,
    ]
    add("train 100 steps of 8 blocks of 48^3 (model sampling included)", timed(train, work, args.job_cap))
    write_results(
        "gpu",
        results,
        [
            "job",
            "wall_s",
            "iterations",
            "fsc_truth_05_A",
            "gold_standard_0143_A",
            "median_angular_error_deg",
            "failed",
        ],
        f"{results['gpu']} ({args.device}), torch {results['torch']}, on {work.name}",
    )


if __name__ == "__main__":
    main()
