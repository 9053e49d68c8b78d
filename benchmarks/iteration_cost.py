"""What one refine3d iteration costs from a run's own saved state: its sampling, noise model,
half maps and poses after iteration IT (run_itNNN_*), on the first N particles.

Where benchmarks/scaling.py times synthetic points with true poses (sharp posteriors), this times the
state a real refinement reached, with its broad posteriors and fine offsets, so that a change to the
E-step can be compared on it before and after (run it at both commits). Prints one JSON line.

    .venv/bin/python benchmarks/iteration_cost.py --run benchmarks/work/real_1osm_128px_n4000/auto-sampling \
        --iteration 16 [--n 128] [--device cpu]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.refine3d import RefineSettings, RefineState, run_iteration
from blush_scipion.engine.runtime import prepare_process


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a refine3d run folder")
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--n", type=int, default=128, help="particles (the first N of the run's data)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, help="E-step images per batch (default: the run's)")
    args = p.parse_args()
    prepare_process()  # as the `blush` command runs
    prefix = args.run / f"run_it{args.iteration:03d}_"
    state = RefineState.from_json(json.loads(Path(f"{prefix}optimiser.json").read_text())["state"])
    saved = json.loads((args.run / "run.json").read_text())["settings"]
    batch = {"batch_size": args.batch_size} if args.batch_size else {}
    settings = RefineSettings(**{**saved, "device": args.device, **batch})
    particles = Particles.read(f"{prefix}data.star").subset(np.arange(args.n))
    references = [read_map(f"{prefix}half{h}_class001.mrc")[0] for h in (1, 2)]
    t0 = time.perf_counter()
    result = run_iteration(
        particles,
        references,
        state,
        settings,
        np.arange(args.n) % 2 + 1,
        particles.rotations(),
        particles.origins(),
        progress=False,
    )
    print(
        json.dumps(
            {
                "run": str(args.run),
                "iteration": args.iteration,
                "particles": args.n,
                "healpix_order": state.order,
                "r_current": state.r_current,
                "seconds": round(time.perf_counter() - t0, 2),
                "expectation_seconds": round(result.expectation_seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
