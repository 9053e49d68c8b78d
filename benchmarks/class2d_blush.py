"""2D classification with and without Blush for 2D, on a mixture of structures at low SNR.

Particles are simulated from validate models of ../shared/data (never seen by the shipped
denoisers), 64 px at 2 A/px, --n per structure (seed 21 + i), mixed into one set; every arm
classifies the same set with the same seed: EM (standard), EM with Blush for 2D (blush), and
mini-batches (grad: `--grad`, RELION 4's VDAM schedule, 200 iterations). Reported per arm: wall
time, class purity (the share of particles whose class's majority structure is their own), and
each populated class's FRC (engine FSC in 2D) against the best-matching projection of its
majority structure's truth (searched over a 15 deg grid, then locally at 2.5 deg, with shifts):
the particle-weighted mean FRC = 0.5 resolution, of the class averages (run_classes.mrcs) and,
for the Blush arm, of Blush's references beside them.
Writes benchmarks/results/class2d.{json,md} (--name).

    .venv/bin/python benchmarks/class2d_blush.py [--models 1osm 4gcnA adk_open] [--snr 0.05 0.02] [--n 3000]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from blush_scipion.engine.fourier import irfft2_centered, rfft2_centered
from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at
from blush_scipion.engine.mrc import read_map, read_stack
from blush_scipion.engine.particles import Particles, concatenate
from blush_scipion.engine.projector import SlicePoints, extract_central_slices, fourier_reference
from blush_scipion.engine.sampling import grid_rotations, local_rotations, orientation_grid
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from blush_vs_standard import diameter_of  # noqa: E402
from refine3d_vs_relion import MODELS, write_results  # noqa: E402


def projections(truth: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """(n, n, n) map, (R, 3, 3) -> (R, n, n) projections."""
    n = truth.shape[-1]
    points = SlicePoints.within(n)
    ref = fourier_reference(truth)
    return torch.cat(
        [
            irfft2_centered(points.scatter(extract_central_slices(ref, r, points)), n)
            for r in rotations.split(512)
        ]
    )


def best_match(image: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The projection of `truth` (shifted) that correlates best with `image`: (n, n)."""

    def search(rotations):
        proj = projections(truth, rotations)
        cc = irfft2_centered(rfft2_centered(image)[None].conj() * rfft2_centered(proj), image.shape[-1])
        cc = cc / proj.flatten(1).norm(dim=1)[:, None, None]
        r = int(cc.flatten(1).max(1).values.argmax())
        shift = torch.nonzero(cc[r] == cc[r].max())[0] - image.shape[-1] // 2
        return rotations[r], torch.roll(proj[r], (-int(shift[0]), -int(shift[1])), dims=(0, 1))

    coarse, _ = search(grid_rotations(orientation_grid(2)))
    return search(local_rotations(2.5, 3) @ coarse)[1]


def score_classes(
    classes: np.ndarray, images: torch.Tensor, labels: np.ndarray, truths: list, apix: float
) -> dict:
    """Class purity and FRC against the truth of per-particle classes (N,) (1-based) with class
    averages (K, n, n), for particles of known structure `labels` (N,)."""
    purity = sum(np.bincount(labels[classes == c]).max() for c in np.unique(classes)) / len(classes)
    n = images.shape[-1]
    resolutions, weights = [], []
    for c in np.unique(classes):
        members = labels[classes == c]
        if len(members) < 0.01 * len(labels):
            continue
        match = best_match(images[c - 1], truths[np.bincount(members).argmax()])
        resolutions.append(resolution_at(fourier_shell_correlation(images[c - 1], match), 0.5, n, apix))
        weights.append(len(members))
    return {
        "purity": round(purity, 3),
        "populated_classes": len(resolutions),
        "frc_truth_05_A": round(float(np.average(resolutions, weights=weights)), 2),
        "best_class_frc_truth_05_A": round(float(min(resolutions)), 2),
    }


def evaluate(out: Path, labels: np.ndarray, truths: list, apix: float) -> dict:
    """A finished run's scores: of its class averages and, with Blush, of Blush's references."""
    classes = Particles.read(out / "run_data.star").table["rlnClassNumber"].to_numpy()
    summary = json.loads((out / "summary.json").read_text())
    row = {
        "wall_s": summary["wall_seconds"],
        "iterations": summary["iterations"],
        **score_classes(classes, read_stack(out / "run_classes.mrcs"), labels, truths, apix),
    }
    if (out / "run_classes_blush.mrcs").exists():
        blush = score_classes(classes, read_stack(out / "run_classes_blush.mrcs"), labels, truths, apix)
        row["blush_references_frc_truth_05_A"] = blush["frc_truth_05_A"]
    return row


def mixture(models: list, n: int, snr: float) -> tuple[Path, np.ndarray, list]:
    """The simulated mixture (its folder, with mixed.star), each particle's structure (N,), the truths."""
    work = HERE / "work" / f"class2d_{'_'.join(models)}_n{n}_snr{snr}"
    sets, truths = [], []
    for i, name in enumerate(models):
        d = work / name
        if not (d / "summary.json").exists():
            simulate_from_model(
                MODELS / f"{name}.pdb.gz",
                SimulationSettings(n_particles=n, box=64, pixel_size=2.0, snr=snr, seed=21 + i),
                d,
            )
        sets.append(Particles.read(d / "particles.star"))
        truths.append(read_map(d / "truth.mrc")[0])
    concatenate(sets).write(work / "mixed.star")
    return work, np.repeat(np.arange(len(sets)), [len(s) for s in sets]), truths


ARM_FLAGS = {"standard": [], "blush": ["--blush"], "grad": ["--grad"]}


def run_arm(work: Path, arm: str, k: int, iterations: int, diameter: float, device: str) -> Path:
    """`blush class2d` of work/mixed.star into work/ARM with the arm's flags (ARM_FLAGS); finished
    arms are kept, unfinished ones continue."""
    out = work / arm
    if not (out / "summary.json").exists():
        with open(work / f"{arm}.log", "a") as log:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "blush_scipion.engine.cli",
                    "class2d",
                    "--particles",
                    "mixed.star",
                    "--out",
                    arm,
                    "--k",
                    str(k),
                    "--iter",
                    str(iterations),
                    "--diameter",
                    f"{diameter:.1f}",
                    "--device",
                    device,
                    "--seed",
                    "1",
                    "--continue",
                ]
                + ARM_FLAGS[arm],
                cwd=work,
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["1osm", "4gcnA", "adk_open"])
    p.add_argument("--snr", nargs="+", type=float, default=[0.05, 0.02])
    p.add_argument("--n", type=int, default=3000, help="particles per structure (%(default)s)")
    p.add_argument("--k", type=int, default=12, help="classes (%(default)s)")
    p.add_argument("--iter", type=int, default=20, help="iterations (%(default)s)")
    p.add_argument("--arms", nargs="+", default=list(ARM_FLAGS), choices=list(ARM_FLAGS))
    p.add_argument(
        "--grad-iter", type=int, default=200, help="mini-batch iterations of the grad arm (%(default)s)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="class2d", help="results file stem (%(default)s)")
    args = p.parse_args()
    results = {"device": args.device, "models": args.models, "n_per_model": args.n, "k": args.k, "rows": []}
    diameter = max(diameter_of(MODELS / f"{m}.pdb.gz") for m in args.models)
    for snr in args.snr:
        work, labels, truths = mixture(args.models, args.n, snr)
        for arm in args.arms:
            out = run_arm(
                work, arm, args.k, args.grad_iter if arm == "grad" else args.iter, diameter, args.device
            )
            row = {"snr": snr, "arm": arm, **evaluate(out, labels, truths, 2.0)}
            results["rows"].append(row)
            print(row, flush=True)
    write_results(
        args.name,
        results,
        [
            "snr",
            "arm",
            "wall_s",
            "iterations",
            "purity",
            "populated_classes",
            "frc_truth_05_A",
            "best_class_frc_truth_05_A",
            "blush_references_frc_truth_05_A",
        ],
        f"{', '.join(args.models)}: {args.n} particles each, 64 px at 2 A/px, {args.k} classes, "
        f"{args.iter} iterations (grad: {args.grad_iter} mini-batches, RELION's schedule), "
        f"diameter {diameter:.0f} A ({args.device}).",
    )


if __name__ == "__main__":
    main()
