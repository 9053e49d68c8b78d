"""3D auto-refinement: `blush refine3d` beside `relion_refine --auto_refine` on the same files.

For each model: 2,000 particles of 64 px at 2 A/px, SNR 0.1 (blush simulate), both programs
start from the truth low-passed to 40 A (--ini_high 40). Reported: wall time, iterations,
FSC-vs-truth 0.5 (the map docked onto the truth first, as a model is fitted into a map; the
undocked figure beside it), gold-standard 0.143, median angular error (and, for a homodimer, the error up
to its 2-fold), and the E-step throughput in GFLOP/s beside this machine's float32 GEMM peak.
RELION runs with the sampling of ../shared/SCIPION.md when --relion is given and it is installed.
Where RELION is stopped by its budget (--relion-hours H, or --relion-budget X times our wall time),
it is also read at our wall time, and ours at its last iteration. Both programs are pinned to
--cores, one thread per core, one after the other. Writes benchmarks/results/NAME.{json,md}.

    .venv/bin/python benchmarks/refine3d_vs_relion.py --models adk_closed --relion --relion-hours 1.8 \
        --cores 0 --name refine3d_adk_closed
"""

import argparse
import fcntl
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gemmi
import numpy as np
import torch

from blush_scipion.engine.expectation import log_likelihoods
from blush_scipion.engine.fit import fit_rigid, transform_map
from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.reconstruct import reconstruct_particles
from blush_scipion.engine.rotation import angular_distance, symmetric_distance
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer import auto_refine, checked_relion, find_relion, pinned, thread_env, unpinned  # noqa: E402

MODELS = HERE.parent.parent / "shared" / "data" / "atomic_models"
BLUSH = [sys.executable, "-m", "blush_scipion.engine.cli"]  # the engine's command line, as a user runs it
# a refinement's columns (evaluate's, less the undocked FSC) in the results tables, in their order
SCORE_KEYS = [
    "wall_s",
    "iterations",
    "fsc_truth_05_A",
    "posed_fsc_truth_05_A",
    "gold_standard_0143_A",
    "median_angular_error_deg",
]


def refine3d_args(out: str, *options) -> list:
    """`refine3d` of work/particles.star from work/truth.mrc into work/OUT, then `options`."""
    return ["refine3d", "--particles", "particles.star", "--ref", "truth.mrc", "--out", out, *options]


def blush(*args, cwd: Path) -> float:
    """`blush ARGS` in `cwd`, its output dropped (raises where it fails); returns its wall time."""
    t0 = time.perf_counter()
    subprocess.run([*BLUSH, *map(str, args)], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def two_fold(model: Path):
    """The rotation (3, 3) relating the first two chains of a homodimer, or None."""
    st = gemmi.read_structure(str(model))
    st.setup_entities()
    chains = [ch for ch in st[0] if len(ch.get_polymer()) > 20]
    if len(chains) < 2:
        return None
    a, b = chains[0].get_polymer(), chains[1].get_polymer()
    sup = gemmi.calculate_superposition(a, b, a.check_polymer_type(), gemmi.SupSelect.CaP)
    return torch.tensor(sup.transform.mat.tolist(), dtype=torch.float32) if sup.rmsd < 2.0 else None


def fsc_to_truth(volume: torch.Tensor, work: Path, dock: bool = True) -> tuple[torch.Tensor, float]:
    """FSC curve of `volume` against work/truth.mrc, and its 0.5 resolution (A). With `dock` the
    map is first fitted onto the truth (engine/fit.py): a refinement's frame drifts by a few
    degrees from its 40 A start, which the gold standard cannot see and the truth should not punish."""
    truth, apix = read_map(work / "truth.mrc")
    if dock:
        rotation, shift, _ = fit_rigid(volume, truth, apix)
        volume = transform_map(volume, rotation, shift)
    fsc = fourier_shell_correlation(volume, truth)
    return fsc, round(resolution_at(fsc, 0.5, truth.shape[-1], apix), 2)


@functools.cache
def posed(work: Path, run_data: Path) -> tuple[torch.Tensor, float]:
    """All particles of `run_data` reconstructed at its poses: FSC to the truth and its 0.5
    resolution. Scores a run stopped mid-way (its half-1 map has half the data) like a finished one."""
    return fsc_to_truth(reconstruct_particles(Particles.read(run_data), progress=False).volume, work)


def estimated_and_true(work: Path, run_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotations (n, 3, 3) of `run_data`'s particles and their true ones (work/truth.star)."""
    est_set, true_set = Particles.read(run_data), Particles.read(work / "truth.star")

    # RELION reorders particles: pair them by image (names may be relative to different folders)
    def images(p):
        paths, index = p.image_locations(np.arange(len(p)))
        return [f"{i}@{os.path.realpath(path)}" for path, i in zip(paths, index)]

    position = {name: i for i, name in enumerate(images(true_set))}
    order = np.array([position[name] for name in images(est_set)])
    return est_set.rotations(), true_set.rotations(order)


def evaluate(
    work: Path, run_data: Path, final_map: Path, gold: float, seconds: float, iterations: int, sym_op
):
    est, true = estimated_and_true(work, run_data)
    err = angular_distance(est, true)
    volume = read_map(final_map)[0]
    row = {
        "wall_s": round(seconds, 1),
        "iterations": iterations,
        "fsc_truth_05_A": fsc_to_truth(volume, work)[1],
        "undocked_fsc_truth_05_A": fsc_to_truth(volume, work, dock=False)[1],
        "posed_fsc_truth_05_A": posed(work, run_data)[1],
        "gold_standard_0143_A": round(gold, 2),
        "median_angular_error_deg": round(float(err.median()), 2),
        "within_20deg": round(float((err < 20).float().mean()), 3),
    }
    if sym_op is not None:
        err_sym = symmetric_distance(est, true, torch.stack([torch.eye(3), sym_op]))
        row["median_error_up_to_2fold_deg"] = round(float(err_sym.median()), 2)
        row["fraction_flipped"] = round(float((err_sym < err - 1).float().mean()), 3)
    return row


def estep_gflops(device="cpu"):
    """Throughput of the E-step GEMMs on a realistic batch, and the float32 GEMM peak."""
    b, t, p, r = 128, 21, 1600, 4608
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, t, p, dtype=torch.complex64, generator=g)
    ctf, w = torch.rand(b, p, generator=g), torch.rand(p, generator=g)
    proj = torch.randn(r, p, dtype=torch.complex64, generator=g)
    log_likelihoods(x[:8], ctf[:8], w, proj)
    t0 = time.perf_counter()
    log_likelihoods(x, ctf, w, proj)
    dt = time.perf_counter() - t0
    flops = 2 * (b * t) * (2 * p) * r + 2 * b * p * r
    a = torch.randn(2048, 2048)
    a @ a
    t0 = time.perf_counter()
    for _ in range(3):
        a @ a
    peak = 3 * 2 * 2048**3 / (time.perf_counter() - t0)
    return round(flops / dt / 1e9, 1), round(peak / 1e9, 1)


def run_blush(work: Path, device: str, cores: str | None = None):
    """`blush refine3d` on work/particles.star from the truth at 40 A, pinned to `cores` with one
    thread per core (a finished run is reused)."""
    out = work / "blush"
    env = thread_env(cores) if cores else None
    cmd = pinned([*BLUSH, *refine3d_args("blush", "--device", device)], cores)
    seconds = run_budgeted(cmd, work, out, env=env)
    s = json.loads((out / "summary.json").read_text())
    return out / "run_data.star", out / "run_class001.mrc", s["resolution_angstrom"], seconds, s["iterations"]


def ours_at(out: Path, iteration: int):
    """Our run in `out` (finished or not) read at an earlier iteration (its half-1 map, as RELION's
    is read when stopped), to set beside a RELION run stopped there: run_blush's tuple; the time is
    that of its iterations up to this one, from that iteration's optimiser file."""
    state = json.loads((out / f"run_it{iteration:03d}_optimiser.json").read_text())["state"]
    history = state["history"][:iteration]
    return (
        out / f"run_it{iteration:03d}_data.star",
        out / f"run_it{iteration:03d}_half1_class001.mrc",
        history[-1]["resolution"],
        sum(h["seconds"] for h in history),
        iteration,
    )


def run_budgeted(
    cmd: list,
    work: Path,
    out: Path,
    budget_s: float | None = None,
    env: dict | None = None,
    resume: Callable[[str], list] | None = None,
) -> float:
    """Run `cmd` in `work` (its log in out/log.txt), stopped after `budget_s` seconds if given;
    returns its wall time. A run of the same command in `out` that finished, or was stopped by the
    same budget, is reused. One that was killed (a session's end) or stopped by a smaller budget
    goes on with `resume(NNN)`, the command that continues from its last finished iteration NNN,
    with what is left of the budget: its wall time counts up to that iteration (from started.json
    and the iteration's optimiser file), not the work lost after it nor the time between the
    sessions it ran in. The cores it is pinned to are not part of its identity: an arm may go on,
    or run beside another, on any core (each command, with its core, is kept in timing.json). A run
    that another process is advancing in `out` is waited for, then taken as it is."""
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return advance(cmd, work, out, budget_s, env, resume)


def advance(
    cmd: list, work: Path, out: Path, budget_s: float | None, env: dict | None, resume: Callable | None
) -> float:
    """run_budgeted's work, with `out` held by this process."""
    timing, started = out / "timing.json", out / "started.json"

    def same(run: list) -> bool:  # a recorded [command, budget]
        return unpinned(run[0]) == unpinned(cmd)

    if timing.exists():
        last = json.loads(timing.read_text())
        if same(last["run"]) and (last["run"][1] == budget_s or last.get("finished")):
            return last["seconds"]
    done = sorted(out.glob("run_it*_optimiser.star"))
    record = json.loads(started.read_text()) if started.exists() else {}
    if resume and done and "run" in record and same(record["run"]):
        # the time up to the last finished iteration, summed over the sessions it ran in (not the gaps)
        spans = segments(record)
        start, before = spans[-1]
        before += max(0.0, done[-1].stat().st_mtime - start)
        spans.append([time.time(), before])
        started.write_text(
            json.dumps({"run": [cmd, budget_s], "started": record["started"], "segments": spans})
        )
        run, mode = resume(done[-1].name[6:9]), "a"
    else:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        started.write_text(json.dumps({"run": [cmd, budget_s], "started": time.time()}))
        before, run, mode = 0.0, cmd, "w"
    left = None if budget_s is None else budget_s - before
    finished = False
    t0 = time.perf_counter()
    if left is None or left > 0:
        with open(out / "log.txt", mode) as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                run, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        # a stopped benchmark stops its run too (it runs in a session of its own, which a signal to
        # this process's group would not reach): left running, it would share a core unrecorded
        stop = signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped while running {out}"))
        try:
            failed = proc.wait(timeout=left)
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            raise
        finally:
            signal.signal(signal.SIGTERM, stop)
        if finished and failed:
            raise RuntimeError(f"{run[0]} failed: see {out / 'log.txt'}")
    seconds = before + time.perf_counter() - t0
    timing.write_text(json.dumps({"run": [cmd, budget_s], "seconds": seconds, "finished": finished}))
    return seconds


def last_iteration(out: Path, *files: str) -> str:
    """NNN of the last iteration in `out` that RELION finished writing: run_itNNN_data.star and
    run_itNNN_<file> for each of `files` (a run stopped mid-write leaves some missing)."""
    return [
        f.name[6:9]
        for f in sorted(out.glob("run_it*_data.star"))
        if all((out / f"run_it{f.name[6:9]}_{x}").exists() for x in files)
    ][-1]


# what relion_refine --continue takes from its command line, not from the optimiser file it continues
RELION_CONTINUE_VALUES = ("--j", "--pool", "--auto_iter_max")
RELION_CONTINUE_FLAGS = (
    "--dont_combine_weights_via_disc",
    "--blush",
    "--blush_skip_spectral_trailing",
    "--external_reconstruct",
)


def run_relion(
    work: Path,
    diameter: float,
    iter_max: int | None = None,
    budget_s: float | None = None,
    name: str = "relion",
    extra: tuple = (),
    env: dict | None = None,
    oversampling: int = 1,
    cores: str | None = "0",
):
    """relion_refine --auto_refine on the same files, set up by peer.py (its CTF check passed,
    `--ctf_corrected_ref` where the version needs it; `extra` arguments added, `env` for its
    environment), pinned to `cores`; stopped after `budget_s` seconds if given, then measured at its
    last finished iteration (its half-1 map). A finished run with the same command is reused."""
    relion = checked_relion(work.parent)
    out = work / name
    cmd = pinned(
        auto_refine(
            relion,
            particles="particles.star",
            ref="truth.mrc",
            out=name,
            diameter=diameter,
            oversampling=oversampling,
            extra=tuple(extra),
        ),
        cores,
    )
    if iter_max:
        cmd += ["--auto_iter_max", str(iter_max)]

    def resume(it: str) -> list:
        """RELION's own --continue from iteration `it`'s optimiser: the same launcher (cores, MPI
        ranks) and the options its parseContinue reads from the command line again, as its GUI's
        continued job passes them; left out, a continued run would lose its Blush, its external
        reconstruction (both default to off there) or its iteration cap."""
        kept = [x for f in RELION_CONTINUE_VALUES if f in cmd for x in cmd[cmd.index(f) : cmd.index(f) + 2]]
        kept += [f for f in RELION_CONTINUE_FLAGS if f in cmd]
        continued = ["--o", f"{name}/run", "--continue", f"{name}/run_it{it}_optimiser.star"]
        return cmd[: cmd.index("--o")] + continued + kept

    seconds = run_budgeted(cmd, work, out, budget_s, env, resume=resume)
    if (out / "run_data.star").exists():  # converged: its final (joined) map
        model = (out / "run_model.star").read_text()
        return (
            out / "run_data.star",
            out / "run_class001.mrc",
            current_resolution(model),
            seconds,
            int(last_iteration(out, "half1_model.star")),
        )
    return relion_at(out, int(last_iteration(out, "half1_model.star", "half1_class001.mrc")), seconds)


def current_resolution(model_star: str) -> float:
    return float(model_star.split("_rlnCurrentResolution")[1].split()[0])  # A since RELION 3.1


def relion_at(out: Path, iteration: int, seconds: float):
    """A RELION auto-refine read at `iteration` (its half-1 map and gold standard), as run_relion
    returns it, with `seconds` as its wall time."""
    model = (out / f"run_it{iteration:03d}_half1_model.star").read_text()
    return (
        out / f"run_it{iteration:03d}_data.star",
        out / f"run_it{iteration:03d}_half1_class001.mrc",
        current_resolution(model),
        seconds,
        iteration,
    )


def segments(record: dict) -> list[list[float]]:
    """The sessions a run (its started.json) ran in, as [start (epoch s), its wall time before
    then]. A record from before they were kept (`before`, `segment_started`) holds only the first
    and the last."""
    if "segments" in record:
        return list(record["segments"])
    last = [[record["segment_started"], record["before"]]] if "before" in record else []
    return [[record["started"], 0.0], *last]


def iteration_seconds(out: Path) -> dict[int, float]:
    """When each of a RELION run's iterations finished, in seconds of its own wall time (summed over
    the sessions it ran in, not the gaps): its optimiser file is written last. relion_refine
    --continue rewrites the iteration it continues from first, so in a later session the lowest
    iteration written is that one, and it finished when the session before it stopped counting."""
    spans = segments(json.loads((out / "started.json").read_text()))
    files = [(int(f.name[6:9]), f.stat().st_mtime) for f in sorted(out.glob("run_it*_optimiser.star"))]
    times: dict[int, float] = {}
    for k, (start, before) in enumerate(spans):
        end = spans[k + 1][0] if k + 1 < len(spans) else float("inf")
        written = [(it, mtime) for it, mtime in files if start <= mtime < end]
        for n, (it, mtime) in enumerate(written):
            times[it] = before if k and n == 0 else before + mtime - start
    return dict(sorted(times.items()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["adk_closed", "19hc"])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--relion", action="store_true", help="also run relion_refine (hours on 2 cores)")
    p.add_argument("--relion-iter-max", type=int, default=None)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--relion-budget",
        type=float,
        default=None,
        metavar="X",
        help="stop relion_refine after X times our wall time and measure its last finished iteration",
    )
    budget.add_argument(
        "--relion-hours", type=float, default=None, metavar="H", help="stop relion_refine after H hours"
    )
    p.add_argument("--cores", default="0", help="taskset list for both programs, run one after the other")
    p.add_argument("--name", default="refine3d", help="results file name (benchmarks/results/NAME.{json,md})")
    args = p.parse_args()
    results = {"estep_gflops": None, "gemm_peak_gflops": None, "rows": []}
    results["estep_gflops"], results["gemm_peak_gflops"] = estep_gflops(args.device)
    for name in args.models:
        model = MODELS / f"{name}.pdb.gz"
        work = HERE / "work" / f"refine_{name}"
        if not (work / "summary.json").exists():
            simulate_from_model(
                model, SimulationSettings(n_particles=args.n, box=64, pixel_size=2.0, snr=0.1, seed=5), work
            )
        sym_op = two_fold(model)
        ours = {
            "model": name,
            "program": "blush refine3d",
            **evaluate(work, *run_blush(work, args.device, args.cores), sym_op),
        }
        results["rows"].append(ours)
        print(ours, flush=True)
        if args.relion and find_relion():
            relion = checked_relion(HERE / "work")
            results["peer"] = relion.record(HERE / "work", args.cores)
            for row in relion_rows(work, relion.version, ours, sym_op, args):
                results["rows"].append({"model": name, **row})
                print(results["rows"][-1], flush=True)
    keys = ["model", "program", *SCORE_KEYS, "median_error_up_to_2fold_deg"]
    write_results(
        args.name,
        results,
        keys,
        f"E-step GEMMs: {results['estep_gflops']} GFLOP/s; "
        f"float32 GEMM peak {results['gemm_peak_gflops']} GFLOP/s",
    )


def relion_rows(work: Path, version: str, ours: dict, sym_op, args) -> list[dict]:
    """RELION's rows beside `ours`: its run (to convergence or stopped by the budget); where it
    stopped, also RELION at our wall time and ours at RELION's last iteration."""
    budget = args.relion_hours * 3600 if args.relion_hours else None
    if args.relion_budget:
        budget = args.relion_budget * ours["wall_s"]
    run = run_relion(work, 0.9 * 64 * 2.0, args.relion_iter_max, budget, cores=args.cores)
    stopped = not (work / "relion" / "run_data.star").exists()
    label = f"relion_refine {version}"
    rows = [
        {
            "program": label + (f" (stopped after {budget / 3600:.2f} h)" if stopped else ""),
            **evaluate(work, *run, sym_op),
        }
    ]
    if stopped:
        rows += [
            {"program": program, **evaluate(work, *found, sym_op)}
            for program, found in paired_reads(work / "relion", label, ours, work / "blush", run)
        ]
    return rows


def ours_by(out: Path, seconds: float) -> int:
    """How many iterations our run in `out` (finished or not) had finished `seconds` into its run."""
    done = sorted(out.glob("run_it*_optimiser.json"))
    if not done:
        return 0
    history = json.loads(done[-1].read_text())["state"]["history"]
    return sum(1 for t in itertools.accumulate(h["seconds"] for h in history) if t <= seconds)


def paired_reads(relion_out: Path, label: str, ours: dict | None, ours_out: Path, relion_run: tuple) -> list:
    """Beside a RELION run (run_relion's tuple; finished or stopped by its budget), each program read
    where the other stopped: RELION at our wall time (its last iteration finished by then; where our
    run, `ours`, finished) and at our last iteration (where it went further); ours at RELION's wall
    time (where ours had not finished by then) and at RELION's last iteration (where ours got there
    and went further), as (label, run_relion's tuple) pairs."""
    relion_seconds, iterations = relion_run[3], relion_run[4]
    pairs = []
    times = iteration_seconds(relion_out)
    by_ours = [it for it, t in times.items() if ours and it > 0 and t <= ours["wall_s"]]
    if by_ours and by_ours[-1] < iterations:
        pairs.append((f"{label} at our wall time", relion_at(relion_out, by_ours[-1], times[by_ours[-1]])))
    if ours and ours["iterations"] < iterations and ours["iterations"] in times:
        k = ours["iterations"]
        pairs.append((f"{label} at iteration {k}", relion_at(relion_out, k, times[k])))
    ours_then = ours_by(ours_out, relion_seconds)
    if ours_then and (ours is None or ours_then < ours["iterations"]):
        pairs.append(
            (f"blush refine3d at RELION's wall time (iteration {ours_then})", ours_at(ours_out, ours_then))
        )
    reached = (ours_out / f"run_it{iterations:03d}_optimiser.json").exists()
    if iterations > 0 and reached and (ours is None or iterations < ours["iterations"]):
        pairs.append((f"blush refine3d at iteration {iterations}", ours_at(ours_out, iterations)))
    return pairs


def trace(work: Path, out: Path) -> list[dict]:
    """Each finished iteration of a run in `work/out`, ours or RELION's: its wall time, gold standard
    and the median angular error of its poses (and the fraction within 20 deg)."""
    if (out / "run.json").exists():  # ours
        its = sorted(int(f.name[6:9]) for f in out.glob("run_it*_optimiser.json"))
        reads = [ours_at(out, it) for it in its]
    else:
        times = iteration_seconds(out)
        complete = int(last_iteration(out, "half1_model.star"))
        reads = [relion_at(out, it, t) for it, t in times.items() if 0 < it <= complete]
    rows = []
    for run_data, _, gold, seconds, it in reads:
        err = angular_distance(*estimated_and_true(work, run_data))
        rows.append(
            {
                "iteration": it,
                "wall_s": round(seconds, 1),
                "gold_standard_0143_A": round(gold, 2),
                "median_angular_error_deg": round(float(err.median()), 2),
                "within_20deg": round(float((err < 20).float().mean()), 3),
            }
        )
    return rows


def write_results(name: str, results: dict, keys: list, footer: str) -> None:
    """benchmarks/results/NAME.json (all of `results`) and NAME.md (its rows as a table, then `footer`)."""
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in results["rows"]]
    lines.append(f"\n{footer}")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
