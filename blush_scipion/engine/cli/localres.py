"""Local resolution of a refinement's half maps, as relion_postprocess --locres: the phase-randomised,
mask-corrected FSC in soft spherical windows on a grid, read at 0.143 and blended between windows.
Writes MAP (local resolution, A), MAP's stem + _filtered.mrc (the half maps' average, FSC-weighted and
low-passed at each place's resolution) and MAP's stem + .json (the windows, and the median local
resolution inside the mask when one is given)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..localres import local_resolution
from ..mrc import write_map
from ..option import option
from .maps import add_half_maps, read_half_maps, read_mask
from .options import add_settings, positive, settings_from


@dataclass(frozen=True)
class LocalresSettings:
    """local_resolution's settings (its keywords), each declared once, for the command line."""

    sampling: float = option(25.0, "distance between windows, A (%(default)s, as RELION)", kind="positive")
    radius: float | None = option(
        None, "window radius, A (default: half the sampling, as RELION)", kind="positive"
    )
    edge: float | None = option(
        None, "window's soft edge, A (default: the sampling, as RELION)", kind="non_negative"
    )
    randomize_at: float = option(
        25.0, "randomise phases past this resolution, A (%(default)s, as RELION)", kind="positive"
    )
    min_resolution: float = option(
        50.0, "coarsest local resolution reported", kind="positive", unit="A", flag="minres"
    )
    bfactor: float = option(0.0, "B-factor for the filtered map, negative sharpens", kind="float", unit="A^2")
    batch: int = option(8, "windows per FFT batch", kind="count")


def add_args(p):
    add_half_maps(p, "local-resolution map to write (.mrc)")
    p.add_argument(
        "--mask",
        help="solvent mask (.mrc): windows that miss it are skipped, and the median "
        "local resolution inside it is reported",
    )
    p.add_argument("--angpix", type=positive, help="pixel size, A (default: the half maps' header)")
    add_settings(p, LocalresSettings)


def main(args):
    t0 = time.time()
    out = Path(args.out)  # one of the inputs is refused before this (cli.check_out)
    half1, half2, apix = read_half_maps(args)
    mask = read_mask(args.mask, half1.shape) if args.mask else None
    try:
        result = local_resolution(
            half1, half2, apix, **asdict(settings_from(LocalresSettings, args)), mask=mask
        )
    except ValueError as e:
        raise ValueError(f"{args.mask}: {e}") from e
    filtered = out.with_name(out.stem + "_filtered.mrc")
    write_map(out, result.resolution, apix)
    write_map(filtered, result.filtered, apix)
    record = {
        "half1": args.half1,
        "half2": args.half2,
        "mask": args.mask,
        "out": str(out),
        "filtered": str(filtered),
        "pixel_size": apix,
        "box": half1.shape[-1],
        "windows": len(result.centres),
        "window_resolution_median": float(result.window_resolution.median()),
        "seconds": None,
    }
    if mask is not None:
        record["median_in_mask"] = float(result.resolution[mask > 0.5].median())
    record["seconds"] = round(time.time() - t0, 2)
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    inside = f"; median inside the mask {record['median_in_mask']:.2f} A" if mask is not None else ""
    print(f"local resolution from {len(result.centres)} windows{inside} -> {out}, {filtered}")
