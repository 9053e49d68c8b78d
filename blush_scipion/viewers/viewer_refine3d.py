"""Scipion viewer for 3D auto-refine: FSC, resolution per iteration, central slices."""
import os

from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..protocols import ProtBlushRefine3D
from ..reports.plots import plot_fsc, plot_progress
from ..reports.refine import refine_fsc_curve, refine_history


class BlushRefine3DViewer(Viewer):
    """FSC (0.143 and 0.5 lines), resolution per iteration and central slices of the refined map."""
    _label = "viewer 3D auto-refine"
    _targets = [ProtBlushRefine3D]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, prot, **kwargs):
        if not os.path.exists(prot._getExtraPath("summary.json")):
            return [self.errorMessage("The refinement has not finished yet.")]
        plotter = EmPlotter(x=1, y=2, mainTitle=prot.getRunName(), windowTitle="Blush 3D auto-refine")
        plot_fsc(plotter.createSubPlot("FSC", "spatial frequency (1/A)", "FSC"),
                 {prot.getRunName(): refine_fsc_curve(prot._getExtraPath)})
        plot_progress(plotter.createSubPlot("Progress", "iteration", "resolution (A)"),
                      {prot.getRunName(): refine_history(prot._getExtraPath)})
        return [plotter]
