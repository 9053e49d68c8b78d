"""What a denoise run wrote (denoised.mrc and its .json), as plot data, and the denoised map's central
slices beside the half maps' as a PNG (no Scipion import)."""

import json

import numpy as np

from ..engine.mrc import read_map
from .plots import plot_central_slices, render_png


def denoise_record(extra) -> dict:
    """denoised.json: half1, half2, weights, resolution_0143, trailing_shell, fsc, seconds, ..."""
    with open(extra("denoised.json")) as f:
        return json.load(f)


def denoise_maps(extra) -> dict[str, np.ndarray]:
    """{label: [z, y, x] map} for half 1, half 2 (the paths the engine read) and the denoised map."""
    r = denoise_record(extra)
    paths = {"half 1": r["half1"], "half 2": r["half2"], "denoised": extra("denoised.mrc")}
    return {label: read_map(path)[0].numpy() for label, path in paths.items()}


def denoise_title(extra) -> str:
    r = denoise_record(extra)
    trailing = (
        f"low-passed past shell {r['trailing_shell']}"
        if r["trailing_shell"] is not None
        else "no spectral trailing"
    )
    return f"Half maps at {r['resolution_0143']:.2f} Å (FSC 0.143); denoised, {trailing}"


def plot_denoise_slices(axes, maps: dict[str, np.ndarray], title: str = "") -> None:
    """A (3, M) grid of Axes: the xy, xz and yz central slices (rows) of each map (columns)."""
    axes = np.asarray(axes).reshape(3, len(maps))
    for column, (label, volume) in zip(axes.T, maps.items()):
        plot_central_slices(column, volume, label)
    if title:
        axes[0, 0].figure.suptitle(title, fontsize=10)


def write_denoise_png(extra) -> str:
    """slices.png beside the run's files; `extra(name)` gives a path."""
    maps, title = denoise_maps(extra), denoise_title(extra)
    return render_png(
        extra("slices.png"),
        lambda axes: plot_denoise_slices(axes, maps, title),
        size=(8, 8.3),
        ncols=len(maps),
        nrows=3,
    )
