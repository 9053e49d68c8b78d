"""RELION 3.1 beside us on the same files: one table (markdown, JSON) and one FSC plot.

Rows, each program on the same particles:
- known poses: `blush reconstruct` and `relion_reconstruct` on the simulated truth.star
  (adk_closed, 2,000 particles, SNR 0.1: refine3d_vs_relion.py's set);
- 3D auto-refine: the rows of results/refine3d_*.json (run `refine3d_vs_relion.py --relion` first);
- Blush at SNR 0.02 (--model simulated as in blush_vs_standard.py, --n particles): `blush refine3d`
  with and without --blush, relion_refine with `blush relion-hook --blush` as its external
  reconstruction, and relion_refine plain; both RELION arms get the same wall-time budget;
- 2D: `blush class2d` and relion_refine's 2D classification on class2d_blush.py's mixture with the
  same classes, iterations, in-plane step and offsets (wall time, purity, class FRC vs truth).

Every 3D arm is also scored by the map its poses give: all its particles reconstructed at its last
poses (`posed_fsc_truth_05_A`), so a RELION run stopped by its budget (its half-1 map, or Blush's
denoised reference) is measured like a finished one. Writes benchmarks/results/relion_peer.{md,json,png}.

    .venv/bin/python benchmarks/relion_peer.py [--model adk_open] [--n 1000] [--relion-budget 1800]
    [--skip-2d]
"""

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from blush_scipion.engine.mrc import read_map, read_stack
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.reconstruct import reconstruct_particles
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from blush_vs_standard import diameter_of, run_arm  # noqa: E402
from class2d_blush import evaluate as evaluate_classes  # noqa: E402
from class2d_blush import mixture, score_classes
from class2d_blush import run_arm as run_class2d
from peer import CLASSIFY_OFFSETS, checked_relion, mpi_program, pinned  # noqa: E402
from refine3d_vs_relion import (
    MODELS,
    SCORE_KEYS,
    evaluate,
    fsc_to_truth,
    last_iteration,
    posed,
    run_budgeted,
    run_relion,
    write_results,
)  # noqa: E402


def known_pose(work: Path, curves: dict) -> list:
    """`blush reconstruct` and `relion_reconstruct` on truth.star: wall time, FSC vs truth."""
    rows = []
    t0 = time.perf_counter()
    ours = reconstruct_particles(Particles.read(work / "truth.star"), progress=False).volume
    rows.append(("blush reconstruct", time.perf_counter() - t0, ours))
    t0 = time.perf_counter()
    subprocess.run(
        ["relion_reconstruct", "--i", "truth.star", "--o", "known_relion.mrc", "--ctf"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    rows.append(("relion_reconstruct", time.perf_counter() - t0, read_map(work / "known_relion.mrc")[0]))
    out = []
    for program, seconds, volume in rows:
        fsc, res = fsc_to_truth(volume, work)
        curves[f"known poses: {program}"] = fsc
        out.append(
            {
                "task": "known-pose reconstruction",
                "program": program,
                "wall_s": round(seconds, 1),
                "fsc_truth_05_A": res,
            }
        )
    return out


def hook_script(work: Path, diameter: float, apix: float, name: str, extra: str = "") -> Path:
    """The command RELION runs per half and iteration: `blush relion-hook --blush STAR`, one thread
    each (RELION's two half-set ranks call it at once); RELION 3.1's STAR has no pixel size."""
    script = work / f"{name}.sh"
    script.write_text(
        f"#!/bin/sh\nOMP_NUM_THREADS=1 exec {sys.executable} -m blush_scipion.engine.cli relion-hook "
        f'--blush --diameter {diameter:.1f} --angpix {apix} {extra}"$1"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def blush_arms(name: str, snr: float, n: int, budget: float, device: str, curves: dict) -> list:
    """Six arms at low SNR on `n` particles of `name` simulated as blush_vs_standard.py does:
    ours with Blush (from the denoiser's range, and from the first iteration as RELION 5) and
    without, RELION with our Blush as its external reconstruction (from the first iteration, the
    hook's default, and from 15 A) and RELION plain (the same wall-time budget for the three).
    RELION runs its GUI's auto-refine job as peer.py sets it up (HEALPix order 2, offsets 5/1 px,
    oversampling 1, --ctf_corrected_ref where its version needs it), pinned to one core."""
    model = MODELS / f"{name}.pdb.gz"
    work = HERE / "work" / f"peer_{name}_snr{snr}_n{n}"
    if not (work / "summary.json").exists():
        simulate_from_model(
            model, SimulationSettings(n_particles=n, box=64, pixel_size=2.0, snr=snr, seed=7), work
        )
    diameter = diameter_of(model)
    apix = Particles.read(work / "particles.star").pixel_size

    def relion_hook(name: str, extra: str = ""):
        env = dict(
            os.environ,
            RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=str(hook_script(work, diameter, apix, name, extra)),
        )
        return run_relion(
            work, diameter, budget_s=budget, name=name, extra=("--external_reconstruct",), env=env
        )

    first = "--blush-from-resolution 0"
    arms = [
        ("blush refine3d --blush", lambda: run_arm(work, "blush", diameter, device)),
        (f"blush refine3d --blush {first}", lambda: run_arm(work, "blush_first", diameter, device)),
        ("blush refine3d", lambda: run_arm(work, "standard", diameter, device)),
        ("relion_refine + blush relion-hook --blush", lambda: relion_hook("relion_hook_blush")),
        (
            "relion_refine + blush relion-hook --blush --blush-from-resolution 15",
            lambda: relion_hook("relion_hook_blush_from15", "--blush-from-resolution 15 "),
        ),
        ("relion_refine", lambda: run_relion(work, diameter, budget_s=budget, name="relion_plain")),
    ]
    relion = checked_relion(work.parent)
    if relion.has_blush:  # RELION 5's own Blush schedule, with the denoiser we ship
        arms.append(
            (
                f"relion_refine --blush (RELION {relion.version.split('-')[0]})",
                lambda: run_relion(
                    work,
                    diameter,
                    budget_s=budget,
                    name="relion_blush",
                    extra=("--blush",),
                    env=relion.blush_env(),
                ),
            )
        )
    rows = []
    for program, run in arms:
        result = run()
        curves[f"{name} SNR {snr}: {program}"] = posed(work, result[0])[0]
        rows.append(
            {
                "task": f"3D refine, {name} SNR {snr}, {n} particles",
                "program": program,
                **evaluate(work, *result, None),
            }
        )
        print(rows[-1], flush=True)
    return rows


def relion_class2d(
    work: Path, k: int, iterations: int, diameter: float, budget: float
) -> tuple[Path, Path, float]:
    """relion_refine 2D classification of work/mixed.star: its last data STAR, class stack, seconds.
    Its coarse sampling of 12 deg and 2 px, oversampled once, ends at ours: 6 deg and 1 px."""
    out = work / "relion2d"
    relion = checked_relion(work.parent)
    cmd = [
        *mpi_program(relion, 3),
        "--o",
        "relion2d/run",
        "--i",
        "mixed.star",
        "--K",
        str(k),
        "--iter",
        str(iterations),
        "--tau2_fudge",
        "2",
        "--ctf",
        "--zero_mask",
        "--particle_diameter",
        f"{diameter:.1f}",
        "--psi_step",
        "12",
        *CLASSIFY_OFFSETS,
        "--j",
        "1",
        "--pool",
        "3",
        "--dont_combine_weights_via_disc",
        "--random_seed",
        "1",
    ]
    seconds = run_budgeted(pinned(cmd, "0"), work, out, budget)
    last = last_iteration(out, "classes.mrcs")
    return out / f"run_it{last}_data.star", out / f"run_it{last}_classes.mrcs", seconds


def class2d_rows(
    models: list, n: int, snr: float, k: int, iterations: int, budget: float, device: str
) -> list:
    """blush class2d (class2d_blush.py's standard arm) beside relion_refine 2D on the same mixture."""
    work, labels, truths = mixture(models, n, snr)
    diameter = max(diameter_of(MODELS / f"{m}.pdb.gz") for m in models)
    task = f"2D classes, {'+'.join(models)} SNR {snr}"
    rows = [
        {
            "task": task,
            "program": "blush class2d",
            **evaluate_classes(
                run_class2d(work, "standard", k, iterations, diameter, device), labels, truths, 2.0
            ),
        }
    ]
    data, classes, seconds = relion_class2d(work, k, iterations, diameter, budget)
    # RELION may reorder particles: their structures follow them by image name
    mixed = Particles.read(work / "mixed.star")
    by_name = dict(zip(mixed.table["rlnImageName"], labels))
    table = Particles.read(data).table
    rows.append(
        {
            "task": task,
            "program": f"relion_refine {checked_relion(HERE / 'work').version} (2D)",
            "wall_s": round(seconds, 1),
            "iterations": int(data.name[6:9]),
            **score_classes(
                table["rlnClassNumber"].to_numpy(),
                read_stack(classes),
                np.array([by_name[x] for x in table["rlnImageName"]]),
                truths,
                2.0,
            ),
        }
    )
    for r in rows:
        print(r, flush=True)
    return rows


def plot(curves: dict, path: Path, apix: float = 2.0, n: int = 64) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, fsc in curves.items():
        f = np.arange(len(fsc)) / (n * apix)
        ax.plot(f, fsc.numpy(), label=label, ls="--" if "relion" in label else "-")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(
        xlabel="spatial frequency (1/A)",
        ylabel="FSC against the truth",
        ylim=(-0.1, 1.02),
        title="RELION 3.1.3 beside blush on the same particles",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="adk_open", help="Blush rows: validate model (%(default)s)")
    p.add_argument("--snr", type=float, default=0.02)
    p.add_argument("--n", type=int, default=1000, help="Blush rows: particles (%(default)s)")
    p.add_argument(
        "--relion-budget", type=float, default=1800, help="seconds per RELION 3D arm (%(default)s)"
    )
    p.add_argument("--class2d-models", nargs="+", default=["1osm", "4gcnA", "adk_open"])
    p.add_argument("--class2d-n", type=int, default=300, help="particles per structure (%(default)s)")
    p.add_argument("--class2d-k", type=int, default=6)
    p.add_argument("--class2d-iter", type=int, default=15)
    p.add_argument("--class2d-snr", type=float, default=0.05)
    p.add_argument("--relion-2d-budget", type=float, default=3600, help="seconds (%(default)s)")
    p.add_argument("--skip-2d", action="store_true")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if not shutil.which("relion_refine_mpi"):
        print(
            "relion_refine_mpi is not on PATH, no peer to measure: `apt-get install relion` (Debian's 3.1.3)"
        )
        return
    curves, rows = {}, []
    refine_set = HERE / "work" / "refine_adk_closed"
    if not (refine_set / "truth.star").exists():
        simulate_from_model(
            MODELS / "adk_closed.pdb.gz",
            SimulationSettings(n_particles=2000, box=64, pixel_size=2.0, snr=0.1, seed=5),
            refine_set,
        )
    rows += known_pose(refine_set, curves)
    for refine3d in sorted((HERE / "results").glob("refine3d_*.json")):  # refine3d_vs_relion.py's, per model
        rows += [
            {"task": f"3D auto-refine, {r['model']} SNR 0.1", **{k: v for k, v in r.items() if k != "model"}}
            for r in json.loads(refine3d.read_text())["rows"]
        ]
    rows += blush_arms(args.model, args.snr, args.n, args.relion_budget, args.device, curves)
    if not args.skip_2d:
        rows += class2d_rows(
            args.class2d_models,
            args.class2d_n,
            args.class2d_snr,
            args.class2d_k,
            args.class2d_iter,
            args.relion_2d_budget,
            args.device,
        )
    keys = ["task", "program", *SCORE_KEYS, "purity", "frc_truth_05_A"]
    write_results(
        "relion_peer",
        {"args": vars(args), "rows": rows},
        keys,
        f"This run: {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPU cores per program. RELION arms "
        "stopped at their budget are measured at their last finished iteration. FSC curves: relion_peer.png.",
    )
    plot(curves, HERE / "results" / "relion_peer.png")


if __name__ == "__main__":
    main()
