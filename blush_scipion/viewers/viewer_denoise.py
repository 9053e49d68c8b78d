"""Scipion viewer for denoising: the denoised map's central slices beside the half maps'."""

import os

import numpy as np
from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..protocols import ProtBlushDenoise
from ..reports.denoise import denoise_maps, denoise_title, plot_denoise_slices


class BlushDenoiseViewer(Viewer):
    """Central slices (xy, xz, yz) of half 1, half 2 and the denoised map side by side, titled with the
    half maps' resolution and the spectral trailing (as extra/slices.png)."""

    _label = "viewer denoise"
    _targets = [ProtBlushDenoise]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, prot, **kwargs):
        if not os.path.exists(prot._getExtraPath("denoised.json")):
            return [self.errorMessage("The denoising has not finished yet.")]
        maps = denoise_maps(prot._getExtraPath)
        plotter = EmPlotter(
            x=3, y=len(maps), mainTitle=prot.getRunName(), windowTitle="Blush denoise", figsize=(8, 8.3)
        )
        axes = np.array([plotter.createSubPlot("", "", "") for _ in range(3 * len(maps))])
        plot_denoise_slices(axes, maps)
        axes[0].figure.suptitle(f"{prot.getRunName()}\n{denoise_title(prot._getExtraPath)}", fontsize=10)
        return [plotter]
