"""RELION's external reconstruction program: set RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE="blush
relion-hook --blush" (RELION appends the STAR path) and run `relion_refine --external_reconstruct`.
Reads the STAR file RELION hands over and writes the map it names (rlnExtReconsResult): without
--blush the same map relion_external_reconstruct makes; with --blush Blush's reference (a half set's
denoised map trailed to the gold-standard FSC; the tau2-regularised map for the final joined map, the
denoised one beside it as *_denoised.mrc; in classification the denoised regularised map). The pixel
size and particle diameter come from the STAR (RELION 5) or the run's own files beside it (RELION
3.1, 4); --angpix and --diameter override them. Also installed as `relion_python_blush`, the program
RELION 5 calls."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
from pathlib import Path

import torch

from ..blush import TRAINED_RESOLUTION_MAX
from ..relion_hook import (
    blush_maps,
    external_reconstruct,
    gold_standard_resolution,
    output_path,
    read_hand_over,
    resolve_mode,
    write_result,
)
from .maps import add_weights
from .options import count, non_negative, positive


def add_args(p):
    p.add_argument("star", help="the *_external_reconstruct.star file RELION wrote")
    p.add_argument(
        "--out", help="write the map here instead of rlnExtReconsResult (as relion_external_reconstruct --o)"
    )
    p.add_argument(
        "--blush", action="store_true", help="answer with Blush's reference instead of the plain map"
    )
    add_weights(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda:N for the denoiser (%(default)s)")
    p.add_argument(
        "--angpix",
        type=positive,
        help="pixel size, A (default: rlnPixelSize in the STAR (RELION 5), else the run's model "
        "STAR beside it (RELION 3.1, 4)); needed by --blush, written in the map header",
    )
    p.add_argument(
        "--diameter",
        type=positive,
        help="particle diameter, A (default: rlnParticleDiameter in the STAR (RELION 5) or the "
        "run's optimiser STAR beside it, else 90%% of the box)",
    )
    p.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "refine", "final", "classification"],
        help="what --blush answers (%(default)s: refine for *half1*/*half2* files, final with "
        "an FSC, else classification, as RELION 5)",
    )
    p.add_argument(
        "--skip-spectral-trailing",
        action="store_true",
        help="--blush: keep the denoiser's output at all resolutions (inflates the FSC)",
    )
    p.add_argument(
        "--stride", type=count, help="--blush: voxels between denoiser blocks (default: half a block)"
    )
    p.add_argument(
        "--blush-from-resolution",
        type=non_negative,
        default=0.0,
        help="--blush: a half set whose gold-standard FSC has not reached this resolution, A, gets "
        f"the plain map (%(default)s: Blush from the first iteration, as RELION 5; blush refine3d "
        f"waits for {TRAINED_RESOLUTION_MAX:g} A, but RELION's first iterations stay coarser than that "
        "and, waiting, it ran at plain RELION's pace)",
    )


def run(args, log=print) -> Path:
    """Answer one hand-over; returns the path written. `log` gets one summary line."""
    t0 = time.time()
    h = read_hand_over(args.star)
    output_path(h, args.out)  # refused before the compute, not after
    apix = args.angpix or h.pixel_size
    if args.blush and apix is None:
        raise ValueError(
            f"{h.star}: no pixel size (no rlnPixelSize, as before RELION 5; MRC headers at 0; "
            "no RELION run's *_optimiser.star beside it): pass --angpix"
        )
    mode = resolve_mode(h, args.mode)
    # with --blush-from-resolution, as refine3d: a half set's Blush waits for its FSC to reach it
    waiting = (
        args.blush
        and apix is not None  # always with --blush (refused above)
        and mode == "refine"
        and 0 < args.blush_from_resolution < gold_standard_resolution(h, apix)
    )
    if not args.blush or waiting:
        out = write_result(h, external_reconstruct(h), apix, args.out)
        log(
            f"relion-hook: {h.star.name} -> {out} (box {h.ori_size}, current size {h.current_size}, "
            f"{time.time() - t0:.1f} s)"
            + (
                f"; plain map: its FSC has not reached {args.blush_from_resolution:g} A "
                "(--blush-from-resolution)"
                if waiting
                else ""
            )
        )
        return out
    assert apix is not None, "--blush without a pixel size is refused above"
    from ..blush.denoiser import load_denoiser  # torch model code only when Blush is asked for

    diameter = args.diameter or h.diameter or 0.9 * h.ori_size * apix
    denoiser = load_denoiser(args.weights, args.device, sha256=args.weights_sha256)
    with torch.no_grad():
        maps = blush_maps(
            h, denoiser, apix, diameter, mode, trailing=not args.skip_spectral_trailing, stride=args.stride
        )
    out = write_result(h, maps["result"], apix, args.out)
    if "denoised" in maps:
        write_result(h, maps["denoised"], apix, out.with_name(out.stem + "_denoised.mrc"))
    log(
        f"relion-hook: Blush ({mode}, weights {denoiser.source}) {h.star.name} -> {out} "
        f"(box {h.ori_size}, {apix:.3f} A, diameter {diameter:.0f} A, {time.time() - t0:.1f} s)"
    )
    return out


def main(args):
    run(args)


def _device(gpu: str | None) -> str:
    """RELION 5's --gpu: ids as '0,1,' (the first is used), '-1' or empty for any GPU, absent for the CPU."""
    if gpu is None:
        return "cpu"
    ids = [g for g in gpu.split(",") if g.strip() not in ("", "-1")]
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(ids[0])}" if ids else "cuda"


def relion_python_blush(argv: list[str] | None = None) -> int:
    """`relion_python_blush STAR [RELION 5 arguments]`: what RELION 5's relion_refine --blush runs.

    RELION reads our standard output and goes on only if it is exactly 'success', so everything
    else goes to standard error (an error also to standard output, which RELION then shows)."""
    p = argparse.ArgumentParser(prog="relion_python_blush", description=relion_python_blush.__doc__)
    p.add_argument("star", nargs="?", help="the *_external_reconstruct.star file RELION wrote")
    p.add_argument(
        "-m",
        "--model_name",
        default="v1.0",
        help="v1.0 (the weights shipped with this package) or a weights file (%(default)s)",
    )
    p.add_argument("-s", "--strides", type=int, help="voxels between denoiser blocks")
    p.add_argument("-b", "--batch_size", type=int, help="accepted; blocks are batched internally")
    p.add_argument("-g", "--gpu", nargs="?", const="-1", default=None, help="GPU ids ('0,1,'), or -1 for any")
    p.add_argument("--device_timeout", type=int, help="accepted; GPUs are not locked")
    p.add_argument("--debug", action="store_true", help="accepted; no debug maps are written")
    p.add_argument("--skip-spectral-trailing", action="store_true", help="use no spectral trailing (unsafe)")
    p.add_argument(
        "--angpix",
        type=positive,
        help="pixel size, A, if neither the STAR (rlnPixelSize) nor the run's files beside it give one",
    )
    p.add_argument(
        "--blush-from-resolution",
        type=non_negative,
        default=0.0,
        help="a half set whose FSC has not reached this, A, gets the plain map (%(default)s: from the "
        "first iteration, as RELION 5)",
    )
    args, unknown = p.parse_known_args(argv)
    weights = None if args.model_name in ("v1.0", "", None) else args.model_name
    try:
        with contextlib.redirect_stdout(sys.stderr):
            if unknown:
                print(f"relion_python_blush: ignoring arguments {' '.join(unknown)}")
            if weights is not None and not Path(weights).is_file():
                raise ValueError(f"model {weights!r}: not 'v1.0' and not a weights file")
            if args.star is None:  # RELION's installation check: can the model load?
                from ..blush.denoiser import load_denoiser

                load_denoiser(weights, "cpu")
                print("relion_python_blush: model loads; no STAR file given")
                return 0
            hook_args = argparse.Namespace(
                star=args.star,
                out=None,
                blush=True,
                weights=weights,
                weights_sha256=None,
                device=_device(args.gpu),
                angpix=args.angpix,
                diameter=None,
                mode="auto",
                skip_spectral_trailing=args.skip_spectral_trailing,
                stride=args.strides,
                blush_from_resolution=args.blush_from_resolution,
            )
            run(hook_args, log=lambda line: print(line, file=sys.stderr))
    except Exception as e:  # RELION shows our standard output when it is not 'success': say why there
        ours = isinstance(e, (ValueError, OSError))  # input errors: the message says it all
        if not ours:
            traceback.print_exc()
        print(f"relion_python_blush: error: {'' if ours else type(e).__name__ + ': '}{e}")
        return 1
    print("success")
    return 0


def relion_python_blush_entry() -> None:
    sys.exit(relion_python_blush())
