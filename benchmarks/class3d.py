"""3D classification, ours (with and without Blush) beside RELION's, on mixtures of known structures.

For each pair of models: N particles of each (blush simulate, seeds 10 and 11), mixed; the
consensus map of all of them at their true poses as the reference (what a classification starts
from after a consensus refinement). Each arm classifies them into two classes from that map for a
number of iterations; reported: accuracy (the better of the two labellings against the truth), each
structure's class map docked onto its truth (FSC 0.5), the class shares, the classes' own
resolution estimates, the wall time. RELION (benchmarks/peer.py: checked with the CTF check
before it counts) runs relion_refine's Class3D as its GUI would (--ctf_corrected_ref on 3.1,
--firstiter_cc, --oversampling 1, the same T, start, diameter and sampling order).
Writes benchmarks/results/NAME.{json,md}.

    .venv/bin/python benchmarks/class3d.py --pairs 4gcnA:adk_closed --n 150 --box 40 --apix 3 --snr 0.1 \\
        --iter 6 --seeds 0 1 2 --relion --name class3d_ci
    .venv/bin/python benchmarks/class3d.py --pairs adk_open:adk_closed --n 2000 --box 64 --apix 2 \\
        --snr 0.05 --iter 25 --blush --relion --name class3d_adk

A model written NAME~CHAINS is NAME without those chains (3PWP~B: 3PWP without its chain B).
"""

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import gemmi
import numpy as np
import starfile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer import CLASSIFY_OFFSETS, checked_relion, find_relion, pinned  # noqa: E402
from refine3d_vs_relion import blush, last_iteration, run_budgeted, write_results  # noqa: E402

from blush_scipion.engine.fit import fit_rigid, transform_map  # noqa: E402
from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at  # noqa: E402
from blush_scipion.engine.mrc import read_map  # noqa: E402
from blush_scipion.engine.particles import Particles, concatenate  # noqa: E402
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402


class Run(NamedTuple):
    """One arm's classification, read at one iteration."""

    data_star: Path
    maps: list[Path]  # class 1, class 2
    seconds: float
    resolution: list  # each class's own estimate, A
    iterations: int


MODELS = [HERE.parent.parent / "shared" / "data" / "atomic_models", HERE.parent / "blush_scipion" / "data"]


def model_path(name: str, work: Path) -> Path:
    """NAME's atomic model; for NAME~CHAINS, the model without those chains (one letter each), as the
    partial complex that a classification sorts out, written into `work`."""
    base, _, dropped = name.partition("~")
    path = next(folder / f"{base}.pdb.gz" for folder in MODELS if (folder / f"{base}.pdb.gz").exists())
    if not dropped:
        return path
    structure = gemmi.read_structure(str(path))
    for chain in dropped:
        structure[0].remove_chain(chain)
    work.mkdir(parents=True, exist_ok=True)
    structure.write_pdb(str(work / f"{name}.pdb"))
    return work / f"{name}.pdb"


def make_mixture(names: list[str], args, work: Path) -> None:
    """The structures' particles, mixed (labels in order), their truths, the consensus map. The first
    structure's images have SNR args.snr; every other one's carry the same noise (as on one grid), so
    that a smaller complex is not told apart by a lower noise level."""
    if (work / "consensus.mrc").exists():
        return
    sigma = None
    for i, name in enumerate(names):
        settings = SimulationSettings(
            n_particles=args.n, box=args.box, pixel_size=args.apix, snr=args.snr, seed=10 + i
        )
        model = model_path(name, work)
        summary = simulate_from_model(model, settings, work / name)
        if sigma is None:
            sigma = summary["noise_sigma"]
        elif not math.isclose(summary["noise_sigma"], sigma, rel_tol=1e-6):
            same_noise = replace(settings, snr=summary["signal_variance"] / sigma**2)
            simulate_from_model(model, same_noise, work / name)
    concatenate([Particles.read(work / n / "particles.star") for n in names]).write(work / "mixed.star")
    concatenate([Particles.read(work / n / "truth.star") for n in names]).write(work / "truth.star")
    blush("reconstruct", "--particles", "truth.star", "--out", "consensus.mrc", cwd=work)


def labels_of(data_star: Path, work: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(true structure, assigned class - 1) per particle, paired by image (RELION reorders)."""
    order = {name: i for i, name in enumerate(Particles.read(work / "mixed.star").table["rlnImageName"])}
    table = Particles.read(data_star).table
    truth = np.array([order[name] // n for name in table["rlnImageName"]])
    return truth, table["rlnClassNumber"].to_numpy() - 1


def score(work: Path, names: list[str], data_star: Path, maps: list[Path], args) -> dict:
    truth, classes = labels_of(data_star, work, args.n)
    right = float(np.mean(truth == classes))
    swap = right < 0.5  # the better labelling of two classes
    row = {
        "accuracy": round(max(right, 1 - right), 3),
        "shares": " / ".join(f"{np.mean(classes == c):.2f}" for c in (0, 1)),
    }
    for s, name in enumerate(names):
        volume = read_map(maps[s ^ swap])[0]
        true_map, apix = read_map(work / name / "truth.mrc")
        rotation, shift, _ = fit_rigid(volume, true_map, apix)
        fsc = fourier_shell_correlation(transform_map(volume, rotation, shift), true_map)
        row[f"{name}_fsc_truth_05_A"] = round(resolution_at(fsc, 0.5, args.box, apix), 2)
    return row


def ours(work: Path, arm: str, seed: int, diameter: float, args) -> Run:
    out = work / f"{arm}_seed{seed}"
    extra = ["--blush"] if arm.startswith("blush") else []
    if arm == "grid_only":  # the 15 deg grid without oversampling its significant poses
        extra = ["--oversampling", "0"]
    if arm.startswith("blush_from"):  # blush_from15: Blush once the best class reaches 15 A
        extra += ["--blush-from-resolution", arm.removeprefix("blush_from")]
    seconds = 0.0
    if not (out / "summary.json").exists():
        seconds = blush(
            "class3d",
            "--particles",
            "mixed.star",
            "--ref",
            "consensus.mrc",
            "--out",
            out.name,
            "--k",
            2,
            "--iter",
            args.iter,
            "--diameter",
            diameter,
            "--seed",
            seed,
            *extra,
            *(["--continue"] if out.exists() else []),
            cwd=work,
        )
    summary = json.loads((out / "summary.json").read_text())
    return Run(
        out / "run_data.star",
        [out / f"run_class{c:03d}.mrc" for c in (1, 2)],
        summary["wall_seconds"] or seconds,
        summary["class_resolution_angstrom"],
        args.iter,
    )


def relion(work: Path, seed: int, diameter: float, args, *, blush: bool = False) -> Run:
    """RELION's Class3D on the mixture, pinned to args.cores; stopped after args.relion_hours if given
    (resumed from its last iteration when a session ended it), then measured at its last finished
    iteration."""
    peer = checked_relion(work / "peer_check")
    out = work / f"relion{'_blush' if blush else ''}_seed{seed}"
    if blush and not peer.has_blush:
        raise RuntimeError(f"RELION {peer.version} has no --blush (make peer builds RELION 5)")
    launch = pinned([peer.program("relion_refine")], args.cores)
    cmd = launch + [
        "--i",
        "mixed.star",
        "--ref",
        "consensus.mrc",
        "--o",
        f"{out.name}/run",
        "--K",
        "2",
        "--iter",
        str(args.iter),
        "--tau2_fudge",
        "4",
        "--particle_diameter",
        str(diameter),
        "--ini_high",
        "60",
        "--healpix_order",
        "2",
        *CLASSIFY_OFFSETS,
        "--ctf",
        *peer.corrected_ref_flag,
        "--firstiter_cc",
        "--flatten_solvent",
        "--zero_mask",
        "--norm",
        "--scale",
        "--sym",
        "C1",
        "--pad",
        "2",
        "--j",
        "1",
        "--dont_combine_weights_via_disc",
        "--random_seed",
        str(seed),
        *(["--blush"] if blush else []),
    ]

    def resume(it: str) -> list:
        """RELION's own --continue from iteration `it`, with the options its optimiser does not keep."""
        optimiser = f"{out.name}/run_it{it}_optimiser.star"
        kept = [
            "--o",
            f"{out.name}/run",
            "--iter",
            str(args.iter),
            "--j",
            "1",
            "--dont_combine_weights_via_disc",
        ]
        return launch + ["--continue", optimiser, *kept]

    if (out / "seconds.txt").exists():  # a run from before the budget (class3d_ci), unbudgeted
        seconds = float((out / "seconds.txt").read_text())
    else:
        budget = args.relion_hours * 3600 if args.relion_hours else None
        seconds = run_budgeted(cmd, work, out, budget, peer.blush_env() if blush else None, resume=resume)
    last = last_iteration(out, "model.star", "optimiser.star", "class001.mrc", "class002.mrc")
    classes = starfile.read(out / f"run_it{last}_model.star")["model_classes"]
    return Run(
        out / f"run_it{last}_data.star",
        [out / f"run_it{last}_class{c:03d}.mrc" for c in (1, 2)],
        seconds,
        [float(x) for x in classes["rlnEstimatedResolution"]],
        int(last),
    )


def ours_at(work: Path, arm: str, seed: int, iteration: int) -> Run:
    """Our finished arm read at an earlier iteration (to set beside a RELION run stopped there)."""
    out = work / f"{arm}_seed{seed}"
    history = json.loads((out / "summary.json").read_text())["history"][:iteration]
    return Run(
        out / f"run_it{iteration:03d}_data.star",
        [out / f"run_it{iteration:03d}_class{c:03d}.mrc" for c in (1, 2)],
        sum(h["seconds"] for h in history),
        history[-1]["class_resolution_angstrom"],
        iteration,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", default=["4gcnA:adk_closed"], help="model pairs A:B")
    p.add_argument("--n", type=int, default=150, help="particles per structure")
    p.add_argument("--box", type=int, default=40)
    p.add_argument("--apix", type=float, default=3.0)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--iter", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--diameter", type=float, default=None, help="A (default: 2/3 of the box)")
    p.add_argument("--blush", action="store_true", help="also the arm with --blush")
    p.add_argument(
        "--grid-only", action="store_true", help="also the arm without oversampling (--oversampling 0)"
    )
    p.add_argument(
        "--blush-from",
        type=float,
        nargs="+",
        default=[],
        metavar="A",
        help="also arms with Blush from A (--blush-from-resolution; --blush starts at once, as RELION 5)",
    )
    p.add_argument("--relion", action="store_true", help="also RELION's Class3D (the peer)")
    p.add_argument(
        "--relion-blush",
        action="store_true",
        help="also RELION 5's Class3D --blush (its Blush through our relion_python_blush)",
    )
    p.add_argument("--cores", default="0", help="taskset cores for RELION (one, as ours runs)")
    p.add_argument(
        "--relion-hours",
        type=float,
        default=None,
        help="stop RELION after this much wall time (summed over sessions) and measure its last iteration",
    )
    p.add_argument("--name", default="class3d")
    args = p.parse_args()
    diameter = args.diameter or round(args.box * args.apix * 2 / 3, 1)
    arms = (
        ["standard"]
        + (["grid_only"] if args.grid_only else [])
        + (["blush"] if args.blush else [])
        + [f"blush_from{a:g}" for a in args.blush_from]
    )
    arms += (["relion"] if args.relion else []) + (["relion_blush"] if args.relion_blush else [])
    rows = []
    for pair in args.pairs:
        names = pair.split(":")
        work = HERE / "work" / f"class3d_{'_'.join(names)}_{args.box}px_snr{args.snr}_n{args.n}"
        make_mixture(names, args, work)
        for seed in args.seeds:
            runs = [
                (
                    arm,
                    relion(work, seed, diameter, args, blush=arm == "relion_blush")
                    if arm.startswith("relion")
                    else ours(work, arm, seed, diameter, args),
                )
                for arm in arms
            ]
            ours_arms = [arm for arm in arms if not arm.startswith("relion")]
            stopped = {run.iterations for arm, run in runs if arm.startswith("relion")}
            for it in sorted(i for i in stopped if 0 < i < args.iter):  # ours beside a stopped RELION
                runs += [(arm, ours_at(work, arm, seed, it)) for arm in ours_arms]
            for arm, (data_star, maps, seconds, resolution, iterations) in runs:
                row = {
                    "pair": pair,
                    "arm": arm,
                    "seed": seed,
                    "iterations": iterations,
                    **score(work, names, data_star, maps, args),
                    "class_resolution_A": " / ".join(f"{x:.1f}" for x in resolution),
                    "wall_s": round(seconds, 1),
                }
                rows.append(row)
                print(row, flush=True)
    found = find_relion() if args.relion or args.relion_blush else None
    peer_version = f"RELION {found.version}" if found else "not run"
    keys = ["pair", "arm", "seed", "iterations", "accuracy", "shares"]
    keys += sorted({k for r in rows for k in r if k.endswith("_fsc_truth_05_A")}) + [
        "class_resolution_A",
        "wall_s",
    ]
    results = {"command": "benchmarks/class3d.py " + " ".join(sys.argv[1:]), "rows": rows}
    if found:
        results["peer"] = checked_relion(HERE / "work").record(HERE / "work", args.cores)
    write_results(
        args.name,
        results,
        keys,
        f"`.venv/bin/python benchmarks/class3d.py {' '.join(sys.argv[1:])}`: {args.n} particles of each "
        f"structure, {args.box} px at {args.apix} A/px, SNR {args.snr}, two classes from the consensus map "
        "(all particles at their true poses); accuracy: the better labelling against the truth; each "
        "structure's class map docked onto its truth (engine/fit.py) before its FSC. RELION: the checked "
        f"peer (benchmarks/peer.py; {peer_version}), one core"
        + (
            f", stopped after {args.relion_hours} h if not done (ours then also at RELION's last iteration)."
            if args.relion_hours
            else "."
        ),
    )


if __name__ == "__main__":
    main()
