"""The CTF against an independent textbook formula, and its zeros against theory."""

import math

import numpy as np
import torch

from blush_scipion.engine.ctf import CtfParameters, compute_ctf_2d, electron_wavelength


def params(**kw):
    base = dict(
        defocus_u=15000.0,
        defocus_v=13000.0,
        defocus_angle=30.0,
        voltage=300.0,
        cs=2.7,
        amplitude_contrast=0.1,
        phase_shift=0.0,
        bfactor=0.0,
        scale=1.0,
    )
    base.update(kw)
    return CtfParameters(**{k: torch.tensor([v]) for k, v in base.items()})


def textbook_ctf(sx, sy, du, dv, angle_deg, kv, cs_mm, q, phase_deg, bfac):
    """CTF = sqrt(1-Q^2) sin(gamma) + Q cos(gamma), gamma = pi lambda df s^2 - pi/2 Cs lambda^3 s^4 +
    phase."""
    v = kv * 1e3
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    lam = h / math.sqrt(2 * m0 * e * v * (1 + e * v / (2 * m0 * c**2))) * 1e10  # A, from constants
    s2 = sx**2 + sy**2
    theta = np.arctan2(sy, sx)
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2 * (theta - math.radians(angle_deg)))
    gamma = math.pi * lam * df * s2 - 0.5 * math.pi * cs_mm * 1e7 * lam**3 * s2**2 + math.radians(phase_deg)
    return (math.sqrt(1 - q * q) * np.sin(gamma) + q * np.cos(gamma)) * np.exp(-bfac * s2 / 4)


def test_wavelength_300kv():
    assert abs(float(electron_wavelength(torch.tensor(300.0))) - 0.019687) < 1e-5


def test_matches_textbook_formula_with_astigmatism_phase_plate_and_bfactor():
    n, apix = 96, 1.3
    p = dict(
        defocus_u=21000.0,
        defocus_v=17500.0,
        defocus_angle=-37.0,
        voltage=200.0,
        cs=1.4,
        amplitude_contrast=0.07,
        phase_shift=35.0,
        bfactor=40.0,
    )
    ours = compute_ctf_2d(params(**p), n, apix)[0].double().numpy()
    ky = (np.arange(n) - n // 2)[:, None] / (n * apix)
    kx = np.arange(n // 2 + 1)[None, :] / (n * apix)
    theirs = textbook_ctf(
        kx,
        ky,
        p["defocus_u"],
        p["defocus_v"],
        p["defocus_angle"],
        p["voltage"],
        p["cs"],
        p["amplitude_contrast"],
        p["phase_shift"],
        p["bfactor"],
    )
    assert np.abs(ours - theirs).max() < 2e-3


def test_first_zero_of_a_pure_phase_ctf():
    # Cs = 0, Q = 0: CTF = sin(pi lambda df s^2), first zero at s^2 = 1 / (lambda df)
    n, apix, df = 256, 1.0, 20000.0
    ctf = compute_ctf_2d(params(defocus_u=df, defocus_v=df, cs=0.0, amplitude_contrast=0.0), n, apix)[0]
    row = ctf[n // 2, 1:].numpy()  # along kx, ky = 0
    first_zero = np.nonzero(np.diff(np.sign(row)))[0][0] + 1.5  # between samples, in pixels
    expected = math.sqrt(1 / (float(electron_wavelength(torch.tensor(300.0))) * df)) * n * apix
    assert abs(first_zero - expected) < 1.0
    assert row[0] > 0  # RELION's sign: positive contrast at low frequency
