"""Flags and fields that say they do something do it (issue 19, class 6, in part): refine3d
--max-iter 1 runs one iteration; RELION 3.1 STAR files with pixel origins (rlnOriginX/Y, no
...Angst) are read in pixels times the pixel size, never ignored, or refused in one line."""

import json

import mrcfile
import numpy as np
import pytest
import starfile

from blush_scipion.engine import cli
from blush_scipion.engine.particles import Particles

from .conftest import MODEL
from .one_line import assert_refused, fingerprints

APIX = 3.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 particles of 32 px with their true poses; the same particles with RELION 3.1's pixel origins."""
    folder = tmp_path_factory.mktemp("flags")
    assert (
        cli.main(
            [
                "simulate",
                "--model",
                str(MODEL),
                "--out",
                str(folder),
                "--n",
                "24",
                "--box",
                "32",
                "--apix",
                str(APIX),
                "--seed",
                "4",
            ]
        )
        == 0
    )
    blocks = starfile.read(folder / "truth.star", always_dict=True)
    table = blocks["particles"]
    for axis in "XY":
        table[f"rlnOrigin{axis}"] = table.pop(f"rlnOrigin{axis}Angst") / APIX
    starfile.write({"optics": blocks["optics"], "particles": table}, folder / "truth_pixels.star")
    table["rlnOriginX"] = table["rlnOriginX"].astype(str)
    table.loc[5, "rlnOriginX"] = "left"
    starfile.write({"optics": blocks["optics"], "particles": table}, folder / "bad_pixels.star")
    return folder


def test_refine3d_max_iter_1_runs_one_iteration(data, tmp_path):
    assert (
        cli.main(
            [
                "refine3d",
                "--particles",
                str(data / "particles.star"),
                "--ref",
                str(data / "truth.mrc"),
                "--out",
                str(tmp_path / "r"),
                "--max-iter",
                "1",
                "--healpix-order",
                "0",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["iterations"] == 1 and len(summary["history"]) == 1


def test_relion31_pixel_origins_are_converted_with_the_pixel_size(data, tmp_path):
    angstrom, pixels = Particles.read(data / "truth.star"), Particles.read(data / "truth_pixels.star")
    assert np.abs(pixels.origins().numpy()).max() > 0.5  # the set has shifts worth reading
    np.testing.assert_allclose(pixels.origins().numpy(), angstrom.origins().numpy(), atol=1e-5)
    for name in ("truth.star", "truth_pixels.star"):
        out = tmp_path / f"{name}.mrc"
        assert cli.main(["reconstruct", "--particles", str(data / name), "--out", str(out)]) == 0
    np.testing.assert_allclose(
        mrcfile.read(tmp_path / "truth_pixels.star.mrc"), mrcfile.read(tmp_path / "truth.star.mrc"), atol=1e-5
    )


def test_a_pixel_origin_that_is_no_number_is_refused_in_one_line(data, tmp_path, capsys):
    before = fingerprints(data)
    code = cli.main(
        ["reconstruct", "--particles", str(data / "bad_pixels.star"), "--out", str(tmp_path / "m.mrc")]
    )
    line = assert_refused(
        code, capsys.readouterr().err, "reconstruct", "bad_pixels.star", "row 6", "rlnOriginX", "'left'"
    )
    print(f"| pixel origin 'left' | `{line}` |")
    assert fingerprints(data) == before and not (tmp_path / "m.mrc").exists()
