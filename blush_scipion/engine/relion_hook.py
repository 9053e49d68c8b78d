"""RELION's external reconstruction (`relion_refine --external_reconstruct`): the hand-over files
read, and a half set's next reference made from them, as relion_external_reconstruct makes it or
as Blush does.

RELION's M-step writes a STAR file (blocks external_reconstruct_general and _tau2) naming its
back-projected Fourier data (real and imaginary parts) and weight as MRC files, runs
`$RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE <star>` (RELION 3.1, 4) or `relion_python_blush <star>
<args>` (RELION 5), and reads back the map named in rlnExtReconsResult.

The arrays are RELION's padded half transform in FFTW order: (m, m, m//2+1) indexed [z, y, x],
m = round(pad x box), DC at index 0, negative kz, ky wrapped to the end, filled inside the sphere
|k| < round(pad x current_size/2) and zero beyond. The data are on RELION's scale (its forward
FFTs are divided by the pixel count), n^2 below ours. Headers carry no pixel size before RELION 5;
nor does the STAR, and the pixel size and particle diameter come from the run's files (relion_job).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .device import Device
from .fsc import resolution_at
from .mask import soft_mask_outside_map
from .mrc import MapError, read_map, write_map
from .projector import crop_volume, gridding_correction
from .reconstruct import wiener_map
from .relion_job import run_settings
from .star import StarError, read_star, require_block, require_columns

GENERAL, TAU2 = "external_reconstruct_general", "external_reconstruct_tau2"
FILE_COLUMNS = ["rlnExtReconsDataReal", "rlnExtReconsDataImag", "rlnExtReconsWeight", "rlnExtReconsResult"]
NUMBER_COLUMNS = [
    "rlnTau2FudgeFactor",
    "rlnPaddingFactor",
    "rlnReferenceDimensionality",
    "rlnOriginalImageSize",
    "rlnCurrentImageSize",
]
GRIDDING_ITERATIONS = 10  # relion_external_reconstruct's fixed count


@dataclass
class HandOver:
    """One external-reconstruction request from RELION."""

    star: Path
    data: torch.Tensor  # (m, m, m//2+1) complex64, RELION's FFTW-order half transform and scale
    weight: torch.Tensor  # (m, m, m//2+1) float32
    tau2: torch.Tensor  # (k,) float64, per shell of the unpadded map
    fsc: torch.Tensor  # (k,) float32, gold-standard FSC (zeros outside auto-refine)
    tau2_fudge: float
    pad: float
    ori_size: int
    current_size: int
    result: Path  # the map RELION reads back
    pixel_size: float | None  # A; None when neither the STAR, the MRC headers nor the run's files say
    diameter: float | None  # A, rlnParticleDiameter (RELION 5; before, from the run's files)
    inputs: tuple[Path, ...] = ()  # the STAR and the files it names to read: never written

    @property
    def half_set(self) -> bool:
        """A random half set's reconstruction (auto-refine names them ..._half1_... / _half2_...)."""
        return "half1" in self.star.name or "half2" in self.star.name


def _file_paths(row, star: Path) -> dict[str, Path]:
    """The named files: RELION writes them relative to its working directory, which is ours when
    RELION calls us; otherwise (files moved or run from elsewhere) look beside the STAR file."""
    paths = {c: Path(str(row[c])) for c in FILE_COLUMNS}
    if paths["rlnExtReconsDataReal"].exists():
        return paths
    return {c: p if p.is_absolute() else star.parent / p.name for c, p in paths.items()}


def read_hand_over(star: str | os.PathLike) -> HandOver:
    star = Path(star)
    blocks = read_star(star)
    general = require_block(blocks, GENERAL, star)
    require_columns(general, FILE_COLUMNS + NUMBER_COLUMNS, star, GENERAL)
    tau2_table = require_block(blocks, TAU2, star)
    require_columns(tau2_table, ["rlnSpectralIndex", "rlnReferenceTau2"], star, TAU2)
    row = general.iloc[0]
    if int(row["rlnReferenceDimensionality"]) != 3:
        raise StarError(
            f"{star}: rlnReferenceDimensionality is {row['rlnReferenceDimensionality']}; only 3D "
            "references are supported"
        )
    files = _file_paths(row, star)
    for column in FILE_COLUMNS[:3]:
        if not files[column].exists():
            raise MapError(f"{star}: {column} names {files[column]}, which does not exist")
    inputs = (star, *(files[c] for c in FILE_COLUMNS[:3]))
    _check_result(star, str(row["rlnExtReconsResult"]), files["rlnExtReconsResult"], inputs)
    real, apix = read_map(files["rlnExtReconsDataReal"], cubic=False)
    imag, _ = read_map(files["rlnExtReconsDataImag"], cubic=False)
    weight, _ = read_map(files["rlnExtReconsWeight"], cubic=False)
    ori, pad = int(row["rlnOriginalImageSize"]), float(row["rlnPaddingFactor"])
    m = _round(pad * ori)
    for column, array in (
        ("rlnExtReconsDataReal", real),
        ("rlnExtReconsDataImag", imag),
        ("rlnExtReconsWeight", weight),
    ):
        if tuple(array.shape) != (m, m, m // 2 + 1):
            raise MapError(
                f"{files[column]}: shape (z, y, x) {tuple(array.shape)}, expected {(m, m, m // 2 + 1)} "
                f"for box {ori} padded {pad:g}x (from {star})"
            )
    order = np.argsort(tau2_table["rlnSpectralIndex"].to_numpy())
    tau2 = torch.from_numpy(tau2_table["rlnReferenceTau2"].to_numpy(np.float64)[order])
    fsc_column = tau2_table.get("rlnGoldStandardFsc")
    fsc = (
        torch.zeros(len(tau2))
        if fsc_column is None
        else torch.from_numpy(fsc_column.to_numpy(np.float32)[order])
    )
    if "rlnPixelSize" in general.columns:
        apix = float(row["rlnPixelSize"])
    diameter = float(row["rlnParticleDiameter"]) if "rlnParticleDiameter" in general.columns else -1.0
    pixel_size, particle_diameter = (apix if apix > 0 else None), (diameter if diameter > 0 else None)
    # RELION 3.1 and 4 write neither: their run's own files do
    if pixel_size is None or particle_diameter is None:
        run = run_settings(star)
        pixel_size, particle_diameter = pixel_size or run.pixel_size, particle_diameter or run.diameter
    return HandOver(
        star,
        torch.complex(real, imag),
        weight,
        tau2,
        fsc,
        float(row["rlnTau2FudgeFactor"]),
        pad,
        ori,
        int(row["rlnCurrentImageSize"]),
        files["rlnExtReconsResult"],
        pixel_size,
        particle_diameter,
        inputs,
    )


def _check_result(star: Path, written: str, result: Path, inputs: tuple[Path, ...]) -> None:
    """RELION reads its result back from its own job folder, where it wrote the STAR and the data
    files: a result named anywhere else (another folder, `..`, a link out of it), not an .mrc map,
    or one of the hook's inputs would be written where RELION never reads, over someone's file."""

    def refuse(why: str):
        raise StarError(
            f"{star}: rlnExtReconsResult {written!r} {why}: refused (RELION reads its result "
            f"from {star.parent}, beside this STAR)"
        )

    if ".." in Path(written).parts:
        refuse("climbs out of its folder (..)")
    if result.suffix != ".mrc":
        refuse("is not an .mrc map")
    if result.resolve().parent != star.resolve().parent:
        refuse("is outside the STAR's folder")
    _refuse_input(result, inputs, f"{star}: rlnExtReconsResult {written!r}")


def _refuse_input(path: Path, inputs: tuple[Path, ...], name: str) -> None:
    if any(path.resolve() == p.resolve() for p in inputs):
        raise StarError(f"{name} is one of the hook's inputs: refused (it would be written over)")


def output_path(h: HandOver, path: str | os.PathLike | None = None) -> Path:
    """Where a map for RELION goes: `path` (the user's --out) or rlnExtReconsResult; never an input."""
    out = Path(path) if path else h.result
    _refuse_input(out, h.inputs, f"{h.star}: " + (f"--out {out}" if path else f"rlnExtReconsResult {out}"))
    return out


def _round(x: float) -> int:
    """RELION's ROUND (half away from zero), not Python's half-to-even."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def fftw_frequencies(size: int, device: Device | None = None) -> torch.Tensor:
    """(size,) signed frequency of each index of an FFTW-order axis, as RELION counts them
    (index i <= size//2 is +i, the rest i - size)."""
    i = torch.arange(size, device=device)
    return torch.where(i <= size // 2, i, i - size)


def _radius2(size: int, device: Device | None = None) -> torch.Tensor:
    """(size, size, size//2+1) squared radius of each coefficient of an FFTW-order half transform."""
    k = fftw_frequencies(size, device)
    kx = torch.arange(size // 2 + 1, device=device)
    return k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2


def relocate(half: torch.Tensor, size: int, r2_max: int) -> torch.Tensor:
    """Move an FFTW-order half transform (m, m, m//2+1) to another grid (size, size, size//2+1),
    keeping the coefficients with |k|^2 < r2_max (which must fit both grids)."""
    m = half.shape[0]
    keep = _radius2(m, half.device) < r2_max
    out = half.new_zeros((size, size, size // 2 + 1))
    kz, ky, kx = torch.nonzero(keep, as_tuple=True)
    k = fftw_frequencies(m, half.device)
    out[k[kz] % size, k[ky] % size, kx] = half[kz, ky, kx]
    return out


def blob_fourier(radius: torch.Tensor, blob_radius: float = 3.8, alpha: float = 15.0) -> torch.Tensor:
    """RELION's tabulated Fourier transform of its Kaiser-Bessel blob (order 0, radius 1.9 x 2,
    alpha 15) at `radius` (in units of 1/(pad n)), normalised to 1 at 0 and zero from 0.5 on."""
    sampling = 0.5 / 10000
    index = torch.floor(radius.abs() / sampling)
    w = index * sampling  # RELION reads a table; its steps matter at the 1e-4 level

    def i15_over(s):  # modified spherical Bessel I_{3/2}(s) / s^{3/2}; s stays in [9, 15] here
        return torch.sqrt(2 / (torch.pi * s)) * (torch.cosh(s) - torch.sinh(s) / s) / s**1.5

    sigma = torch.sqrt((alpha**2 - (2 * torch.pi * blob_radius * w) ** 2).clamp(min=1e-12))
    value = i15_over(sigma) / i15_over(torch.tensor(alpha, dtype=sigma.dtype))
    return torch.where(index < 10000, value, torch.zeros_like(value))


def preweight(
    weight: torch.Tensor,
    inside: torch.Tensor,
    ori_size: int,
    pad: float,
    iterations: int = GRIDDING_ITERATIONS,
) -> torch.Tensor:
    """Pipe & Menon (1999) density compensation, as RELION's reconstruct: the (P, P, P//2+1)
    weights w (FFTW order, P odd) -> factors f with (f w) * blob ~ 1 on `inside`, so that data x f
    is data / w smoothed by the blob (RELION's gridding; it tames unevenly sampled shells)."""
    size = weight.shape[0]
    half = size // 2  # RELION's real-space wrap: indices < P//2 positive, the rest negative
    k = torch.arange(size, device=weight.device, dtype=torch.float64)
    k = torch.where(k < half, k, k - size)
    r = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    blob = blob_fourier(r / (ori_size * pad))
    factors = inside.to(torch.float64)
    for _ in range(iterations):
        smoothed = torch.fft.rfftn(torch.fft.irfftn(factors * weight, s=(size,) * 3) * blob)
        factors = torch.where(inside, factors / smoothed.abs().clamp(min=1e-6), factors)
    return factors


def regularised_weight(
    h: HandOver, weight: torch.Tensor, r2: torch.Tensor, inside: torch.Tensor
) -> torch.Tensor:
    """weight + 1/(pad^3 fudge tau2) per shell inside the sphere; where tau2 is zero, RELION adds
    1/(0.001 weight) instead (and nothing where the weight is zero too)."""
    shells = torch.floor(torch.sqrt(r2.double()) / h.pad + 0.5).long().clamp(max=len(h.tau2) - 1)
    tau2 = h.tau2.to(weight.device)[shells]
    if (tau2 < 0).any():
        raise ValueError(f"{h.star}: negative rlnReferenceTau2 values")
    inverse = torch.where(
        tau2 > 0,
        1 / (h.pad**3 * h.tau2_fudge * tau2).clamp(min=1e-300),
        torch.where(weight > 1e-20, 1 / (1e-3 * weight.clamp(min=1e-20)), 0.0),
    )
    return torch.where(inside, weight + inverse, weight)


def real_space_map(half: torch.Tensor, m: int, n: int, pad: float) -> torch.Tensor:
    """RELION's windowToOridimRealSpace + griddingCorrect: an FFTW-order half transform on the
    (m, m, m//2+1) grid -> the (n, n, n) map: unnormalised inverse / (pad^3 n), cropped, corners
    blended into the background, divided by the trilinear kernel's sinc^2."""
    volume = torch.fft.fftshift(torch.fft.irfftn(half, s=(m,) * 3)) * (m**3 / (pad**3 * n))
    volume = soft_mask_outside_map(crop_volume(volume, n))
    return volume / gridding_correction(n, pad, volume.device).to(volume.dtype)


def external_reconstruct(
    h: HandOver, *, regularise: bool = True, iterations: int = GRIDDING_ITERATIONS
) -> torch.Tensor:
    """The (n, n, n) map relion_external_reconstruct writes (its --no_map: `regularise` False):
    data / (weight + 1/tau2) with RELION's iterative gridding weights, on RELION's grey scale."""
    r_max = min(h.current_size // 2, h.ori_size // 2)
    r_pad = _round(r_max * h.pad)
    size = 2 * (r_pad + 1) + 1  # RELION's projector box for this current size (odd)
    r2_max = r_pad**2
    data = relocate(h.data.to(torch.complex128), size, r2_max)
    weight = relocate(h.weight.to(torch.float64), size, r2_max)
    r2 = _radius2(size, data.device)
    inside = r2 < r2_max
    if regularise:
        weight = regularised_weight(h, weight, r2, inside)
    factors = preweight(weight, inside, h.ori_size, h.pad, iterations)
    m = _round(h.pad * h.ori_size)
    m += m % 2
    return real_space_map(relocate(data * factors, m, r2_max), m, h.ori_size, h.pad).float()


def centred_half(half: torch.Tensor) -> torch.Tensor:
    """FFTW-order half transform (m, m, m//2+1) -> ours (engine.projector.fourier_shape): kz and ky
    centred at m//2, kx = 0 .. m//2 as it was."""
    return torch.fft.fftshift(half, dim=(0, 1))


def unregularised_map(h: HandOver) -> torch.Tensor:
    """(n, n, n) data / (weight + 0.001 x the weight's shell mean), gridding-corrected, on RELION's
    grey scale: the nearly unregularised map Blush denoises."""
    n = h.ori_size
    data = centred_half(h.data) * n**2  # RELION's scale -> ours (its images' FFTs are divided by n^2)
    return wiener_map(data, centred_half(h.weight), n, h.pad, floor=1e-3).float()


def padded_fsc(h: HandOver) -> torch.Tensor:
    """(n//2+1,) rlnGoldStandardFsc, cut or extended with zeros to the map's shells."""
    k = h.ori_size // 2 + 1
    return torch.cat([h.fsc[:k].float(), torch.zeros(max(0, k - len(h.fsc)))])


def blush_maps(
    h: HandOver,
    denoiser,
    pixel_size: float,
    diameter: float,
    mode: str = "auto",
    *,
    trailing: bool = True,
    stride: int | None = None,
) -> dict[str, torch.Tensor]:
    """Blush's answer to a hand-over, as RELION 5 gives it: {"result": map to write, and for the
    final joined map "denoised": written beside it}. All (n, n, n).

    mode: "refine" (a half set: the denoised unregularised map, trailed to the FSC), "final" (the
    tau2-regularised map stays the result), "classification" (the regularised map denoised; the
    regularised one only above the denoiser grid's Nyquist), or "auto": "refine" for half sets,
    "final" with an FSC, else "classification" (RELION 5's choice by file name and FSC).
    """
    from .blush.prior import blush_reference  # the network stack loads only when asked for

    mode = resolve_mode(h, mode)
    regularised = external_reconstruct(h)
    fsc = padded_fsc(h)
    if mode == "classification":
        everywhere = torch.ones_like(fsc)  # no FSC here: trailing reduces to the denoiser grid's edge
        return {
            "result": blush_reference(
                regularised,
                regularised,
                everywhere,
                denoiser,
                pixel_size,
                diameter,
                trailing=True,
                stride=stride,
            )
        }
    denoised = blush_reference(
        unregularised_map(h),
        regularised,
        fsc,
        denoiser,
        pixel_size,
        diameter,
        trailing=trailing,
        stride=stride,
    )
    if mode == "final":
        return {"result": regularised, "denoised": denoised}
    return {"result": denoised}


def gold_standard_resolution(h: HandOver, pixel_size: float) -> float:
    """A: where the FSC RELION handed over falls below 0.143 (inf at the first iteration: no FSC yet)."""
    return resolution_at(padded_fsc(h), 0.143, h.ori_size, pixel_size)


def resolve_mode(h: HandOver, mode: str) -> str:
    if mode not in ("auto", "refine", "final", "classification"):
        raise ValueError(f"unknown mode {mode!r}: auto, refine, final or classification")
    if mode != "auto":
        return mode
    if h.half_set:
        return "refine"
    return "final" if bool((h.fsc != 0).any()) else "classification"


def write_result(
    h: HandOver, volume: torch.Tensor, pixel_size: float | None, path: str | os.PathLike | None = None
) -> Path:
    """Write a map for RELION (atomically: it reads the file as soon as we exit)."""
    out = output_path(h, path)
    write_map(out, volume, pixel_size or 1.0)
    return out
