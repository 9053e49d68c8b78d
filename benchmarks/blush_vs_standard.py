"""Blush against the standard prior: `blush refine3d --blush` beside `blush refine3d` on the same
particles, seed and start, at low SNR; and Blush from the first iteration (RELION 5's schedule)
beside ours, which starts it once the resolution reaches the denoiser's training range.

For each model: N particles of 64 px at 2 A/px (blush simulate, --seeds: one particle set each), at
each SNR; every arm starts from the truth low-passed to 40 A with the particle diameter from the
model. Reported per arm: wall time, iterations, FSC-vs-truth 0.5 of the final (regularised) map
docked onto the truth (and undocked) and, for Blush, of its denoised map, the gold-standard 0.143
resolution, the median angular error and the fraction of particles within 20 deg of their true
pose. Also the denoiser's CPU time on a 128^3 map. Writes benchmarks/results/NAME.{json,md}.

The tuning split: Blush's defaults (where it starts, what fills in above the trailing edge) are
chosen on TUNING, small models of the denoiser's training split, with the tuning arms; the table
reports on REPORTED, validate models the denoiser never saw (1osm and 3nbkA never used for any
choice; 4gcnA and 2qdlA were the rows the defaults were first chosen on, before this split).

    .venv/bin/python benchmarks/blush_vs_standard.py --models 3k7pA 3gknA 1dx5I \\
        --arms standard blush blush_first blush_from10 blush_from20 blush_zero_fill --name blush_tuning
    .venv/bin/python benchmarks/blush_vs_standard.py --models 1osm 3nbkA 4gcnA 2qdlA --seeds 7 8 \\
        --arms standard blush blush_first --name blush_heldout

Each arm is a refinement of several minutes on one core, and a finished arm is kept (an unfinished one
continues), so a table can be run in parts, e.g. one process per core with its own models, OMP_NUM_THREADS=1
and `taskset -c CORE`, then scored whole without running anything:

    .venv/bin/python benchmarks/blush_vs_standard.py --models 1osm 3nbkA 4gcnA 2qdlA --seeds 7 8 \\
        --arms standard blush --finished-only --name blush_heldout
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from blush_scipion.engine.blush import TRAINED_RESOLUTION_MAX
from blush_scipion.engine.blush.denoiser import denoise_map, load_denoiser
from blush_scipion.engine.density import read_model
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from refine3d_vs_relion import BLUSH, MODELS, evaluate, fsc_to_truth, refine3d_args, write_results  # noqa: E402


def diameter_of(model: Path) -> float:
    """A: the model's largest distance from its centre, doubled, plus 10 A of margin."""
    xyz = np.array([cra.atom.pos.tolist() for cra in read_model(model)[0].all()])
    return float(2 * np.linalg.norm(xyz - xyz.mean(0), axis=1).max() + 10)


ARMS = {
    "standard": [],
    "blush": ["--blush"],  # the defaults: Blush from 15 A, the Wiener map above the trailing edge
    "blush_first": ["--blush", "--blush-from-resolution", "0"],  # RELION 5's schedule
    "blush_from10": ["--blush", "--blush-from-resolution", "10"],
    "blush_from20": ["--blush", "--blush-from-resolution", "20"],
    "blush_zero_fill": ["--blush", "--blush-trailing-fill", "zero"],  # RELION 5's fill
}
LEVEL_A = 0.05  # FSC differences up to this are level: not finer, not coarser
TUNING = ["3k7pA", "3gknA", "1dx5I"]  # training split, 12-22 kDa
REPORTED = ["1osm", "3nbkA", "4gcnA", "2qdlA"]  # validate split, under 60 kDa
KEYS = [
    "model",
    "snr",
    "seed",
    "n",
    "arm",
    "wall_s",
    "iterations",
    "fsc_truth_05_A",
    "undocked_fsc_truth_05_A",
]
KEYS += ["denoised_fsc_truth_05_A", "posed_fsc_truth_05_A", "gold_standard_0143_A"]
KEYS += ["median_angular_error_deg", "within_20deg"]


def arm_folder(arm: str, device: str) -> str:
    """work/ARM on the CPU, work/ARM_cuda0 and so on off it."""
    return arm if device == "cpu" else f"{arm}_{device.replace(':', '')}"


def run_arm(work: Path, arm: str, diameter: float, device: str, timeout: float | None = None):
    """Runs (or reuses) one arm in work/arm_folder(ARM)."""
    name = arm_folder(arm, device)
    out = work / name
    if not (out / "summary.json").exists():  # finished arms are kept; unfinished ones continue
        with open(work / f"{name}.log", "a") as log:
            options = ["--device", device, "--diameter", f"{diameter:.1f}", "--continue", *ARMS[arm]]
            subprocess.run(
                [*BLUSH, *refine3d_args(name, *options)],
                cwd=work,
                check=True,
                timeout=timeout,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    s = json.loads((out / "summary.json").read_text())
    return (
        out / "run_data.star",
        out / "run_class001.mrc",
        s["resolution_angstrom"],
        s["wall_seconds"],
        s["iterations"],
    )


def score_arm(work: Path, arm: str, diameter: float, device: str, timeout: float | None = None) -> dict:
    """The arm's figures against the truth (refine3d_vs_relion.evaluate), and its denoised map's."""
    run_data, final_map, *rest = run_arm(work, arm, diameter, device, timeout)
    row = evaluate(work, run_data, final_map, *rest, None)
    if "--blush" in ARMS[arm]:
        row["denoised_fsc_truth_05_A"] = fsc_to_truth(
            read_map(final_map.with_name("run_class001_blush.mrc"))[0], work
        )[1]
    return row


def denoiser_time(device: str, n: int = 128, apix: float = 1.5) -> float:
    """Seconds for one 128^3 map at 1.5 A (the denoiser's own grid) with the shipped weights."""
    d = load_denoiser(device=device)
    vol = torch.randn(n, n, n)
    denoise_map(vol[:64, :64, :64].contiguous(), apix, d, 0.8 * 64 * apix)  # warm-up
    t0 = time.perf_counter()
    denoise_map(vol, apix, d, 0.8 * n * apix)
    return round(time.perf_counter() - t0, 1)


def particle_set(row: dict) -> tuple:
    """The particles an arm ran on: model, SNR, seed and number."""
    return row["model"], row["snr"], row["seed"], row.get("n")


def by_arm(rows: list[dict]) -> list[dict]:
    """Each arm's means over the particle sets every arm has finished (so that the means compare
    like with like while a table is still being run): how a default is chosen on the tuning models,
    and how the reported table reads in one line per arm."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    done = [{particle_set(r) for r in rows if r["arm"] == arm} for arm in arms]
    common = set.intersection(*done) if done else set()
    means = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm and particle_set(r) in common]
        row = {"arm": arm, "rows": len(mine)}
        for key in ("fsc_truth_05_A", "median_angular_error_deg", "within_20deg"):
            values = [r[key] for r in mine if key in r]
            row[f"mean_{key}"] = round(float(np.mean(values)), 3) if values else ""
        means.append(row)
    return means


def mean_difference(pairs: list[tuple[dict, dict]], key: str) -> float | str:
    """The mean of `key`'s differences over (arm, standard) row pairs; "" where a row lacks it (older
    files)."""
    d = [a[key] - b[key] for a, b in pairs if a.get(key) is not None and b.get(key) is not None]
    return round(float(np.mean(d)), 3) if len(d) == len(pairs) else ""


def against_standard(rows: list[dict]) -> list[dict]:
    """Each arm beside the standard prior on the same particles (model, SNR, seed and number): how many of
    its maps are finer (FSC 0.5 against the truth, by more than 0.05 A) and coarser, and the means
    of its differences (negative: finer, or nearer the true poses)."""
    standard = {particle_set(r): r for r in rows if r["arm"] == "standard"}
    paired = []
    for arm in dict.fromkeys(r["arm"] for r in rows if r["arm"] != "standard"):
        pairs = [
            (r, standard[particle_set(r)]) for r in rows if r["arm"] == arm if particle_set(r) in standard
        ]
        if not pairs:
            continue
        d_fsc = [a["fsc_truth_05_A"] - b["fsc_truth_05_A"] for a, b in pairs]
        paired.append(
            {
                "arm": arm,
                "pairs": len(pairs),
                "finer": sum(d < -LEVEL_A for d in d_fsc),
                "coarser": sum(d > LEVEL_A for d in d_fsc),
                "mean_fsc_difference_A": mean_difference(pairs, "fsc_truth_05_A"),
                "mean_angular_error_difference_deg": mean_difference(pairs, "median_angular_error_deg"),
                "mean_within_20deg_difference": mean_difference(pairs, "within_20deg"),
            }
        )
    return paired


# The tuning run's two choices, each among arms that differ in that setting alone (the defaults' arm,
# "blush", is in both): where Blush starts, and what fills in above the trailing edge. Each arm's
# value is read from ARMS; the defaults' arm has the engine's defaults.
CHOICES = {
    "--blush-from-resolution": ["blush_first", "blush_from10", "blush", "blush_from20"],
    "--blush-trailing-fill": ["blush", "blush_zero_fill"],
}
DEFAULTS = {"--blush-from-resolution": f"{TRAINED_RESOLUTION_MAX:g}", "--blush-trailing-fill": "wiener"}


def setting(arm: str, option: str) -> str:
    """The value of `option` that `arm` runs with."""
    args = ARMS[arm]
    return args[args.index(option) + 1] if option in args else DEFAULTS[option]


def choose(means: list[dict]) -> list[dict]:
    """Each setting's value on these models, by a rule fixed before the tuning run: the arm with the
    finest mean FSC against the truth; arms within 0.05 A of it (the pairs' threshold) are told apart
    by the lower mean median angular error. A setting whose arms have not all finished is left out."""
    by_name = {m["arm"]: m for m in means}
    chosen = []
    for option, arms in CHOICES.items():
        if not all(arm in by_name and by_name[arm]["rows"] for arm in arms):
            continue
        finest = min(by_name[arm]["mean_fsc_truth_05_A"] for arm in arms)
        near = [arm for arm in arms if by_name[arm]["mean_fsc_truth_05_A"] <= finest + LEVEL_A]
        arm = min(near, key=lambda a: by_name[a]["mean_median_angular_error_deg"])
        chosen.append(
            {"option": option, "value": setting(arm, option), "arm": arm, "default": DEFAULTS[option]}
        )
    return chosen


def markdown(table: list[dict]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in table])


def engine_commit() -> str:
    """The commit of the engine that ran the arms (this checkout's), '+' where it has changes."""
    git = ["git", "-C", str(HERE.parent)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "blush_scipion"], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return commit.stdout.strip() + ("+" if dirty.stdout.strip() else "") or "unknown"


def write(results: dict, name: str, device: str) -> None:
    """The results so far (after each row: a run stopped by a time cap keeps its finished arms),
    with each arm's means and its differences from the standard prior below the rows."""
    results["by_arm"] = by_arm(results["rows"])
    results["against_standard"] = against_standard(results["rows"])
    results["chosen"] = choose(results["by_arm"])
    footer = "Means per arm:\n\n" + markdown(results["by_arm"])
    if results["against_standard"]:
        footer += "\n\nBeside the standard prior on the same particles:\n\n" + markdown(
            results["against_standard"]
        )
    if results["chosen"]:
        footer += (
            f"\n\nChosen on these models (finest mean FSC; within {LEVEL_A:g} A, lower angular error):\n\n"
        )
        footer += markdown(results["chosen"])
    footer += f"\n\nDenoiser on a 128^3 map at 1.5 A ({device}): {results['denoise_128_seconds']} s"
    footer += f"\n\n`{results['command']}`, engine at {results['engine_commit']}"
    write_results(name, results, KEYS, footer)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["4gcnA", "2qdlA", "adk_open"])
    p.add_argument("--snr", nargs="+", type=float, default=[0.05, 0.02])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[7], help="of the simulated particles (%(default)s)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--name", default="blush", help="results file stem (%(default)s): run SNRs side by side")
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="score the arms that have finished (in earlier runs, or in runs split over cores) and run none",
    )
    args = p.parse_args()
    results = {
        "command": "benchmarks/blush_vs_standard.py " + " ".join(sys.argv[1:]),
        "engine_commit": engine_commit(),
        "denoise_128_seconds": denoiser_time(args.device),
        "device": args.device,
        "rows": [],
    }
    print(f"denoiser, 128^3 map on {args.device}: {results['denoise_128_seconds']} s", flush=True)
    for snr in args.snr:
        for name in args.models:
            model = MODELS / f"{name}.pdb.gz"
            diameter = diameter_of(model)
            for seed in args.seeds:
                work = (
                    HERE
                    / "work"
                    / (
                        f"blush_{name}_snr{snr}"
                        + (f"_n{args.n}" if args.n != 2000 else "")
                        + (f"_seed{seed}" if seed != 7 else "")
                    )
                )
                if args.finished_only and not (work / "summary.json").exists():
                    continue
                if not (work / "summary.json").exists():
                    settings = SimulationSettings(
                        n_particles=args.n, box=64, pixel_size=2.0, snr=snr, seed=seed
                    )
                    simulate_from_model(model, settings, work)
                for arm in args.arms:
                    if (
                        args.finished_only
                        and not (work / arm_folder(arm, args.device) / "summary.json").exists()
                    ):
                        continue
                    row = {
                        "model": name,
                        "snr": snr,
                        "seed": seed,
                        "n": args.n,
                        "arm": arm,
                        **score_arm(work, arm, diameter, args.device),
                    }
                    results["rows"].append(row)
                    print(row, flush=True)
                    write(results, args.name, args.device)


if __name__ == "__main__":
    main()
