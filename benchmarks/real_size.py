"""refine3d at a real pixel size: does it reach what its particles hold?

For each model (validate split of ../shared/data): particles of 128 px at 1.25 A/px (blush simulate,
SNR 0.05, seed 7), the known-pose reconstruction of the same particles (the ceiling), then refine3d
from the truth low-passed to 40 A with RELION's auto-sampling (no order cap) and, with --capped,
the old default cap at HEALPix order 4 (3.75 deg) beside it. Reported: FSC-vs-truth 0.5 (docked and
undocked), the map from the final poses, the gold standard, the median angular error, the finest
sampling and the iterations taken, the wall time and peak memory.
Writes benchmarks/results/real_size.{json,md} (--name).

    .venv/bin/python benchmarks/real_size.py [--models 1osm 3PWP] [--n 4000] [--capped] [--device cpu] \
        [--relion [--relion-cores 0-1]] [--no-ours]

With --relion, RELION's auto-refine runs beside on the same files (the checked peer of
benchmarks/peer.py, pinned to --relion-cores), to convergence or stopped after --relion-hours; a
stopped run is also read at our wall time, and ours at its last iteration (ours may run in another
invocation at the same time: --no-ours here then reads it when done).
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from blush_vs_standard import diameter_of  # noqa: E402
from peer import checked_relion, find_relion  # noqa: E402
from refine3d_vs_relion import (  # noqa: E402
    MODELS,
    blush,
    evaluate,
    fsc_to_truth,
    paired_reads,
    refine3d_args,
    run_relion,
    write_results,
)

from blush_scipion.engine.mrc import read_map  # noqa: E402
from blush_scipion.engine.sampling import angular_step  # noqa: E402
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402

ARMS = {"auto-sampling": [], "capped at order 4": ["--max-order", "4"]}


def ours(work: Path, arm: str, extra: list, diameter: float, args) -> dict:
    """refine3d from the truth at 40 A into work/ARM (a killed run goes on where it stopped), scored."""
    out = work / arm.replace(" ", "_")
    if not (out / "summary.json").exists():
        resume = ["--continue"] if out.exists() else []
        options = ["--diameter", round(diameter, 1), "--device", args.device, *extra, *resume]
        blush(*refine3d_args(out.name, *options), cwd=work)
    summary = json.loads((out / "summary.json").read_text())
    return {
        **evaluate(
            work,
            out / "run_data.star",
            out / "run_class001.mrc",
            summary["resolution_angstrom"],
            summary["wall_seconds"],
            summary["iterations"],
            None,
        ),
        "finest_angular_step_deg": summary["finest_angular_step"],
        "peak_rss_gb": summary.get("peak_rss_gb"),
        "cuda_peak_allocated_gb": summary.get("cuda_peak_allocated_gb"),
        "device": args.device,
    }


def peer(work: Path, diameter: float, ours_row: dict | None, args) -> dict:
    """RELION's auto-refine on the same files (benchmarks/peer.py's set-up, pinned to
    --relion-cores), to convergence or stopped after --relion-hours; scored as ours. Where it
    stopped, also RELION at our wall time (where ours finished), ours at RELION's wall time (where
    ours had not finished by then) and ours at RELION's last iteration (where ours got there)."""
    budget = args.relion_hours * 3600 if args.relion_hours else None
    run = run_relion(work, diameter, budget_s=budget, cores=args.relion_cores)
    version = checked_relion(HERE / "work").version
    stopped = not (work / "relion" / "run_data.star").exists()
    label = f"relion_refine {version}" + (f" (stopped after {args.relion_hours:g} h)" if stopped else "")
    found = {label: run}
    if stopped:  # ours finished (ours_row), or still running in another invocation
        found.update(
            paired_reads(work / "relion", f"relion_refine {version}", ours_row, work / "auto-sampling", run)
        )
    rows = {}
    for arm, (data, final, gold, seconds, iterations) in found.items():
        sampling = final.parent / f"run_it{iterations:03d}_sampling.star"  # RELION's only
        order = (
            int(sampling.read_text().split("_rlnHealpixOrder")[1].split()[0]) if sampling.exists() else None
        )
        rows[arm] = {
            **evaluate(work, data, final, gold, seconds, iterations, None),
            "finest_angular_step_deg": angular_step(order) if order is not None else None,
            "device": f"cpu {args.relion_cores}" if "relion" in arm else args.device,
        }
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["1osm", "3PWP"])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--apix", type=float, default=1.25)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--capped", action="store_true", help="also run the old cap at order 4")
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="real_size")
    p.add_argument("--ours", action=argparse.BooleanOptionalAction, default=True, help="refine3d's arms")
    p.add_argument("--relion", action="store_true", help="also RELION's auto-refine (many hours on 2 cores)")
    p.add_argument("--relion-cores", default="0-1", help="taskset cores for RELION (%(default)s)")
    p.add_argument(
        "--relion-hours", type=float, default=None, help="stop RELION after this wall time (default: none)"
    )
    args = p.parse_args()
    rows = []
    for name in args.models:
        model = MODELS / f"{name}.pdb.gz"
        work = HERE / "work" / f"real_{name}_{args.box}px_n{args.n}"
        if not (work / "truth.star").exists():
            simulate_from_model(
                model,
                SimulationSettings(
                    n_particles=args.n, box=args.box, pixel_size=args.apix, snr=args.snr, seed=7
                ),
                work,
            )
        if not (work / "known.mrc").exists():
            blush("reconstruct", "--particles", "truth.star", "--out", "known.mrc", cwd=work)
        known = fsc_to_truth(read_map(work / "known.mrc")[0], work, dock=False)[1]
        diameter = diameter_of(model)
        arms = {arm: extra for arm, extra in ARMS.items() if args.ours and (args.capped or not extra)}
        results = {arm: ours(work, arm, extra, diameter, args) for arm, extra in arms.items()}
        if args.relion and find_relion():
            done = (work / "auto-sampling" / "summary.json").exists()  # ours, from this run or another
            mine = results.get("auto-sampling") or (
                ours(work, "auto-sampling", [], diameter, args) if done else None
            )
            results.update(peer(work, diameter, mine, args))
        for arm, result in results.items():
            row = {"model": name, "arm": arm, "known_pose_fsc_truth_05_A": known, **result}
            row["vs_known_pose"] = f"{100 * (row['fsc_truth_05_A'] / known - 1):+.0f}%"
            rows.append(row)
            print(row, flush=True)
    keys = [
        "model",
        "arm",
        "known_pose_fsc_truth_05_A",
        "fsc_truth_05_A",
        "vs_known_pose",
        "undocked_fsc_truth_05_A",
        "posed_fsc_truth_05_A",
        "gold_standard_0143_A",
        "median_angular_error_deg",
        "finest_angular_step_deg",
        "iterations",
        "wall_s",
        "peak_rss_gb",
        "cuda_peak_allocated_gb",
        "device",
    ]
    results = {"command": "benchmarks/real_size.py " + " ".join(sys.argv[1:]), "rows": rows}
    if args.relion and find_relion():
        results["peer"] = checked_relion(HERE / "work").record(HERE / "work", args.relion_cores)
    write_results(
        args.name,
        results,
        keys,
        f"`.venv/bin/python benchmarks/real_size.py {' '.join(sys.argv[1:])}`: {args.n} particles of "
        f"{args.box} px at {args.apix} A/px, SNR {args.snr}, from the truth at 40 A; FSC against the "
        "truth after docking (engine/fit.py); the known-pose map is the same particles at their true poses.",
    )


if __name__ == "__main__":
    main()
