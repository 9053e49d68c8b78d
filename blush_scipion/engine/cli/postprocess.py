"""Post-processing of a refinement's half maps, as relion_postprocess: a solvent mask (given, or
made from the half maps' average as relion_mask_create would), the masked FSC corrected by phase
randomisation, the final resolution at FSC 0.143, FSC weighting, a B-factor from the Guinier plot
(or the one given), sharpening and a low-pass at the final resolution. Writes DIR/postprocess.mrc,
postprocess_masked.mrc, postprocess_mask.mrc, postprocess.star (RELION's tables) and summary.json."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..mrc import write_map
from ..option import option
from ..postprocess import (
    MASK_LOW_PASS,
    NOISE_SIGMAS,
    PEAK_FRACTION,
    PostprocessResult,
    automatic_mask,
    postprocess_half_maps,
)
from ..star import write_star
from .maps import add_half_maps, read_half_maps, read_mask
from .options import add_settings, positive

OUTPUTS = (
    "postprocess.mrc",
    "postprocess_masked.mrc",
    "postprocess_mask.mrc",
    "postprocess.star",
    "summary.json",
)


@dataclass(frozen=True)
class PostprocessSettings:
    """The settings of automatic_mask and postprocess_half_maps, each declared once, for the command
    line (main reads them from the parsed arguments under these names)."""

    bfactor: float | None = option(
        None,
        "B-factor to apply, A^2, negative sharpens (RELION's --adhoc_bfac); default: fitted "
        "to the Guinier plot (RELION's --auto_bfac)",
        kind="float",
    )
    autob_lowres: float = option(
        10.0, "lowest resolution in the B-factor fit, A (%(default)s, as RELION)", kind="positive"
    )
    autob_highres: float | None = option(
        None,
        "highest resolution in the B-factor fit, A (default: the final resolution; 0: as far "
        "as the FSC weighting reaches, RELION 3.1's default)",
        kind="non_negative",
    )
    low_pass: float | None = option(
        None,
        "low-pass the result at this resolution, A (default: the final resolution; 0: none)",
        kind="non_negative",
    )
    mask_threshold: float | None = option(
        None,
        f"density threshold of the automatic mask, on the average low-passed at {MASK_LOW_PASS:g} A "
        f"(default: the solvent's median plus the larger of {NOISE_SIGMAS:g} noise standard deviations, "
        f"measured on the half maps' difference, and {PEAK_FRACTION:g} of the peak's height)",
        kind="float",
    )
    mask_extend: float = option(
        3.0,
        "grow the thresholded mask by this many voxels (%(default)s; relion_mask_create --extend_inimask)",
        kind="non_negative",
    )
    mask_soft_edge: float = option(
        6.0,
        "raised-cosine edge of the mask, voxels (%(default)s; relion_mask_create --width_soft_edge)",
        kind="non_negative",
    )
    seed: int = option(0, "seed of the phase randomisation", kind="int")


def add_args(p):
    add_half_maps(p, "output folder")
    p.add_argument(
        "--mask", help="soft solvent mask (.mrc, values in [0, 1]); default: made from the half maps"
    )
    p.add_argument("--angpix", type=positive, help="pixel size, A (default: the half maps' header)")
    add_settings(p, PostprocessSettings)


def star_tables(result: PostprocessResult, args, n: int, pixel_size: float) -> dict:
    """postprocess.star's blocks, with RELION 3.1's labels."""
    solvent_fraction = 0.476 / max(float((result.mask > 0.5).float().mean()), 1e-9)  # RELION's sphere-to-box
    general = {
        "rlnFinalResolution": result.resolution,
        "rlnBfactorUsedForSharpening": result.bfactor,
        "rlnUnfilteredMapHalf1": args.half1,
        "rlnUnfilteredMapHalf2": args.half2,
        "rlnParticleBoxFractionSolventMask": solvent_fraction,
        "rlnMaskName": args.mask or str(Path(args.out) / "postprocess_mask.mrc"),
        "rlnRandomiseFrom": n * pixel_size / result.randomize_from_shell,
    }
    if args.bfactor is None:
        general.update(
            {
                "rlnFittedSlopeGuinierPlot": result.guinier.slope,
                "rlnFittedInterceptGuinierPlot": result.guinier.intercept,
                "rlnCorrelationFitGuinierPlot": result.guinier.correlation,
            }
        )
    shells = range(n // 2 + 1)
    angstrom = [n * pixel_size / k if k else 999.0 for k in shells]
    unmasked = result.fsc_unmasked.double()
    fsc = pd.DataFrame(
        {
            "rlnSpectralIndex": list(shells),
            "rlnResolution": [1 / a for a in angstrom],
            "rlnAngstromResolution": angstrom,
            "rlnFourierShellCorrelationCorrected": result.fsc_corrected.tolist(),
            # cisTEM's estimate from the unmasked FSC and the mask's share of the box (RELION writes it too)
            "rlnFourierShellCorrelationParticleMaskFraction": (
                solvent_fraction * unmasked / (1 + (solvent_fraction - 1) * unmasked)
            ).tolist(),
            "rlnFourierShellCorrelationUnmaskedMaps": result.fsc_unmasked.tolist(),
            "rlnFourierShellCorrelationMaskedMaps": result.fsc_masked.tolist(),
            "rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps": result.fsc_random_masked.tolist(),
        }
    )
    g = result.guinier
    guinier = pd.DataFrame(
        {
            "rlnResolutionSquared": g.resolution_squared.tolist(),
            "rlnLogAmplitudesOriginal": g.original.tolist(),
            "rlnLogAmplitudesWeighted": g.weighted.tolist(),
            "rlnLogAmplitudesSharpened": g.sharpened.tolist(),
        }
    )
    if args.bfactor is None:
        guinier["rlnLogAmplitudesIntercept"] = g.intercept
    return {"general": general, "fsc": fsc, "guinier": guinier}


def main(args):
    t0 = time.time()
    out = Path(args.out)
    inputs = {Path(p).resolve() for p in (args.half1, args.half2, args.mask) if p}
    clash = [name for name in OUTPUTS if (out / name).resolve() in inputs]
    if clash:
        raise ValueError(f"{out / clash[0]}: is an input; choose another --out")
    half1, half2, apix = read_half_maps(args)
    threshold = None
    if args.mask:
        mask = read_mask(args.mask, half1.shape)
    else:
        try:
            mask, threshold = automatic_mask(
                half1,
                half2,
                apix,
                args.mask_threshold,
                extend=args.mask_extend,
                soft_edge=args.mask_soft_edge,
            )
        except ValueError as e:
            raise ValueError(f"{args.half1}: automatic mask: {e}") from e
    result = postprocess_half_maps(
        half1,
        half2,
        mask,
        apix,
        bfactor=args.bfactor,
        low_pass_resolution=args.low_pass,
        autob_lowres=args.autob_lowres,
        autob_highres=args.autob_highres,
        seed=args.seed,
    )
    n = half1.shape[-1]
    write_map(out / "postprocess_mask.mrc", mask, apix)
    write_map(out / "postprocess.mrc", result.sharpened, apix)
    write_map(out / "postprocess_masked.mrc", result.sharpened * mask, apix)
    write_star(out / "postprocess.star", star_tables(result, args, n, apix))
    summary = {
        "half1": args.half1,
        "half2": args.half2,
        "mask": args.mask,
        "mask_threshold": threshold,
        "pixel_size": apix,
        "box": n,
        "resolution_angstrom": result.resolution,
        "bfactor": result.bfactor,
        "bfactor_fitted": args.bfactor is None,
        "guinier_correlation": result.guinier.correlation,
        "low_pass_angstrom": result.low_pass,
        "randomize_from_shell": result.randomize_from_shell,
        "mask_used_for_resolution": result.mask_used,
        "seconds": round(time.time() - t0, 2),
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    if not result.mask_used:
        print(
            "warning: the unmasked FSC reaches further than the mask-corrected one; the mask is ignored for "
            "the resolution (as RELION without --force_mask): check the mask"
        )
    print(
        f"final resolution {result.resolution:.2f} A, B-factor {result.bfactor:.1f} A^2"
        f"{' (fitted)' if args.bfactor is None else ''} -> {out}/postprocess.mrc"
    )
