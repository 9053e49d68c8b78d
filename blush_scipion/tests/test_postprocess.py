"""Post-processing (relion_postprocess): on half maps whose true FSC is known, the corrected FSC,
the resolution, the B-factor and the automatic mask are what they should be; RELION reads the files."""

import json
import shutil
import subprocess

import pytest
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
from blush_scipion.engine.localres import local_resolution
from blush_scipion.engine.mask import threshold_mask
from blush_scipion.engine.mrc import read_map, write_map
from blush_scipion.engine.postprocess import automatic_mask, postprocess_half_maps
from blush_scipion.engine.star import read_star

from .conftest import MODEL

N, APIX = 64, 1.5


@pytest.fixture(scope="module")
def truth():
    return density_from_model(MODEL, N, APIX, bfactor=40)


def half_maps(truth, resolution, seed, blur=0.0):
    return simulate_half_maps(truth, APIX, resolution, torch.Generator().manual_seed(seed), blur_bfactor=blur)


def halves(folder):
    """The options naming folder/half1.mrc and folder/half2.mrc."""
    return ["--half1", str(folder / "half1.mrc"), "--half2", str(folder / "half2.mrc")]


def shell_power(volume):
    shells = rfft_shell_index_3d(N)
    w = rfft_hermitian_weight_3d(N).double().expand_as(shells)
    return shell_sum(w * rfft3_centered(volume.double()).abs() ** 2, shells, N // 2 + 1)


@pytest.mark.parametrize("resolution, seed", [(5.5, 0), (8.0, 1)])
def test_corrected_fsc_and_resolution_match_the_truths(truth, resolution, seed):
    # The truth's FSC inside the mask: the signal's power against the power of the masked noise
    # (the halves minus the truth), shell by shell; the corrected FSC must estimate it.
    h1, h2 = half_maps(truth, resolution, seed)
    mask, _ = automatic_mask(h1, h2, APIX)
    signal = shell_power(truth * mask)
    noise = (shell_power((h1 - truth) * mask) + shell_power((h2 - truth) * mask)) / 2
    expected = signal / (signal + noise)
    result = postprocess_half_maps(h1, h2, mask, APIX)
    error = (result.fsc_corrected.double() - expected)[1:].abs()
    assert error.mean() < 0.03 and error.max() < 0.12
    # where each crosses 0.143, in shells: within 2 (an FSC estimate's scatter there is about 0.05)
    measured, true = (
        N * APIX / resolution_at(curve.float(), 0.143, N, APIX) for curve in (result.fsc_corrected, expected)
    )
    assert abs(measured - true) <= 2.0 and true < N // 2 - 2
    assert abs(N * APIX / result.resolution - true) <= 2.0
    # the mask earns resolution over the unmasked FSC of the whole, noisy box
    assert N * APIX / resolution_at(result.fsc_unmasked, 0.143, N, APIX) < true - 3


def test_a_known_blur_is_sharpened_back(truth):
    # the same halves' signal blurred by B = 100 A^2 (other noise): the fitted B-factors differ by -100
    fitted = []
    for seed, blur in [(2, 0.0), (3, 100.0)]:
        h1, h2 = half_maps(truth, 4.0, seed, blur)
        mask, _ = automatic_mask(h1, h2, APIX)
        fitted.append(postprocess_half_maps(h1, h2, mask, APIX).bfactor)
    assert fitted[1] - fitted[0] == pytest.approx(-100.0, abs=10.0)
    # a given B-factor is applied as given: amplitudes times exp(-B s^2 / 4)
    h1, h2 = half_maps(truth, 4.0, 2)
    mask, _ = automatic_mask(h1, h2, APIX)
    plain = postprocess_half_maps(h1, h2, mask, APIX, bfactor=0.0, low_pass_resolution=0)
    sharp = postprocess_half_maps(h1, h2, mask, APIX, bfactor=-80.0, low_pass_resolution=0)
    k = torch.arange(5, 20)
    gain = (shell_power(sharp.sharpened) / shell_power(plain.sharpened))[k].sqrt()
    assert torch.allclose(gain, torch.exp(80.0 / 4 * (k / (N * APIX)) ** 2).double(), rtol=0.03)


@pytest.mark.parametrize("resolution, seed", [(4.0, 4), (9.0, 5)])
def test_automatic_mask_covers_the_molecule_and_not_the_solvent(truth, resolution, seed):
    h1, h2 = half_maps(truth, resolution, seed)
    mask, threshold = automatic_mask(h1, h2, APIX)
    molecule = truth > 0.05 * truth.max()
    assert mask[molecule].min() > 0.99
    # nothing beyond the molecule grown by the mask's own extension and edge (3 + 6 voxels) and 2 more
    envelope = threshold_mask(truth, float(0.05 * truth.max()), extend=11.0, edge=0.0)
    assert float((mask * (1 - envelope)).sum()) < 0.01 * float(mask.sum())
    assert float(mask.sum()) < 0.25 * N**3  # most of the box is solvent, and stays outside
    # a pure-noise box has no molecule: the threshold sits above all of the noise, and says so
    g = torch.Generator().manual_seed(seed)
    with pytest.raises(ValueError, match="threshold"):
        automatic_mask(torch.randn(N, N, N, generator=g), torch.randn(N, N, N, generator=g), APIX)


@pytest.fixture(scope="module")
def cli_run(truth, tmp_path_factory):
    out = tmp_path_factory.mktemp("postprocess")
    h1, h2 = half_maps(truth, 5.0, 6)
    write_map(out / "half1.mrc", h1, APIX)
    write_map(out / "half2.mrc", h2, APIX)
    assert blush(["postprocess", *halves(out), "--out", str(out / "pp")]) == 0
    return out


def test_cli_writes_relions_files(cli_run):
    pp = cli_run / "pp"
    summary = json.loads((pp / "summary.json").read_text())
    star = read_star(pp / "postprocess.star")
    general = star["general"].iloc[0]
    assert general["rlnFinalResolution"] == pytest.approx(summary["resolution_angstrom"])
    assert general["rlnBfactorUsedForSharpening"] == pytest.approx(summary["bfactor"])
    assert 3.0 < summary["resolution_angstrom"] < 5.0
    assert len(star["fsc"]) == N // 2 + 1 and len(star["guinier"]) == N // 2
    sharpened, apix = read_map(pp / "postprocess.mrc")
    mask, _ = read_map(pp / "postprocess_mask.mrc")
    masked, _ = read_map(pp / "postprocess_masked.mrc")
    assert apix == pytest.approx(APIX) and torch.allclose(masked, sharpened * mask, atol=1e-6)


@pytest.mark.skipif(shutil.which("relion_star_printtable") is None, reason="RELION not on PATH")
def test_relion_reads_the_outputs(cli_run):
    pp = cli_run / "pp"
    table = subprocess.run(
        [
            "relion_star_printtable",
            str(pp / "postprocess.star"),
            "data_fsc",
            "rlnSpectralIndex",
            "rlnFourierShellCorrelationCorrected",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split() for line in table.stdout.splitlines() if line.strip()]
    ours = read_star(pp / "postprocess.star")["fsc"]["rlnFourierShellCorrelationCorrected"]
    assert len(rows) == N // 2 + 1 and float(rows[10][1]) == pytest.approx(ours[10], abs=1e-5)
    guinier = subprocess.run(
        [
            "relion_star_printtable",
            str(pp / "postprocess.star"),
            "data_guinier",
            "rlnResolutionSquared",
            "rlnLogAmplitudesSharpened",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(guinier.stdout.split()) == 2 * (N // 2)
    for name in ["postprocess.mrc", "postprocess_mask.mrc"]:
        stats = subprocess.run(
            ["relion_image_handler", "--i", str(pp / name), "--stats"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"{N} x {N} x {N}" in stats.stdout and "angpix = 1.5" in stats.stdout


def test_cli_errors_are_one_line(cli_run, tmp_path, capsys):
    h1, h2 = str(cli_run / "half1.mrc"), str(cli_run / "half2.mrc")
    write_map(tmp_path / "small.mrc", torch.zeros(32, 32, 32), APIX)
    write_map(tmp_path / "loud.mrc", torch.full((N, N, N), 2.0), APIX)
    cases = [
        (["--half1", h1, "--half2", str(tmp_path / "missing.mrc")], "missing.mrc"),
        (["--half1", h1, "--half2", h2, "--mask", str(tmp_path / "small.mrc")], "small.mrc"),
        (["--half1", h1, "--half2", h2, "--mask", str(tmp_path / "loud.mrc")], "[0, 1]"),
        (["--half1", str(tmp_path / "small.mrc"), "--half2", h2], "small.mrc"),
    ]
    for args, named in cases:
        assert blush(["postprocess", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("blush postprocess: error:") and named in err and "\n" not in err
    # never over an input
    write_map(tmp_path / "postprocess.mrc", read_map(h1)[0], APIX)
    assert (
        blush(
            [
                "postprocess",
                "--half1",
                str(tmp_path / "postprocess.mrc"),
                "--half2",
                h2,
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "is an input" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("noisier", ["left", "right"])
def test_local_resolution_is_worse_where_the_half_maps_are_noisier(truth, noisier):
    # extra independent noise in one half of the box (x < n/2 or x >= n/2) of both half maps
    g = torch.Generator().manual_seed(7)
    h1, h2 = half_maps(truth, 6.0, 7)
    x = torch.arange(N)
    left = (x < N // 2).float().expand(N, N, N)
    extra = left if noisier == "left" else 1 - left
    h1, h2 = (h + 0.15 * torch.randn(N, N, N, generator=g) * extra for h in (h1, h2))
    mask, _ = automatic_mask(h1, h2, APIX)
    result = local_resolution(h1, h2, APIX, sampling=15.0, mask=mask)
    inside = mask > 0.5
    worse, better = (
        result.resolution[inside & (extra > 0)].median(),
        result.resolution[inside & (extra == 0)].median(),
    )
    assert worse > 1.15 * better
    assert 3.0 <= better < 8.0  # about where the whole map's corrected FSC puts it
    # the filtered map keeps the molecule: it correlates with the truth inside the mask
    a, b = result.filtered[inside], truth[inside]
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.8


def test_localres_cli_writes_the_map_the_filtered_map_and_the_median(cli_run, capsys):
    out = cli_run / "locres.mrc"
    mask = str(cli_run / "pp" / "postprocess_mask.mrc")
    assert blush(["localres", *halves(cli_run), "--mask", mask, "--sampling", "20", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    local, apix = read_map(out)
    assert apix == pytest.approx(APIX) and read_map(cli_run / "locres_filtered.mrc")[0].shape == local.shape
    # half maps at 5 A unmasked: the masked windows find the molecule between 3 A (Nyquist) and 8 A
    assert 3.0 <= record["median_in_mask"] < 8.0
    assert blush(["localres", *halves(cli_run), "--out", str(cli_run / "half1.mrc")]) == 2
    assert "names an input" in capsys.readouterr().err
