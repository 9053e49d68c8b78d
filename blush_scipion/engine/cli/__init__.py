"""`blush <command>`: one module per command, each with add_args(parser) and main(args)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

COMMANDS = {
    "simulate": "particle images simulated from an atomic model, with CTF and noise",
    "reconstruct": "Wiener reconstruction from particles with known poses",
    "fsc": "Fourier shell correlation between two maps, with resolution estimates",
    "refine3d": "gold-standard 3D auto-refinement",
    "class2d": "2D classification: class averages over in-plane angles and shifts",
    "class3d": "3D classification: K maps from one reference, standard or with Blush",
    "postprocess": "relion_postprocess: mask-corrected FSC, FSC weighting, B-factor sharpening",
    "localres": "local resolution from a sliding-window FSC of half maps (relion_postprocess --locres)",
    "denoise": "Blush denoising of half maps, low-passed where their FSC ends",
    "train": "train the Blush denoiser on half maps simulated from atomic models",
    "relion-hook": "RELION's external reconstruction program (--external_reconstruct), plain or Blush",
}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of ours (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def check_device(device: str) -> None:
    """Refuse a --device this machine does not have, before any work."""
    import torch

    try:
        d = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device}: not a device (cpu, cuda or cuda:N)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available to this torch ({torch.__version__})")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif d.type != "cpu":
        raise ValueError(f"--device {device}: only cpu and cuda are supported")


def check_out(args) -> None:
    """Refuse an --out that names one of the command's input files, or where nothing can be
    written, before any work (not after hours of it)."""
    out = getattr(args, "out", None)
    if not out:
        return
    target = Path(out).resolve()
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if name != "out" and isinstance(v, str) and Path(v).is_file() and Path(v).resolve() == target:
                raise ValueError(
                    f"{out}: --out names an input (--{name.replace('_', '-')}): refused, it would be "
                    "written over"
                )
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise ValueError(f"{out}: cannot write here ({existing} is not writable)")


def describe(error: Exception) -> str:
    """One line for an error: a file's name and what is wrong with it where there is a file."""
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, (ValueError, OSError)):
        return str(error)
    return (
        f"{type(error).__name__}: {error} (an internal error: run with --debug or BLUSH_DEBUG=1 for "
        "the traceback, and report it)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="blush", description="Blush regularization engine for cryo-EM")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (also BLUSH_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_args(p)
        p.set_defaults(run=module.main)
    args = parser.parse_args(argv)
    # after the commands' imports (numpy reads its float limits there, and warns if denormals are
    # already flushed), before the command's first large tensor
    from ..runtime import prepare_process

    prepare_process()
    try:
        if getattr(args, "device", None):
            check_device(args.device)
        check_out(args)
        return args.run(args) or 0
    except Exception as e:  # one clear line, no trace (KeyboardInterrupt still stops the run as Python does)
        if args.debug or os.environ.get("BLUSH_DEBUG"):
            raise
        print(f"blush {args.command}: error: {describe(e)}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, OSError)) else 1
