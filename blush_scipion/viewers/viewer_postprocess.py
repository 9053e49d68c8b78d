"""Scipion viewer for post-processing: the FSC curves and the Guinier plot with its fit."""

from ..protocols import ProtBlushPostprocess
from ..reports.plots import plot_fsc, plot_guinier
from ..reports.postprocess import fsc_title, guinier_title, postprocess_fsc_curves, postprocess_guinier
from .run_viewer import RunViewer, run_plotter


class BlushPostprocessViewer(RunViewer):
    """The corrected, masked, unmasked and phase-randomised FSC (0.143 and 0.5 lines), and the
    Guinier plot of the map before and after FSC weighting and sharpening, with the B-factor's fit
    (the same plots the run wrote as extra/fsc.png and extra/guinier.png)."""

    _label = "viewer post-process"
    _targets = [ProtBlushPostprocess]
    _waiting = "The post-processing has not finished yet."

    def _plots(self, prot):
        extra = prot._getExtraPath
        plotter = run_plotter(prot, "Blush post-process", 1, 2, (13, 5))
        plot_fsc(
            plotter.createSubPlot("FSC", "spatial frequency (1/Å)", "FSC"),
            postprocess_fsc_curves(extra),
            fsc_title(extra),
        )
        plot_guinier(
            plotter.createSubPlot("Guinier", "resolution² (1/Å²)", "ln(amplitude)"),
            *postprocess_guinier(extra, *prot._guinierFitRange()),
            title=guinier_title(extra),
        )
        return [plotter]
