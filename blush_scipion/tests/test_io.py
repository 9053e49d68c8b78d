"""STAR and MRC round trips, files written by RELION, and clear errors for bad input."""

import subprocess

import mrcfile
import numpy as np
import pytest
import torch

from blush_scipion.engine.mrc import MapError, StackReader, read_map, write_map, write_stack
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.star import StarError

from .conftest import requires_relion

# As relion_refine 3.1 writes it: two optics groups, column numbers, trailing blanks.
RELION_31_STAR = """
# version 30001

data_optics

loop_ 
_rlnOpticsGroupName #1 
_rlnOpticsGroup #2 
_rlnMtfFileName #3 
_rlnMicrographOriginalPixelSize #4 
_rlnVoltage #5 
_rlnSphericalAberration #6 
_rlnAmplitudeContrast #7 
_rlnImagePixelSize #8 
_rlnImageSize #9 
_rlnImageDimensionality #10 
opticsGroup1            1 mtf_k2_200kV.star     0.885000   200.000000     1.400000     0.100000     1.770000           64            2 
opticsGroup2            2 mtf_k2_200kV.star     0.885000   200.000000     1.400000     0.100000     1.770000           64            2 
 

# version 30001

data_particles

loop_ 
_rlnCoordinateX #1 
_rlnCoordinateY #2 
_rlnImageName #3 
_rlnMicrographName #4 
_rlnOpticsGroup #5 
_rlnCtfMaxResolution #6 
_rlnCtfFigureOfMerit #7 
_rlnDefocusU #8 
_rlnDefocusV #9 
_rlnDefocusAngle #10 
_rlnCtfBfactor #11 
_rlnCtfScalefactor #12 
_rlnPhaseShift #13 
_rlnGroupNumber #14 
_rlnAngleRot #15 
_rlnAngleTilt #16 
_rlnAnglePsi #17 
_rlnOriginXAngst #18 
_rlnOriginYAngst #19 
_rlnClassNumber #20 
_rlnNormCorrection #21 
_rlnLogLikeliContribution #22 
_rlnMaxValueProbDistribution #23 
_rlnNrOfSignificantSamples #24 
_rlnRandomSubset #25 
 1614.217657  1424.469573 000001@Extract/job007/Movies/20170629_00021_frameImage.mrcs MotionCorr/job002/Movies/20170629_00021_frameImage.mrc            1     4.809192     0.131159 10864.146484 10575.793945    77.995003     0.000000     1.000000     0.000000            1    15.683911   104.291590   -34.35245     1.342187     -3.20969            1     0.878129 1.044787e+05     0.108357            5            1 
  949.005418  3185.405573 000002@Extract/job007/Movies/20170629_00021_frameImage.mrcs MotionCorr/job002/Movies/20170629_00021_frameImage.mrc            2     4.809192     0.131159 10864.146484 10575.793945    77.995003     0.000000     1.000000     0.000000            1   -83.38293    98.548221   171.826049    -2.19281     4.112187            1     0.899422 1.044653e+05     0.087733            6            2 
"""


def test_reads_relion_31_star_with_optics_groups(tmp_path):
    path = tmp_path / "run_data.star"
    path.write_text(RELION_31_STAR)
    p = Particles.read(path)
    assert len(p) == 2 and list(p.optics["rlnOpticsGroup"]) == [1, 2]
    assert p.pixel_size == pytest.approx(1.77) and p.image_size == 64
    assert p.column("rlnVoltage").tolist() == [200.0, 200.0]
    assert p.half_sets().tolist() == [1, 2]
    np.testing.assert_allclose(p.origins()[1].numpy(), [-2.19281 / 1.77, 4.112187 / 1.77], rtol=1e-5)
    ctf = p.ctf()
    assert float(ctf.defocus_u[0]) == pytest.approx(10864.146484) and float(ctf.cs[1]) == pytest.approx(1.4)
    # write, read back: every column and value survives
    p.write(tmp_path / "again.star")
    q = Particles.read(tmp_path / "again.star")
    assert list(q.table.columns) == list(p.table.columns)
    np.testing.assert_allclose(q.table["rlnAnglePsi"], p.table["rlnAnglePsi"], rtol=1e-6)
    assert list(q.table["rlnImageName"]) == list(p.table["rlnImageName"])


def test_reads_relion_30_star_without_optics(tmp_path):
    path = tmp_path / "old.star"
    path.write_text("""
data_

loop_
_rlnImageName #1
_rlnDefocusU #2
_rlnDefocusV #3
_rlnDefocusAngle #4
_rlnVoltage #5
_rlnSphericalAberration #6
_rlnAmplitudeContrast #7
_rlnMagnification #8
_rlnDetectorPixelSize #9
_rlnOriginX #10
_rlnOriginY #11
1@a.mrcs 10000 9000 10 300 2.7 0.1 100000 14.0 2.0 -1.0
2@a.mrcs 12000 11000 20 300 2.7 0.1 100000 14.0 0.5 0.0
""")
    p = Particles.read(path)
    assert len(p.optics) == 1 and p.pixel_size == pytest.approx(1.4)
    np.testing.assert_allclose(p.table["rlnOriginXAngst"], [2.8, 0.7])
    np.testing.assert_allclose(p.origins()[0].numpy(), [2.0, -1.0], rtol=1e-6)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.star"
    path.write_text(RELION_31_STAR.replace("_rlnImageName #3", "_rlnSomethingElse #3"))
    with pytest.raises(StarError, match=r"bad.star.*lacks column rlnImageName"):
        Particles.read(path)
    path.write_text(RELION_31_STAR.replace("_rlnDefocusV #9", "_rlnDefocusX #9"))
    with pytest.raises(StarError, match=r"bad.star.*rlnDefocusV"):
        Particles.read(path).ctf()


def test_mismatched_pixel_sizes_are_refused(tmp_path):
    path = tmp_path / "mixed.star"
    path.write_text(
        RELION_31_STAR.replace(
            "     1.770000           64            2 \n \n", "     1.050000           64            2 \n \n"
        )
    )
    with pytest.raises(StarError, match=r"mixed.star.*mismatched pixel sizes"):
        Particles.read(path).pixel_size


def test_unknown_optics_group_and_empty_table(tmp_path):
    path = tmp_path / "orphan.star"
    path.write_text(RELION_31_STAR.replace("opticsGroup2            2", "opticsGroup2            3"))
    with pytest.raises(StarError, match=r"orphan.star.*optics group"):
        Particles.read(path)


def test_map_round_trip_keeps_pixel_size(tmp_path):
    vol = torch.randn(12, 12, 12)
    write_map(tmp_path / "m.mrc", vol, 1.23)
    back, apix = read_map(tmp_path / "m.mrc")
    assert torch.equal(back, vol) and apix == pytest.approx(1.23, abs=1e-4)
    with mrcfile.open(tmp_path / "m.mrc") as mrc:  # header as other programs see it
        assert mrc.data.shape == (12, 12, 12) and float(mrc.voxel_size.x) == pytest.approx(1.23, abs=1e-4)


def test_stack_round_trip_in_batches(tmp_path):
    images = torch.randn(10, 8, 8)
    write_stack(tmp_path / "s.mrcs", iter(images.split(3)), 2.5, n_images=10)
    with mrcfile.open(tmp_path / "s.mrcs") as mrc:
        assert mrc.is_image_stack() and float(mrc.voxel_size.x) == pytest.approx(2.5)
        np.testing.assert_array_equal(mrc.data, images.numpy())


def test_stack_reader_closes_its_stacks_when_the_block_ends(tmp_path):
    images = torch.randn(5, 8, 8)
    for name in ("a.mrcs", "b.mrcs"):
        write_stack(tmp_path / name, images, 1.0)
    with StackReader() as reader:
        read = reader.read(str(tmp_path / "a.mrcs"), np.array([4, 0]))
        np.testing.assert_array_equal(read, images[[4, 0]].numpy())
        reader.read(str(tmp_path / "b.mrcs"), np.array([1]))
        opened = list(reader._open.values())
    assert len(opened) == 2 and all(mrc.data is None for mrc in opened) and not reader._open
    with pytest.raises(MapError, match="stack holds 5"), StackReader() as reader:
        reader.read(str(tmp_path / "a.mrcs"), np.array([0]))
        opened = list(reader._open.values())
        reader.read(str(tmp_path / "a.mrcs"), np.array([5]))
    assert opened[0].data is None and not reader._open  # closed on the way out of an error too


def test_bad_maps_are_refused_with_the_file_named(tmp_path):
    write_map(tmp_path / "flat.mrc", torch.zeros(4, 8, 8), 1.0)
    with pytest.raises(MapError, match=r"flat.mrc.*not cubic"):
        read_map(tmp_path / "flat.mrc")
    vol = torch.zeros(8, 8, 8)
    vol[1, 2, 3] = float("nan")
    write_map(tmp_path / "nan.mrc", vol, 1.0)
    with pytest.raises(MapError, match=r"nan.mrc.*NaN"):
        read_map(tmp_path / "nan.mrc")
    (tmp_path / "junk.mrc").write_bytes(b"not a map")
    with pytest.raises(MapError, match="junk.mrc"):
        read_map(tmp_path / "junk.mrc")


@requires_relion
def test_relion_reads_and_rewrites_our_star(clean_set, tmp_path):
    out = tmp_path / "relion_written.star"
    subprocess.run(
        [
            "relion_star_handler",
            "--i",
            str(clean_set / "truth.star"),
            "--o",
            str(out),
            "--select",
            "rlnDefocusU",
            "--minval",
            "0",
            "--maxval",
            "1e9",
        ],
        check=True,
        capture_output=True,
        cwd=clean_set,
    )
    ours, theirs = Particles.read(clean_set / "truth.star"), Particles.read(out)
    assert len(theirs) == len(ours) == 2000
    for column in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnDefocusU"):
        np.testing.assert_allclose(theirs.table[column], ours.table[column], atol=1e-3)
