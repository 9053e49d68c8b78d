"""`blush postprocess` and `blush localres` beside relion_postprocess on the same half maps and mask.

Three sets of half maps from three validate-split atomic models (../shared/data/atomic_models):
the model's map plus independent noise per half whose power per shell gives a known FSC
(blush.halfmaps.simulate_half_maps), so the truth's masked FSC is known too (the signal's power
against the masked noise's, shell by shell). One mask per set (ours, automatic), used by both.

Per set: final resolution, B-factor and the corrected FSC curve of each program, twice: with RELION
3.1's fit range (--autob_lowres 10, no high limit: as far as the FSC weighting reaches; ours with
--autob-highres 0) and with the fit ending at the final resolution (ours by default; RELION with
--autob_highres at its own final resolution); and the median local resolution inside the mask
(mask > 0.5) of `relion_postprocess --locres` and `blush localres` with RELION's defaults.
Writes benchmarks/results/postprocess.{json,md}.

    .venv/bin/python benchmarks/postprocess_vs_relion.py
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from blush_scipion.engine.blush.halfmaps import simulate_half_maps
from blush_scipion.engine.cli import main as blush
from blush_scipion.engine.density import density_from_model
from blush_scipion.engine.fourier import (
    rfft3_centered,
    rfft_hermitian_weight_3d,
    rfft_shell_index_3d,
    shell_sum,
)
from blush_scipion.engine.fsc import resolution_at
from blush_scipion.engine.mrc import read_map, write_map
from blush_scipion.engine.postprocess import automatic_mask, last_shell_above
from blush_scipion.engine.star import read_star

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer import find_relion  # noqa: E402

MODELS = HERE.parent.parent / "shared" / "data" / "atomic_models"
SETS = [("1osm", 5.0, 1), ("2qdlA", 6.0, 2), ("3nbkA", 7.5, 3)]  # model, half maps' unmasked resolution, seed
BOX, APIX = 80, 1.5


def shell_power(volume: torch.Tensor) -> torch.Tensor:
    n = volume.shape[-1]
    shells = rfft_shell_index_3d(n)
    w = rfft_hermitian_weight_3d(n).double().expand_as(shells)
    return shell_sum(w * rfft3_centered(volume.double()).abs() ** 2, shells, n // 2 + 1)


def make_set(work: Path, model: str, resolution: float, seed: int) -> dict:
    """Half maps and mask on disk; the truth's masked FSC and its 0.143 resolution (RELION's shell rule)."""
    truth = density_from_model(MODELS / f"{model}.pdb.gz", BOX, APIX, bfactor=50)
    h1, h2 = simulate_half_maps(truth, APIX, resolution, torch.Generator().manual_seed(seed))
    mask, threshold = automatic_mask(h1, h2, APIX)
    for name, volume in [("half1.mrc", h1), ("half2.mrc", h2), ("mask.mrc", mask)]:
        write_map(work / name, volume, APIX)
    signal = shell_power(truth * mask)
    noise = (shell_power((h1 - truth) * mask) + shell_power((h2 - truth) * mask)) / 2
    expected = (signal / (signal + noise)).float()
    return {
        "expected_fsc": expected,
        "truth_resolution": BOX * APIX / int(last_shell_above(expected)),
        "truth_resolution_interpolated": resolution_at(expected, 0.143, BOX, APIX),
        "mask_threshold": threshold,
    }


def run_ours(command: str, work: Path, *options) -> None:
    """`blush COMMAND` (postprocess, localres) on the set's half maps and mask, then `options`."""
    halves = ["--half1", str(work / "half1.mrc"), "--half2", str(work / "half2.mrc")]
    assert blush([command, *halves, "--mask", str(work / "mask.mrc"), *options]) == 0


def run_relion(program: str, work: Path, *options) -> None:
    """relion_postprocess on the set's half maps and mask, then `options`."""
    halves = ["--i", "half1.mrc", "--i2", "half2.mrc", "--mask", "mask.mrc", "--angpix", str(APIX)]
    subprocess.run([program, *halves, *options], cwd=work, check=True, capture_output=True)


def ours(work: Path, name: str, extra: list) -> dict:
    t0 = time.perf_counter()
    run_ours("postprocess", work, "--out", str(work / name), *extra)
    return read_outputs(work / name / "postprocess.star", time.perf_counter() - t0)


def relion(program: str, work: Path, name: str, extra: list) -> dict:
    (work / name).mkdir(exist_ok=True)
    t0 = time.perf_counter()
    run_relion(program, work, "--auto_bfac", "--autob_lowres", "10", *extra, "--o", f"{name}/postprocess")
    return read_outputs(work / name / "postprocess.star", time.perf_counter() - t0)


def read_outputs(star: Path, seconds: float) -> dict:
    tables = read_star(star)
    general = tables["general"].iloc[0]
    return {
        "resolution_A": float(general["rlnFinalResolution"]),
        "bfactor": float(general["rlnBfactorUsedForSharpening"]),
        "fsc_corrected": tables["fsc"]["rlnFourierShellCorrelationCorrected"].to_numpy(float),
        "wall_s": round(seconds, 2),
    }


def local_resolutions(program: str, work: Path) -> dict:
    mask = read_map(work / "mask.mrc")[0] > 0.5
    t0 = time.perf_counter()
    (work / "locres_relion").mkdir(exist_ok=True)
    run_relion(program, work, "--locres", "--o", "locres_relion/relion")
    relion_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_ours("localres", work, "--out", str(work / "locres_blush.mrc"))
    ours_s = time.perf_counter() - t0
    theirs, mine = (
        read_map(work / "locres_relion" / "relion_locres.mrc")[0],
        read_map(work / "locres_blush.mrc")[0],
    )
    return {
        "relion_median_A": float(theirs[mask].median()),
        "blush_median_A": float(mine[mask].median()),
        "relion_wall_s": round(relion_s, 2),
        "blush_wall_s": round(ours_s, 2),
        "voxelwise_median_abs_diff_A": float((theirs - mine)[mask].abs().median()),
    }


def main():
    found = find_relion()
    if found is None:
        sys.exit("RELION not found (apt-get install relion, or RELION_BIN)")
    program = found.program("relion_postprocess")
    rows = []
    for model, resolution, seed in SETS:
        work = HERE / "work" / "postprocess" / model
        work.mkdir(parents=True, exist_ok=True)
        made = make_set(work, model, resolution, seed)
        relion_default = relion(program, work, "relion_default", [])
        relion_to_final = relion(
            program, work, "relion_to_final", ["--autob_highres", str(relion_default["resolution_A"])]
        )
        ours_relion_range = ours(work, "blush_relion_range", ["--autob-highres", "0"])
        ours_default = ours(work, "blush_default", [])
        curve_diff = float(np.abs(ours_default["fsc_corrected"] - relion_default["fsc_corrected"])[1:].max())
        truth = made["expected_fsc"].numpy()
        row = {
            "model": model,
            "box": BOX,
            "pixel_size": APIX,
            "half_map_resolution_A": resolution,
            "truth_resolution_A": round(made["truth_resolution"], 3),
            "relion": {
                "resolution_A": relion_default["resolution_A"],
                "bfactor_to_nyquist": relion_default["bfactor"],
                "bfactor_to_final": relion_to_final["bfactor"],
                "wall_s": relion_default["wall_s"],
                "fsc_max_diff_vs_truth": float(np.abs(relion_default["fsc_corrected"] - truth)[1:].max()),
            },
            "blush": {
                "resolution_A": ours_default["resolution_A"],
                "bfactor_to_nyquist": ours_relion_range["bfactor"],
                "bfactor_to_final": ours_default["bfactor"],
                "wall_s": ours_default["wall_s"],
                "fsc_max_diff_vs_truth": float(np.abs(ours_default["fsc_corrected"] - truth)[1:].max()),
            },
            "fsc_corrected_max_diff_blush_vs_relion": curve_diff,
            "locres": local_resolutions(program, work),
        }
        rows.append(row)
        print(json.dumps(row))
    record = {"relion": {"bin": str(found.bin), "version": found.version}, "sets": rows}
    out = HERE / "results"
    (out / "postprocess.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# blush postprocess / localres beside relion_postprocess {found.version}",
        "",
        f"Half maps = a validate model's map ({BOX} px, {APIX} A) + independent noise of known FSC "
        "per shell; "
        "one automatic mask (ours) used by both. Truth: the signal's power against the masked noise's. "
        "B-factors fitted from 10 A to Nyquist (RELION 3.1's default range) and to the final resolution.",
        "",
        "| model | truth res (A) | RELION res | blush res | RELION B (to Nyquist / to final) | "
        "blush B (to Nyquist / to final) | max dFSC blush-RELION | max dFSC vs truth (RELION / blush) | "
        "median locres in mask (RELION / blush) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['truth_resolution_A']:.2f} | {r['relion']['resolution_A']:.2f} | "
            f"{r['blush']['resolution_A']:.2f} | {r['relion']['bfactor_to_nyquist']:.1f} / "
            f"{r['relion']['bfactor_to_final']:.1f} | {r['blush']['bfactor_to_nyquist']:.1f} / "
            f"{r['blush']['bfactor_to_final']:.1f} | {r['fsc_corrected_max_diff_blush_vs_relion']:.3f} | "
            f"{r['relion']['fsc_max_diff_vs_truth']:.3f} / {r['blush']['fsc_max_diff_vs_truth']:.3f} | "
            f"{r['locres']['relion_median_A']:.2f} / {r['locres']['blush_median_A']:.2f} |"
        )
    (out / "postprocess.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
