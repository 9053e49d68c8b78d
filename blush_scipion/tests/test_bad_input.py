"""Bad input gets one line naming the file (or the option) and what is wrong, a non-zero exit code,
no traceback, and leaves every input as it was (issue 19, classes 1 and 2)."""

import mrcfile
import numpy as np
import pytest

from .command_line import blush
from .conftest import MODEL
from .one_line import assert_refused, fingerprints


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny particle set, its truth map, and maps that cannot be right."""
    folder = tmp_path_factory.mktemp("bad")
    assert (
        blush(
            "simulate", "--model", MODEL, "--out", folder / "ok", "--n", 12, "--box", 32, "--apix", 3
        ).returncode
        == 0
    )
    truth = mrcfile.read(folder / "ok" / "truth.mrc")
    for name, values in (
        ("nan.mrc", np.where(np.arange(truth.size).reshape(truth.shape) == 5, np.nan, truth)),
        ("zero.mrc", np.zeros_like(truth)),
    ):
        with mrcfile.new(folder / name) as m:
            m.set_data(values.astype(np.float32))
            m.voxel_size = 3.0
    (folder / "text.mrc").write_text("not a map at all")
    (folder / "fake.mrc.gz").write_bytes(b"not gzip")
    # particle files that cannot be right, each beside the good stack
    star = (folder / "ok" / "truth.star").read_text()
    first = next(line for line in star.splitlines() if line.startswith("000001@"))
    fields = first.split()
    bad_stars = {
        "index0.star": star.replace("000003@", "000000@", 1),
        "defocus.star": star.replace(first, first.replace(fields[3], "twelve", 1), 1),
        "infinite.star": star.replace(first, first.replace(fields[4], "inf", 1), 1),
        "apix0.star": star.replace("\t3.000000\t32\t", "\t0.000000\t32\t", 1),
        "size.star": star.replace("\t3.000000\t32\t", "\t3.000000\t40\t", 1),
        "nanimage.star": star.replace("particles.mrcs", "nan.mrcs"),
    }
    for name, text in bad_stars.items():
        assert text != star, name
        (folder / "ok" / name).write_text(text)
    images = mrcfile.read(folder / "ok" / "particles.mrcs").copy()
    images[4, 3, 3] = np.nan
    with mrcfile.new(folder / "ok" / "nan.mrcs") as m:
        m.set_data(images)
    return folder


# the commands refused, built alike: {d} is the data folder, "{d}/ok" the good particle set
def fsc(name):
    return ["fsc", "{d}/" + name, "{d}/ok/truth.mrc"]


def refine3d(*options, particles="{d}/ok/particles.star", ref="{d}/ok/truth.mrc", out="{d}/r"):
    return ["refine3d", "--particles", particles, "--ref", ref, "--out", out, *options]


def reconstruct(star, *options, out="{d}/rec.mrc"):
    return ["reconstruct", "--particles", "{d}/ok/" + star, "--out", out, *options]


def class2d(*options):
    return ["class2d", "--particles", "{d}/ok/particles.star", *options, "--out", "{d}/c"]


def halves(command, half1, *options, out):
    return [command, "--half1", half1, "--half2", "{d}/ok/truth.mrc", "--out", out, *options]


# (arguments, words the one line must hold)
CASES = [
    (fsc("nan.mrc"), ["nan.mrc", "NaN"]),
    (fsc("zero.mrc"), ["zero.mrc", "all zeros"]),
    (fsc("text.mrc"), ["text.mrc", "cannot read as MRC"]),
    (fsc("fake.mrc.gz"), ["fake.mrc.gz"]),
    (refine3d(ref="{d}/zero.mrc"), ["zero.mrc", "all zeros"]),
    (refine3d(ref="{d}/nan.mrc"), ["nan.mrc", "NaN"]),
    (refine3d("--diameter", "500"), ["--diameter", "fit in the box"]),
    (refine3d("--offset-step", "0"), ["--offset-step", "> 0"]),
    (refine3d("--max-iter", "0"), ["--max-iter", ">= 1"]),
    (refine3d("--ini-high", "nan"), ["--ini-high", "'nan'"]),
    (refine3d("--device", "cuda:7"), ["--device cuda:7"]),
    (refine3d(out="{d}/ok/truth.mrc"), ["truth.mrc", "--out names an input (--ref)"]),
    (refine3d(out="{d}/ok/truth.star"), ["truth.star", "must be a folder"]),
    (reconstruct("index0.star"), ["index0.star", "row 3", "from 1"]),
    (reconstruct("defocus.star"), ["defocus.star", "row 1", "rlnDefocusU", "'twelve'"]),
    (reconstruct("infinite.star"), ["infinite.star", "rlnDefocusV"]),
    (reconstruct("apix0.star"), ["apix0.star", "rlnImagePixelSize", "> 0"]),
    (reconstruct("size.star"), ["particles.mrcs", "32 px", "40"]),
    (reconstruct("nanimage.star"), ["nan.mrcs", "image 5", "NaN"]),
    (refine3d(particles="{d}/missing.star"), ["missing.star"]),
    (class2d("--k", "0"), ["--k", ">= 1"]),
    (
        reconstruct("truth.star", out="{d}/ok/truth.star"),
        ["truth.star", "--out names an input (--particles)"],
    ),
    (halves("denoise", "{d}/ok/truth.mrc", out="{d}/ok/truth.mrc"), ["truth.mrc", "--out names an input"]),
    (reconstruct("truth.star", out="/proc/1/rec.mrc"), ["/proc/1/rec.mrc"]),
    (class2d("--k", "2", "--iter", "0"), ["--iter"]),
    (class2d("--k", "2", "--psi-step", "0"), ["--psi-step"]),
    (class2d("--k", "2", "--diameter", "-4"), ["--diameter"]),
    (reconstruct("truth.star", "--pad", "0"), ["--pad"]),
    (["simulate", "--model", MODEL, "--out", "{d}/s", "--apix", "-1"], ["--apix", "> 0"]),
    (["simulate", "--model", "{d}/text.mrc", "--out", "{d}/s"], ["text.mrc"]),
    (halves("denoise", "{d}/nan.mrc", out="{d}/den.mrc"), ["nan.mrc", "NaN"]),
    (halves("postprocess", "{d}/zero.mrc", out="{d}/pp"), ["zero.mrc", "all zeros"]),
    (halves("localres", "{d}/ok/truth.mrc", "--sampling", "-3", out="{d}/lr.mrc"), ["--sampling"]),
]


@pytest.mark.parametrize("args, words", CASES, ids=[f"{a[0]}-{w[0]}" for a, w in CASES])
def test_bad_input_gets_one_line(data, args, words):
    before = fingerprints(data)
    run = blush(*[str(a).format(d=data) for a in args])
    assert_refused(run.returncode, run.stderr, args[0], *words)
    assert "Traceback" not in run.stdout
    assert fingerprints(data) == before  # inputs untouched, nothing left behind


def test_debug_shows_the_traceback(data):
    args = ["fsc", data / "zero.mrc", data / "ok" / "truth.mrc"]
    assert "Traceback" in blush("--debug", *args).stderr
    assert "Traceback" not in blush(*args).stderr


def test_pixel_origins_of_a_relion_30_style_column_are_read_not_ignored(data, tmp_path):
    """rlnOriginX/Y (pixels) in a 3.1 file: converted with the pixel size, the same map as in A."""
    from blush_scipion.engine.particles import Particles

    truth = Particles.read(data / "ok" / "truth.star")
    assert truth.origins().abs().max() > 0.5  # the simulation shifts its particles
    pixels = truth.table.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst"]).assign(
        rlnOriginX=truth.origins()[:, 0].numpy(), rlnOriginY=truth.origins()[:, 1].numpy()
    )
    Particles(pixels, truth.optics, truth.root).write(tmp_path / "pixels.star")
    again = Particles.read(tmp_path / "pixels.star")
    assert np.allclose(again.origins().numpy(), truth.origins().numpy(), atol=1e-4)
