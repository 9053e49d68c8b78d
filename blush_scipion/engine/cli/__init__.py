"""`blush <command>`: one module per command, each with add_args(parser) and main(args)."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "simulate": "particle images simulated from an atomic model, with CTF and noise",
    "reconstruct": "Wiener reconstruction from particles with known poses",
    "fsc": "Fourier shell correlation between two maps, with resolution estimates",
    "refine3d": "gold-standard 3D auto-refinement",
    "class2d": "2D classification: class averages over in-plane angles and shifts",
    "denoise": "Blush denoising of half maps, low-passed where their FSC ends",
    "train": "train the Blush denoiser on half maps simulated from atomic models",
    "relion-hook": "RELION's external reconstruction program (--external_reconstruct), plain or Blush",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blush", description="Blush regularization engine for cryo-EM")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_args(p)
        p.set_defaults(run=module.main)
    args = parser.parse_args(argv)
    # values below float32's normal range (the far edges of masked, regularised maps) run the
    # E-step's GEMMs ten times slower on CPU; they are zero for every purpose here
    import torch
    torch.set_flush_denormal(True)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError) as e:  # our file and input errors: one clear line, no trace
        print(f"blush {args.command}: error: {e}", file=sys.stderr)
        return 2

