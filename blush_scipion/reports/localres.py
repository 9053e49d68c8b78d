"""What a local-resolution run wrote (the map, the filtered map, the .json), as plot data, and its
slices as a PNG (no Scipion import)."""

import json

from ..engine.mrc import read_map
from .plots import plot_local_resolution_slices, render_png


def local_resolution_record(extra) -> dict:
    """localres.json: windows, window_resolution_median and, with a mask, median_in_mask (A)."""
    return json.loads(open(extra("localres.json")).read())


def local_resolution_maps(extra, mask_path: str | None = None):
    """(local resolution A, filtered map, where to colour) as [z, y, x] arrays: inside the mask when
    one was given, else wherever a window reached (the engine writes 0 elsewhere)."""
    resolution = read_map(extra("localres.mrc"))[0].numpy()
    density = read_map(extra("localres_filtered.mrc"))[0].numpy()
    inside = read_map(mask_path)[0].numpy() > 0.5 if mask_path else resolution > 0
    return resolution, density, inside & (resolution > 0)


def write_localres_png(extra, mask_path: str | None = None) -> str:
    """slices.png beside the run's files; `extra(name)` gives a path."""
    maps = local_resolution_maps(extra, mask_path)
    return render_png(
        extra("slices.png"), lambda axes: plot_local_resolution_slices(axes, *maps), size=(11, 3.6), ncols=3
    )
