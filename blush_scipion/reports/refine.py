"""What a 3D auto-refine run wrote, as plot data, and its plots as PNGs (no Scipion import)."""

import json

import starfile

from ..engine.mrc import read_map
from ..engine.particles import Particles
from .plots import plot_angular_distribution, plot_central_slices, plot_fsc, plot_progress, render_png


def refine_fsc_curve(extra):
    """(frequency 1/A, gold-standard FSC) from run_model.star; `extra(name)` gives a file's path."""
    curve = starfile.read(extra("run_model.star"), always_dict=True)["model_class_1"]
    return curve["rlnResolution"].to_numpy(), curve["rlnGoldStandardFsc"].to_numpy()


def refine_history(extra):
    """The per-iteration log of summary.json."""
    return json.loads(open(extra("summary.json")).read())["history"]


def refine_angles(extra):
    """(rot, tilt) in degrees of every particle in run_data.star."""
    table = Particles.read(extra("run_data.star")).table
    return table["rlnAngleRot"].to_numpy(), table["rlnAngleTilt"].to_numpy()


def write_refine_pngs(extra, label: str) -> list[str]:
    """The viewer's plots as PNGs beside the run's files (headless reports)."""
    paths = [
        render_png(extra("fsc.png"), lambda ax: plot_fsc(ax, {label: refine_fsc_curve(extra)})),
        render_png(extra("progress.png"), lambda ax: plot_progress(ax, {label: refine_history(extra)})),
        render_png(extra("angles.png"), lambda ax: plot_angular_distribution(ax, *refine_angles(extra))),
    ]
    volume = read_map(extra("run_class001.mrc"))[0].numpy()
    paths.append(
        render_png(
            extra("slices.png"), lambda axes: plot_central_slices(axes, volume), size=(9, 3.2), ncols=3
        )
    )
    return paths
