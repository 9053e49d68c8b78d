"""Fourier shell correlation between two maps: the curve, and the resolution at FSC 0.143 and
0.5. With --mask, the masked FSC corrected by phase randomisation (as relion_postprocess). With
--fit, map1 is first fitted onto map2 by a local rigid search (a refined map against a reference
or a model's map, whose frames may differ by a few degrees)."""

from __future__ import annotations

import json

import torch

from ..atomic import atomic_path
from ..fit import fit_rigid, transform_map
from ..fsc import fourier_shell_correlation, mask_corrected_fsc, resolution_at, shell_resolutions
from ..mrc import MapError, read_map, read_map_pair
from ..rotation import angular_distance


def add_args(p):
    p.add_argument("map1")
    p.add_argument("map2")
    p.add_argument("--mask", help="soft mask (.mrc) for the corrected masked FSC")
    p.add_argument("--json", help="write curve and numbers to this JSON file")
    p.add_argument(
        "--fit",
        action="store_true",
        help="fit map1 onto map2 first (rotation and shift, local search); never for half maps",
    )


def main(args):
    a, b, apix_a = read_map_pair(args.map1, args.map2)
    n = a.shape[-1]
    result = {"map1": args.map1, "map2": args.map2, "pixel_size": apix_a, "box": n}
    if args.fit:
        rotation, shift, corr = fit_rigid(a, b, apix_a)
        a = transform_map(a, rotation, shift)
        angle = float(angular_distance(rotation, torch.eye(3)))
        result["fit"] = {
            "rotation": rotation.tolist(),
            "shift_px": shift.tolist(),
            "angle_deg": round(angle, 3),
            "correlation": round(corr, 4),
        }
        print(
            f"map1 fitted onto map2: turned {angle:.2f} deg, shifted {float(shift.norm()):.2f} px, "
            f"correlation {corr:.3f}"
        )
    if args.mask:
        mask, apix_m = read_map(args.mask)
        if mask.shape != a.shape:
            raise MapError(
                f"{args.mask}: mask shape {tuple(mask.shape)} differs from the maps' {tuple(a.shape)}"
            )
        curves = mask_corrected_fsc(a, b, mask)
        fsc = curves["corrected"]
        named_curves = {
            "unmasked": curves["unmasked"],
            "masked": curves["masked"],
            "random_masked": curves["random_masked"],
            "corrected": curves["corrected"],
        }
        result.update({k: [round(float(x), 5) for x in v] for k, v in named_curves.items()})
        result["randomize_from_shell"] = curves["randomize_from_shell"]
    else:
        fsc = fourier_shell_correlation(a, b)
    result["fsc"] = [round(float(x), 5) for x in fsc]
    result["resolution_angstrom"] = [round(float(x), 3) for x in shell_resolutions(n, apix_a)[1:]]
    result["resolution_0143"] = resolution_at(fsc, 0.143, n, apix_a)
    result["resolution_05"] = resolution_at(fsc, 0.5, n, apix_a)
    print(f"{'shell':>5} {'resolution (A)':>14} {'FSC':>7}")
    for k in range(1, len(fsc)):
        print(f"{k:5d} {n * apix_a / k:14.2f} {float(fsc[k]):7.3f}")
    print(f"resolution at FSC 0.143: {result['resolution_0143']:.2f} A")
    print(f"resolution at FSC 0.5:   {result['resolution_05']:.2f} A")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
