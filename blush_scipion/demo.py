"""`make demo`: the main job end to end in a real Scipion project, on embedded data, in minutes.

Simulates particles from the shipped atomic model (adenylate kinase, 23.5 kDa), then in a
Scipion project: imports them from their STAR file, imports the start map (the truth low-passed
to 40 A by the refinement itself), runs gold-standard 3D auto-refine with Blush and with the
standard prior on the same particles, FSC validation of the Blush run's half maps, and writes
the viewers' plots as PNGs. Prints a table against the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from .headless import configure_scipion

MODEL = Path(__file__).parent / "data" / "adk_closed.pdb.gz"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--snr", type=float, default=0.2)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    configure_scipion(out / "scipion")  # before pyworkflow is imported

    from pwem.protocols import ProtImportVolumes
    from pyworkflow.project import Manager

    from .engine.fsc import fourier_shell_correlation, resolution_at
    from .engine.mrc import read_map
    from .engine.particles import Particles
    from .engine.reconstruct import reconstruct_particles
    from .engine.simulate import SimulationSettings, simulate_from_model
    from .protocols import ProtBlushImportParticles, ProtBlushRefine3D, ProtBlushValidateFsc
    from .viewers import BlushRefine3DViewer

    box, apix = 48, 2.5
    sim = out / "simulated"
    print(
        f"simulating {args.n} particles of {MODEL.name} ({box} px, {apix} A/px, SNR {args.snr}) ...",
        flush=True,
    )
    simulate_from_model(
        MODEL, SimulationSettings(n_particles=args.n, box=box, pixel_size=apix, snr=args.snr, seed=1), sim
    )
    truth, _ = read_map(sim / "truth.mrc")

    def vs_truth(volume):
        return resolution_at(fourier_shell_correlation(volume, truth), 0.5, box, apix)

    known = reconstruct_particles(Particles.read(sim / "truth.star"))

    project = Manager().createProject("BlushDemo")
    os.chdir(project.getPath())  # pyworkflow resolves a project's files from its folder

    def run(prot_class, **params):
        prot = project.newProtocol(prot_class, **params)
        project.launchProtocol(prot, wait=True)
        if prot.isFailed():
            raise SystemExit(f"{prot.getRunName()} failed; see {prot.getLogPaths()[0]}")
        return prot

    print("Scipion project:", project.getPath(), flush=True)
    particles = run(ProtBlushImportParticles, starFile=str(sim / "particles.star")).outputParticles
    start = run(ProtImportVolumes, filesPath=str(sim / "truth.mrc"), samplingRate=apix).outputVolume
    runs = {}
    for label, blush in (("3D auto-refine, Blush", True), ("3D auto-refine, standard prior", False)):
        t0 = time.time()
        runs[label] = (
            run(
                ProtBlushRefine3D,
                inputParticles=particles,
                referenceVolume=start,
                maskDiameterA=100,
                useBlush=blush,
            ),
            time.time() - t0,
        )
    refine = runs["3D auto-refine, Blush"][0]
    halves = [
        run(ProtImportVolumes, filesPath=p, samplingRate=apix).outputVolume
        for p in refine.outputVolume.getHalfMaps().split(",")
    ]
    validate = run(ProtBlushValidateFsc, halfMap1=halves[0], halfMap2=halves[1])
    summary = json.loads(Path(refine._getExtraPath("summary.json")).read_text())
    for name in ("fsc.png", "progress.png", "slices.png"):
        shutil.copy(refine._getExtraPath(name), out / name)
    # the Scipion viewer, headless: Blush beside the standard prior on the same particles
    BlushRefine3DViewer(project=project)._visualize(refine)[0].savefig(str(out / "blush_vs_standard.png"))

    rows = [
        (
            "known poses (reconstruct)",
            "-",
            f"{resolution_at(known.fsc, 0.143, box, apix):.2f}",
            f"{vs_truth(known.volume):.2f}",
        )
    ]
    for label, (prot, seconds) in runs.items():
        s = json.loads(Path(prot._getExtraPath("summary.json")).read_text())
        rows.append(
            (
                label,
                f"{seconds:.0f}",
                f"{s['resolution_angstrom']:.2f}",
                f"{vs_truth(read_map(prot.outputVolume.getFileName())[0]):.2f}",
            )
        )
    print(f"\n{'job':<32} {'wall s':>7} {'gold-standard 0.143 (A)':>24} {'vs truth 0.5 (A)':>17}")
    for r in rows:
        print(f"{r[0]:<32} {r[1]:>7} {r[2]:>24} {r[3]:>17}")
    print(
        f"\nFSC validation of the Blush run: {validate.outputFSC.calculateResolution(0.143)} A at 0.143 "
        f"(Nyquist {2 * apix:.1f} A); {summary['iterations']} iterations"
    )
    print(f"plots: {out}/fsc.png, progress.png, slices.png, blush_vs_standard.png")
    (out / "demo.json").write_text(json.dumps({"rows": rows, "refine": summary}, indent=2, default=str))


if __name__ == "__main__":
    main()
