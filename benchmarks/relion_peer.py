"""RELION beside us on the same files, in parts, each with its own results file:
- `known`: known poses, `blush reconstruct` and `relion_reconstruct` on the simulated truth.star
  (adk_closed, 2,000 particles, SNR 0.1: refine3d_vs_relion.py's set) -> results/relion_peer_known;
- `blush`: Blush at low SNR (--model simulated as in blush_vs_standard.py, --n particles):
  `blush refine3d` with and without --blush and with RELION 5's schedule, relion_refine with
  `blush relion-hook --blush` as its external reconstruction, relion_refine plain and, where the
  peer is RELION 5, relion_refine --blush (our relion_python_blush: the same denoiser); the RELION
  arms get the same wall-time budget -> results/relion_peer_blush_MODEL (and .png, the FSC curves);
- `class2d`: `blush class2d` and relion_refine's 2D classification on class2d_blush.py's mixture
  with the same classes, iterations, in-plane step and offsets (wall time, purity, class FRC vs
  truth) -> results/relion_peer_class2d.
(3D auto-refine beside RELION is refine3d_vs_relion.py's.) RELION is the checked peer of peer.py;
every program of a part runs pinned to --cores (one thread per core), one after the other.
RELION arms that take hours may be advanced side by side beforehand, each on a core of its own
(`--relion-arms plain --cores 1` beside the full command on core 0): the full command then takes
each arm's finished or budget-stopped run as it is.

Every 3D arm is also scored by the map its poses give: all its particles reconstructed at its last
poses (`posed_fsc_truth_05_A`), so a RELION run stopped by its budget (its half-1 map, or Blush's
denoised reference) is measured like a finished one.

    .venv/bin/python benchmarks/relion_peer.py --parts blush class2d [--model 3nbkA] [--n 1000] \
        [--relion-budget 1800] [--cores 0] [--relion-arms hook plain blush]
"""

import argparse
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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
from peer import CLASSIFY_OFFSETS, checked_relion, cores_of, find_relion, mpi_program, pinned, thread_env  # noqa: E402
from refine3d_vs_relion import (
    MODELS,
    SCORE_KEYS,
    evaluate,
    fsc_to_truth,
    last_iteration,
    paired_reads,
    posed,
    run_budgeted,
    run_relion,
    trace,
    write_results,
)  # noqa: E402


def known_pose(cores: str) -> list:
    """`blush reconstruct` and `relion_reconstruct` on truth.star of refine3d_vs_relion.py's set:
    wall time, FSC vs truth."""
    work = HERE / "work" / "refine_adk_closed"
    if not (work / "truth.star").exists():
        simulate_from_model(
            MODELS / "adk_closed.pdb.gz",
            SimulationSettings(n_particles=2000, box=64, pixel_size=2.0, snr=0.1, seed=5),
            work,
        )
    relion = checked_relion(work.parent)
    rows = []
    t0 = time.perf_counter()
    ours = reconstruct_particles(Particles.read(work / "truth.star"), progress=False).volume
    rows.append(("blush reconstruct", time.perf_counter() - t0, ours))
    cmd = [relion.program("relion_reconstruct"), "--i", "truth.star", "--o", "known_relion.mrc", "--ctf"]
    t0 = time.perf_counter()
    subprocess.run(pinned(cmd, cores), cwd=work, check=True, capture_output=True)
    program = f"relion_reconstruct {relion.version}"
    rows.append((program, time.perf_counter() - t0, read_map(work / "known_relion.mrc")[0]))
    return [
        {
            "task": "known-pose reconstruction, adk_closed SNR 0.1",
            "program": program,
            "wall_s": round(seconds, 1),
            "fsc_truth_05_A": fsc_to_truth(volume, work)[1],
        }
        for program, seconds, volume in rows
    ]


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


RELION_ARMS = {"hook": "relion_hook_blush", "plain": "relion_plain", "blush": "relion_blush"}


@dataclass(frozen=True)
class RelionRuns:
    """The particle set of a blush part and RELION's arms on it."""

    work: Path  # the set's folder (simulated once); each arm's folder is in it
    diameter: float  # A, of the model
    version: str  # RELION's, without its commit
    runs: dict  # arm folder -> a call that runs (or continues, or reuses) it, as run_relion returns


def relion_runs(name: str, snr: float, n: int, budget: float, cores: str) -> RelionRuns:
    """The set of `n` particles of `name` at `snr` and RELION's arms on it, each pinned to `cores`
    within `budget` seconds."""
    model = MODELS / f"{name}.pdb.gz"
    work = HERE / "work" / f"peer_{name}_snr{snr}_n{n}"
    if not (work / "summary.json").exists():
        simulate_from_model(
            model, SimulationSettings(n_particles=n, box=64, pixel_size=2.0, snr=snr, seed=7), work
        )
    diameter = diameter_of(model)
    apix = Particles.read(work / "particles.star").pixel_size
    relion = checked_relion(work.parent)

    def relion_arm(arm: str, extra: tuple = (), env: dict | None = None):
        return lambda: run_relion(
            work, diameter, budget_s=budget, name=arm, extra=extra, env=env, cores=cores
        )

    hook = dict(
        os.environ,
        RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=str(hook_script(work, diameter, apix, "relion_hook_blush")),
    )
    runs = {
        "relion_hook_blush": relion_arm("relion_hook_blush", ("--external_reconstruct",), hook),
        "relion_plain": relion_arm("relion_plain"),
    }
    if relion.has_blush:
        runs["relion_blush"] = relion_arm("relion_blush", ("--blush",), relion.blush_env())
    return RelionRuns(work, diameter, relion.version.split("-")[0], runs)


def blush_arms(
    name: str, snr: float, n: int, *, budget: float, cores: str, curves: dict, traces: dict
) -> list:
    """Blush at low SNR on `n` particles of `name` simulated as blush_vs_standard.py does: ours
    with Blush (from the denoiser's range, and from the first iteration as RELION 5) and without,
    RELION with our Blush as its external reconstruction (the hook's default: RELION 5's schedule),
    RELION plain and, where the peer is RELION 5, RELION's own --blush (the same wall-time budget
    for each RELION arm). RELION runs its GUI's auto-refine job as peer.py sets it up. Each RELION arm
    is also set beside our arm of the same schedule (plain: the standard prior; with Blush: ours
    from the first iteration) at equal wall time and at equal iterations. Fills `curves` (program ->
    FSC of its posed map) and `traces` (program -> its iterations, as trace() reads them)."""
    arms_of = relion_runs(name, snr, n, budget, cores)
    work, diameter, version, runs = arms_of.work, arms_of.diameter, arms_of.version, arms_of.runs
    # (program, its folder in work, the folder of our arm it is set beside: RELION's arms only)
    arms = [
        ("blush refine3d --blush", "blush", None),
        ("blush refine3d --blush --blush-from-resolution 0", "blush_first", None),
        ("blush refine3d", "standard", None),
        (f"relion_refine {version} + blush relion-hook --blush", "relion_hook_blush", "blush_first"),
        (f"relion_refine {version}", "relion_plain", "standard"),
    ]
    if "relion_blush" in runs:  # RELION 5's own Blush schedule, with the denoiser we ship
        arms.append((f"relion_refine {version} --blush", "relion_blush", "blush_first"))
    rows: list[dict] = []
    ours: dict[str, dict] = {}
    for program, folder, partner in arms:
        result = runs[folder]() if folder in runs else run_arm(work, folder, diameter, "cpu")
        curves[program] = posed(work, result[0])[0]
        rows.append({"program": program, **evaluate(work, *result, None)})
        print(rows[-1], flush=True)
        traces[program] = trace(work, work / folder)
        if partner is None:
            ours[folder] = rows[-1]
        else:  # beside it at equal wall time and at equal iterations, with our arm of the same schedule
            mine = ours[partner]
            for label, pair in paired_reads(work / folder, program, mine, work / partner, result):
                label = label.replace("blush refine3d", mine["program"])
                rows.append({"program": label, **evaluate(work, *pair, None)})
                print(rows[-1], flush=True)
    return rows


def relion_class2d(
    work: Path, k: int, iterations: int, diameter: float, budget: float, cores: str
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
    seconds = run_budgeted(pinned(cmd, cores), work, out, budget)
    last = last_iteration(out, "classes.mrcs")
    return out / f"run_it{last}_data.star", out / f"run_it{last}_classes.mrcs", seconds


def class2d_rows(
    models: list, n: int, snr: float, k: int, iterations: int, budget: float, cores: str
) -> list:
    """blush class2d (class2d_blush.py's standard arm) beside relion_refine 2D on the same mixture."""
    work, labels, truths = mixture(models, n, snr)
    diameter = max(diameter_of(MODELS / f"{m}.pdb.gz") for m in models)
    rows = [
        {
            "program": "blush class2d",
            **evaluate_classes(
                run_class2d(work, "standard", k, iterations, diameter, "cpu"), labels, truths, 2.0
            ),
        }
    ]
    data, classes, seconds = relion_class2d(work, k, iterations, diameter, budget, cores)
    # RELION may reorder particles: their structures follow them by image name
    mixed = Particles.read(work / "mixed.star")
    by_name = dict(zip(mixed.table["rlnImageName"], labels))
    table = Particles.read(data).table
    rows.append(
        {
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


def plot(curves: dict, path: Path, title: str, apix: float = 2.0, n: int = 64) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, fsc in curves.items():
        f = np.arange(len(fsc)) / (n * apix)
        ax.plot(f, fsc.numpy(), label=label, ls="--" if "relion" in label else "-")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(xlabel="spatial frequency (1/A)", ylabel="FSC against the truth", ylim=(-0.1, 1.02), title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_traces(traces: dict, path: Path, title: str) -> None:
    """Median angular error and gold standard of each arm's iterations against its wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for label, rows in traces.items():
        t = [r["wall_s"] for r in rows]
        style = {"ls": "--" if "relion" in label else "-", "marker": ".", "label": label}
        axes[0].plot(t, [r["median_angular_error_deg"] for r in rows], **style)
        axes[1].plot(t, [r["gold_standard_0143_A"] for r in rows], **style)
    axes[0].set(ylabel="median angular error (deg)", yscale="log")
    axes[1].set(ylabel="gold standard FSC 0.143 (A)")
    for ax in axes:
        ax.set(xlabel="wall time (s, one core)", xscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=["known", "blush", "class2d"], default=["blush", "class2d"])
    p.add_argument(
        "--model", default="3nbkA", help="blush: validate model, never used for tuning (%(default)s)"
    )
    p.add_argument("--snr", type=float, default=0.02)
    p.add_argument("--n", type=int, default=1000, help="blush: particles (%(default)s)")
    p.add_argument(
        "--relion-budget", type=float, default=1800, help="blush: seconds per RELION arm (%(default)s)"
    )
    p.add_argument("--class2d-models", nargs="+", default=["1osm", "4gcnA", "adk_open"])
    p.add_argument("--class2d-n", type=int, default=300, help="particles per structure (%(default)s)")
    p.add_argument("--class2d-k", type=int, default=6)
    p.add_argument("--class2d-iter", type=int, default=15)
    p.add_argument("--class2d-snr", type=float, default=0.05)
    p.add_argument("--relion-2d-budget", type=float, default=3600, help="seconds (%(default)s)")
    p.add_argument("--cores", default="0", help="taskset list for every program (%(default)s)")
    p.add_argument(
        "--relion-arms",
        nargs="+",
        choices=list(RELION_ARMS),
        help="blush: only advance these RELION arms (to their budget), beside a full run on other cores; "
        "writes no results",
    )
    args = p.parse_args()
    if find_relion() is None:
        print("no RELION to measure: `make peer` (RELION 5.0.1) or `apt-get install relion` (3.1.3)")
        return
    # ours too: pinned, one thread per core (torch's pool was sized at import: set it again, since more
    # threads than cores spin against each other)
    cores = cores_of(args.cores)
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    os.environ.update(thread_env(args.cores))
    command = "benchmarks/relion_peer.py " + " ".join(sys.argv[1:])
    peer = checked_relion(HERE / "work").record(HERE / "work", args.cores)
    keys = ["task", "program", *SCORE_KEYS, "purity", "frc_truth_05_A"]
    pinned_to = f"Every program pinned to cores {args.cores} ({len(cores)} thread(s)), one after the other."
    if "known" in args.parts:
        rows = known_pose(args.cores)
        write_results(
            "relion_peer_known",
            {"command": command, "peer": peer, "rows": rows},
            keys,
            f"`{command}`. {pinned_to}",
        )
    if "blush" in args.parts and args.relion_arms:
        arms_of = relion_runs(args.model, args.snr, args.n, args.relion_budget, args.cores)
        missing = [arm for arm in args.relion_arms if RELION_ARMS[arm] not in arms_of.runs]
        if missing:
            sys.exit(
                f"--relion-arms: RELION {arms_of.version} has no arm {', '.join(missing)} "
                "(--blush is RELION 5's)"
            )
        for arm in args.relion_arms:
            result = arms_of.runs[RELION_ARMS[arm]]()
            print(f"{arms_of.work / RELION_ARMS[arm]}: iteration {result[4]}, {result[3]:.0f} s", flush=True)
    elif "blush" in args.parts:
        curves: dict = {}
        traces: dict = {}
        rows = blush_arms(
            args.model,
            args.snr,
            args.n,
            budget=args.relion_budget,
            cores=args.cores,
            curves=curves,
            traces=traces,
        )
        task = f"3D refine, {args.model} SNR {args.snr}, {args.n} particles"
        name = f"relion_peer_blush_{args.model}"
        write_results(
            name,
            {"command": command, "peer": peer, "rows": [{"task": task, **r} for r in rows], "traces": traces},
            keys,
            f"`{command}`. {pinned_to} RELION arms may have been advanced beside it, each pinned to "
            "cores of its own (`--relion-arms`; each arm's cores are in its timing.json). "
            f"RELION arms stopped at their budget ({args.relion_budget:g} s) "
            f"are measured at their last finished iteration. FSC curves: {name}.png; each arm's "
            f"iterations (wall time, gold standard, angular error): `traces` in {name}.json, "
            f"plotted in {name}_traces.png.",
        )
        plot(curves, HERE / "results" / f"{name}.png", f"{task}: RELION beside blush, FSC of the posed maps")
        plot_traces(traces, HERE / "results" / f"{name}_traces.png", f"{task}: each iteration")
    if "class2d" in args.parts:
        task = f"2D classes, {'+'.join(args.class2d_models)} SNR {args.class2d_snr}"
        rows = class2d_rows(
            args.class2d_models,
            args.class2d_n,
            args.class2d_snr,
            args.class2d_k,
            args.class2d_iter,
            args.relion_2d_budget,
            args.cores,
        )
        write_results(
            "relion_peer_class2d",
            {"command": command, "peer": peer, "rows": [{"task": task, **r} for r in rows]},
            keys,
            f"`{command}`. {pinned_to}",
        )


if __name__ == "__main__":
    main()
