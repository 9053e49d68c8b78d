"""What every viewer of ours shares: it opens on the result file a run writes, says the run is not
there yet until then, and draws Scipion plot windows (EmPlotter) titled with the run's name."""

import os

import numpy as np
from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer


class RunViewer(Viewer):
    """Base of the plugin's viewers: `_plots(prot)` draws once `_resultFile(prot)` exists."""

    _environments = [DESKTOP_TKINTER]
    _result = "summary.json"  # in the run's extra/: the file the plots are read from
    _waiting = "The run has not finished yet."

    def _resultFile(self, prot) -> str:
        return prot._getExtraPath(self._result)

    def _visualize(self, prot, **kwargs):
        if not os.path.exists(self._resultFile(prot)):
            return [self.errorMessage(self._waiting)]
        return self._plots(prot)

    def _plots(self, prot) -> list:
        raise NotImplementedError


def run_plotter(prot, window: str, rows: int, cols: int, figsize: tuple) -> EmPlotter:
    """A plot window of rows x cols axes, headed by the run's name."""
    return EmPlotter(x=rows, y=cols, mainTitle=prot.getRunName(), windowTitle=window, figsize=figsize)


def blank_axes(plotter: EmPlotter, n: int) -> np.ndarray:
    """n untitled axes of the plotter, in reading order (for galleries of images and slices)."""
    return np.array([plotter.createSubPlot("", "", "") for _ in range(n)])
