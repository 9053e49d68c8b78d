"""`blush relion-hook`, RELION's external reconstruction program: its reading of RELION's hand-over
files, agreement with relion_external_reconstruct, and real relion_refine runs that call it."""

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import mrcfile
import pytest
import torch

from blush_scipion.engine.fourier import fft3_centered, low_pass
from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import MapError, read_map
from blush_scipion.engine.projector import gridding_correction, pad_volume
from blush_scipion.engine.relion_hook import centred_half, external_reconstruct, read_hand_over, relocate
from blush_scipion.engine.star import StarError

from .command_line import blush
from .conftest import MODEL, simulate_with_start

needs_relion = pytest.mark.skipif(
    shutil.which("relion_refine") is None or shutil.which("relion_external_reconstruct") is None,
    reason="relion_refine / relion_external_reconstruct not on PATH: `apt-get install relion` "
    "(Debian's 3.1.3) enables the RELION hook tests",
)
BOX, APIX = 32, 3.0
# relion_refine's two short iterations from the 20 A reference: HEALPix order 1, offsets 3 px in 2 px steps
TWO_ITERATIONS = shlex.split("--ini_high 20 --iter 2 --healpix_order 1 --offset_range 3 --offset_step 2")


def write_hand_over(
    folder: Path, volume: torch.Tensor, stem="run_it001_class001", pixel_size=None, fsc=0.0, tau2=1e3
) -> Path:
    """RELION's hand-over files for a (n, n, n) map seen evenly from all directions: the padded
    half transform (FFTW order, RELION's scale) with unit weight inside the sphere."""
    n = volume.shape[-1]
    m = 2 * n
    padded = pad_volume(volume * gridding_correction(n, 2), m)  # as if trilinear interpolation had blurred it
    data = torch.fft.rfftn(torch.fft.ifftshift(padded)) / n**2
    inside = torch.ones(data.shape)
    data, weight = relocate(data, m, n**2), relocate(inside, m, n**2)  # RELION's sphere
    root = folder / f"{stem}_external_reconstruct"
    for suffix, array in (("_data_real", data.real), ("_data_imag", data.imag), ("_weight", weight)):
        with mrcfile.new(f"{root}{suffix}.mrc", overwrite=True) as mrc:
            mrc.set_data(array.float().numpy())
    extra = (
        ""
        if pixel_size is None
        else f"_rlnPixelSize {pixel_size}\n_rlnParticleDiameter {0.8 * n * pixel_size}\n"
    )
    rows = "".join(f"{k} {tau2} {fsc}\n" for k in range(n // 2 + 1))
    Path(f"{root}.star").write_text(
        f"data_external_reconstruct_general\n\n_rlnExtReconsDataReal {root}_data_real.mrc\n"
        f"_rlnExtReconsDataImag {root}_data_imag.mrc\n_rlnExtReconsWeight {root}_weight.mrc\n"
        f"_rlnExtReconsResult {root}.mrc\n_rlnExtReconsResultStarfile {root}_out.star\n"
        f"_rlnTau2FudgeFactor 1\n_rlnPaddingFactor 2\n_rlnReferenceDimensionality 3\n"
        f"_rlnOriginalImageSize {n}\n_rlnCurrentImageSize {n}\n{extra}\n"
        f"data_external_reconstruct_tau2\n\nloop_\n_rlnSpectralIndex #1\n_rlnReferenceTau2 #2\n"
        f"_rlnGoldStandardFsc #3\n{rows}"
    )
    return Path(f"{root}.star")


def blob(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, n, n), generator=g)
    k = torch.fft.fftfreq(n)
    r2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    smooth = torch.fft.ifftn(torch.fft.fftn(x) * torch.exp(-r2 * 60)).real  # low-passed noise, a "particle"
    c = torch.arange(n) - n // 2
    inside = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2 < (n / 3) ** 2
    return low_pass(smooth * inside, 4.0, 1.0)  # band-limited well inside RELION's sphere


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The shipped denoiser if present, else a tiny throwaway one (2 training steps)."""
    from blush_scipion.engine.blush.denoiser import SHIPPED_WEIGHTS

    if SHIPPED_WEIGHTS.exists():
        return SHIPPED_WEIGHTS
    from blush_scipion.engine.blush.training import TrainSettings, train

    out = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    train(
        [MODEL],
        TrainSettings(depth=2, width=4, block=16, voxel_min=APIX, voxel_max=APIX, steps=2),
        out,
        log=lambda *a: None,
    )
    return out


@pytest.fixture(scope="module")
def particles(tmp_path_factory):
    """200 particles, 32 px at 3 A, with their true poses, and a 20 A reference."""
    return simulate_with_start(tmp_path_factory, "hook_particles", 200, seed=3, box=BOX, pixel_size=APIX)


def refine_args(star: str, out: str, *extra) -> list:
    """relion_refine's options for one class of `star` from ref.mrc (CTF, 80 A, C1, one thread) into
    OUT, then `extra`."""
    fixed = (
        "--ref ref.mrc --K 1 --particle_diameter 80 --ctf --sym C1 --zero_mask --pad 2 --firstiter_cc"
        " --random_seed 1 --j 1 --pool 10"
    )
    return ["--i", star, "--o", out, *shlex.split(fixed), *extra]


def relion_refine(folder: Path, out: str, *extra, executable: str, mpi: int = 0):
    env = dict(
        os.environ, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=executable, OMPI_MCA_rmaps_base_oversubscribe="1"
    )
    (folder / out).parent.mkdir(parents=True, exist_ok=True)
    program = (
        ["relion_refine"]
        if not mpi
        else ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(mpi), "relion_refine_mpi"]
    )
    hook = ["--external_reconstruct", "--dont_combine_weights_via_disc"]
    run = subprocess.run(
        [*program, *refine_args("truth.star", out, *hook, *map(str, extra))],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def hook_script(folder: Path, *options) -> Path:
    """A wrapper RELION can call with the STAR path: `blush relion-hook <options> STAR`."""
    script = folder / "blush_hook.sh"
    script.write_text(
        f"#!/bin/sh\nexec {sys.executable} -m blush_scipion.engine.cli relion-hook "
        f'{" ".join(map(str, options))} "$1"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


# --- RELION's layout, without RELION ---------------------------------------------------------


def test_half_transform_in_fftw_order_becomes_our_centred_half_transform():
    for m in (12, 13):
        volume = torch.randn((m, m, m), dtype=torch.float64)
        half = torch.fft.rfftn(
            torch.fft.ifftshift(volume)
        )  # RELION's layout: FFTW order, real origin at the centre
        assert torch.allclose(
            centred_half(half)[:, :, : m - m // 2], fft3_centered(volume)[:, :, m // 2 :], atol=1e-9
        )


def test_an_evenly_sampled_hand_over_gives_back_its_map(tmp_path):
    volume = blob()
    star = write_hand_over(tmp_path, volume)
    rec = external_reconstruct(read_hand_over(star))
    assert rec.shape == volume.shape
    corr = float(torch.corrcoef(torch.stack([rec.flatten(), volume.flatten()]))[0, 1])
    assert corr > 0.999
    assert abs(float((rec * volume).sum() / (volume * volume).sum()) - 1) < 0.01  # RELION's grey scale


def test_missing_columns_and_files_are_named(tmp_path):
    star = write_hand_over(tmp_path, blob())
    text = star.read_text()
    broken = tmp_path / "broken.star"
    broken.write_text(text.replace("_rlnPaddingFactor 2\n", ""))
    with pytest.raises(StarError, match=r"broken\.star.*rlnPaddingFactor"):
        read_hand_over(broken)
    Path(str(star).replace(".star", "_weight.mrc")).unlink()
    with pytest.raises(MapError, match=r"rlnExtReconsWeight.*_weight\.mrc"):
        read_hand_over(star)
    result = blush("relion-hook", star)
    assert result.returncode == 2 and "_weight.mrc" in result.stderr


def test_blush_needs_a_pixel_size_and_writes_blush_maps(tmp_path, weights):
    from blush_scipion.engine import cli

    star = write_hand_over(tmp_path, blob(BOX), fsc=0.5)
    assert (
        cli.main(["relion-hook", str(star), "--blush", "--weights", str(weights)]) == 2
    )  # RELION 3.1: no pixel size
    assert (
        cli.main(["relion-hook", str(star), "--blush", "--weights", str(weights), "--angpix", str(APIX)]) == 0
    )
    result, _ = read_map(str(star).replace(".star", ".mrc"))
    denoised, apix = read_map(str(star).replace(".star", "_denoised.mrc"))  # the final joined map: both
    assert apix == APIX and torch.isfinite(denoised).all()
    assert torch.allclose(result, external_reconstruct(read_hand_over(star)), atol=1e-6)


def test_a_half_set_gets_blush_from_the_first_iteration_or_once_its_fsc_reaches_the_set_resolution(
    tmp_path, weights
):
    """By default Blush from the first iteration (no FSC yet), as RELION 5; with
    --blush-from-resolution 15 the plain map until the FSC reaches 15 A (at 0.9 everywhere: Blush)."""
    from blush_scipion.engine import cli

    maps = {}
    wait = ["--blush-from-resolution", "15"]
    for name, fsc, extra in (("first", 0.0, wait), ("first_relion5", 0.0, []), ("later", 0.9, wait)):
        (tmp_path / name).mkdir()
        star = write_hand_over(
            tmp_path / name, blob(BOX), stem="run_it001_half1_class001", pixel_size=APIX, fsc=fsc
        )
        assert cli.main(["relion-hook", str(star), "--blush", "--weights", str(weights), *extra]) == 0
        maps[name] = (
            read_map(str(star).replace(".star", ".mrc"))[0],
            external_reconstruct(read_hand_over(star)),
        )
    assert torch.allclose(*maps["first"], atol=1e-6)
    for name in ("first_relion5", "later"):
        ours, plain = maps[name]
        assert (ours - plain).abs().max() > 0.01 * plain.abs().max(), name


def test_relion_python_blush_answers_success_and_nothing_else(tmp_path, weights, capfd):
    from blush_scipion.engine.cli.relion_hook import relion_python_blush

    star = write_hand_over(tmp_path, blob(BOX), stem="run_it003_half1_class001", pixel_size=APIX, fsc=0.9)
    # RELION 5's own arguments, and --gpu -1 as it passes on a CPU run
    code = relion_python_blush(
        [str(star), "-m", str(weights), "--gpu", "-1", "-s", "8", "-b", "2", "--debug"]
    )
    out, err = capfd.readouterr()
    assert code == 0 and out.strip() == "success", (out, err)
    assert "refine" in err  # a half set: the denoised map, trailed to the FSC
    result, apix = read_map(str(star).replace(".star", ".mrc"))
    assert apix == APIX and torch.isfinite(result).all() and result.std() > 0
    code = relion_python_blush([str(tmp_path / "missing.star"), "-m", str(weights)])
    out, _ = capfd.readouterr()
    assert code == 1 and "missing.star" in out and "success" not in out


# --- against RELION 3.1 -----------------------------------------------------------------------


@needs_relion
@pytest.mark.parametrize("ini_high", [20.0, 6.0])  # current size 30 (below the box) and 32 (all of it)
def test_same_map_as_relion_external_reconstruct(particles, tmp_path, ini_high):
    out = f"ext{int(ini_high)}/run"
    relion_refine(
        particles,
        out,
        "--ini_high",
        ini_high,
        "--iter",
        1,
        "--skip_align",
        "--tau2_fudge",
        2,
        executable="relion_external_reconstruct",
    )
    star = particles / f"{out}_it001_class001_external_reconstruct.star"
    result = blush("relion-hook", star, "--out", tmp_path / "ours.mrc", cwd=particles)
    assert result.returncode == 0, result.stderr
    relion, _ = read_map(str(star).replace(".star", ".mrc"))
    ours, _ = read_map(tmp_path / "ours.mrc")
    assert (ours - relion).abs().max() < 1e-4 * relion.abs().max()
    assert (fourier_shell_correlation(ours, relion) > 0.9999).all()


@needs_relion
def test_relion_refine_runs_two_iterations_with_blush_as_its_reconstruction(particles, weights):
    hook = hook_script(particles, "--blush", "--angpix", APIX, "--weights", weights)
    run = relion_refine(particles, "blush/run", *TWO_ITERATIONS, executable=str(hook))
    assert run.stdout.count("External reconstruction finished successfully") == 2
    for it in (1, 2):
        ours, apix = read_map(particles / f"blush/run_it00{it}_class001_external_reconstruct.mrc")
        assert apix == APIX and torch.isfinite(ours).all()
        reference, _ = read_map(particles / f"blush/run_it00{it}_class001.mrc")
        assert torch.isfinite(reference).all()


@needs_relion
@pytest.mark.skipif(
    shutil.which("mpirun") is None or shutil.which("relion_refine_mpi") is None,
    reason="mpirun / relion_refine_mpi not on PATH",
)
def test_relion_refine_half_sets_get_blush_references_trailed_to_their_fsc(particles, weights):
    hook = hook_script(particles, "--blush", "--angpix", APIX, "--weights", weights)
    relion_refine(
        particles, "halves/run", *TWO_ITERATIONS, "--split_random_halves", executable=str(hook), mpi=3
    )
    for half in (1, 2):
        star = particles / f"halves/run_it002_half{half}_class001_external_reconstruct.star"
        h = read_hand_over(star)
        assert h.half_set and (h.fsc[1:4] > 0.5).all()  # the gold-standard FSC reached the hook
        ours, _ = read_map(str(star).replace(".star", ".mrc"))
        assert torch.isfinite(ours).all() and ours.std() > 0
