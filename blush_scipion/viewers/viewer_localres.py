"""Scipion viewer for local resolution: central slices coloured by local resolution."""

import os

from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..protocols import ProtBlushLocalResolution
from ..reports.localres import local_resolution_maps
from ..reports.plots import plot_local_resolution_slices


class BlushLocalResolutionViewer(Viewer):
    """Three orthogonal central slices of the filtered map, coloured by local resolution inside the
    mask (or wherever a window reached), with a colour bar in Å (as extra/slices.png)."""

    _label = "viewer local resolution"
    _targets = [ProtBlushLocalResolution]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, prot, **kwargs):
        if not os.path.exists(prot._getExtraPath("localres.json")):
            return [self.errorMessage("The local resolution has not been computed yet.")]
        mask = prot.solventMask.get()
        maps = local_resolution_maps(prot._getExtraPath, mask.getFileName() if mask is not None else None)
        plotter = EmPlotter(
            x=1, y=3, mainTitle=prot.getRunName(), windowTitle="Blush local resolution", figsize=(13, 4.5)
        )
        plot_local_resolution_slices([plotter.createSubPlot("", "", "") for _ in range(3)], *maps)
        return [plotter]
