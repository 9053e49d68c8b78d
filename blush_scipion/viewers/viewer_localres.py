"""Scipion viewer for local resolution: central slices coloured by local resolution."""

from ..protocols import ProtBlushLocalResolution
from ..reports.localres import local_resolution_maps
from ..reports.plots import plot_local_resolution_slices
from .run_viewer import RunViewer, blank_axes, run_plotter


class BlushLocalResolutionViewer(RunViewer):
    """Three orthogonal central slices of the filtered map, coloured by local resolution inside the
    mask (or wherever a window reached), with a colour bar in Å (as extra/slices.png)."""

    _label = "viewer local resolution"
    _targets = [ProtBlushLocalResolution]
    _result = "localres.json"
    _waiting = "The local resolution has not been computed yet."

    def _plots(self, prot):
        mask = prot.solventMask.get()
        maps = local_resolution_maps(prot._getExtraPath, mask.getFileName() if mask is not None else None)
        plotter = run_plotter(prot, "Blush local resolution", 1, 3, (13, 4.5))
        plot_local_resolution_slices(blank_axes(plotter, 3), *maps)
        return [plotter]
