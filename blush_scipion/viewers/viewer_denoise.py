"""Scipion viewer for denoising: the denoised map's central slices beside the half maps'."""

from ..protocols import ProtBlushDenoise
from ..reports.denoise import denoise_maps, denoise_title, plot_denoise_slices
from .run_viewer import RunViewer, blank_axes, run_plotter


class BlushDenoiseViewer(RunViewer):
    """Central slices (xy, xz, yz) of half 1, half 2 and the denoised map side by side, titled with the
    half maps' resolution and the spectral trailing (as extra/slices.png)."""

    _label = "viewer denoise"
    _targets = [ProtBlushDenoise]
    _result = "denoised.json"
    _waiting = "The denoising has not finished yet."

    def _plots(self, prot):
        maps = denoise_maps(prot._getExtraPath)
        plotter = run_plotter(prot, "Blush denoise", 3, len(maps), (8, 8.3))
        axes = blank_axes(plotter, 3 * len(maps))
        plot_denoise_slices(axes, maps)
        axes[0].figure.suptitle(f"{prot.getRunName()}\n{denoise_title(prot._getExtraPath)}", fontsize=10)
        return [plotter]
