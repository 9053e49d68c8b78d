"""The relion_refine run behind a hand-over: pixel size and particle diameter from its own files, so
that RELION 3.1/4 run `RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE="blush relion-hook --blush"` as is."""

import os
import sys
from pathlib import Path

import torch

from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.relion_hook import read_hand_over

from .test_relion_hook import (
    APIX,
    BOX,
    TWO_ITERATIONS,
    blob,
    blush,
    needs_relion,
    particles,  # noqa: F401 (the fixture)
    relion_refine,
    write_hand_over,
)


def write_run_files(folder: Path, iteration: int, pixel_size: float, diameter: float, root="run") -> None:
    """An iteration's optimiser STAR and the model STAR it names, as relion_refine writes them: the
    model named relative to RELION's working directory (here a folder that does not exist)."""
    stem = f"{root}_it{iteration:03d}"
    (folder / f"{stem}_optimiser.star").write_text(
        f"data_optimiser_general\n\n_rlnOutputRootName Refine3D/job012/{root}\n"
        f"_rlnModelStarFile Refine3D/job012/{stem}_half1_model.star\n_rlnParticleDiameter {diameter}\n"
    )
    (folder / f"{stem}_half1_model.star").write_text(
        f"data_model_general\n\n_rlnReferenceDimensionality 3\n_rlnPixelSize {pixel_size}\n"
    )


def test_a_hand_over_takes_pixel_size_and_diameter_from_the_iteration_before_it(tmp_path):
    star = write_hand_over(tmp_path, blob(), stem="run_it002_half1_class001")  # RELION 3.1: no pixel size
    assert read_hand_over(star).pixel_size is None
    for iteration, pixel_size in ((0, 2.0), (1, 2.5), (2, 9.0)):  # iteration 2's files come after its M-step
        write_run_files(tmp_path, iteration, pixel_size, diameter=40 * pixel_size)
    write_run_files(tmp_path, 1, 7.0, diameter=70, root="other")  # another run in the same folder
    h = read_hand_over(star)
    assert (h.pixel_size, h.diameter) == (2.5, 100.0)


def test_an_unreadable_run_file_is_named_in_one_line(tmp_path):
    star = write_hand_over(tmp_path, blob(), stem="run_it001_class001")
    result = blush("relion-hook", "--blush", star)
    assert result.returncode == 2 and "--angpix" in result.stderr and star.name in result.stderr
    write_run_files(tmp_path, 0, APIX, diameter=80)
    model = tmp_path / "run_it000_half1_model.star"
    model.write_text(model.read_text().replace("_rlnPixelSize", "_rlnOriginalImageSize"))
    result = blush("relion-hook", "--blush", star)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "run_it000_half1_model.star" in result.stderr and "rlnPixelSize" in result.stderr


@needs_relion
def test_relion_refine_runs_blush_relion_hook_blush_as_is(particles, tmp_path, monkeypatch):  # noqa: F811
    """The documented setting verbatim (no --angpix), with `blush` on PATH as pip installs it."""
    bin_dir = tmp_path / "bin"  # `blush` as installed: the engine's command line
    bin_dir.mkdir()
    (bin_dir / "blush").write_text(f'#!/bin/sh\nexec {sys.executable} -m blush_scipion.engine.cli "$@"\n')
    (bin_dir / "blush").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    run = relion_refine(particles, "hook/run", *TWO_ITERATIONS, executable="blush relion-hook --blush")
    assert run.stdout.count("External reconstruction finished successfully") == 2
    # each iteration: Blush, with the pixel size and diameter of RELION's model and optimiser STAR files
    assert run.stdout.count("relion-hook: Blush (classification") == 2
    assert run.stdout.count(f"{APIX:.3f} A, diameter 80 A") == 2
    ours, apix = read_map(particles / "hook/run_it002_class001_external_reconstruct.mrc")
    assert apix == APIX and ours.shape == (BOX,) * 3 and ours.std() > 0
    # RELION's reference is our map (after iteration 1, which RELION still low-passes to --ini_high)
    reference, _ = read_map(particles / "hook/run_it002_class001.mrc")
    assert torch.equal(reference, ours)


def test_relion_python_blush_finds_them_too(tmp_path, capfd):
    from blush_scipion.engine.cli.relion_hook import relion_python_blush

    star = write_hand_over(tmp_path, blob(BOX), stem="run_it001_half2_class001", fsc=0.9)
    write_run_files(tmp_path, 0, APIX, diameter=80)
    code = relion_python_blush([str(star), "--gpu", "-1"])
    out, err = capfd.readouterr()
    assert code == 0 and out.strip() == "success", (out, err)
    assert f"{APIX:.3f} A, diameter 80 A" in err
    assert read_map(str(star).replace(".star", ".mrc"))[1] == APIX
