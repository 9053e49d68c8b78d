"""Scipion viewer for 2D classification: the class averages and the resolution per iteration."""

from ..engine.mrc import read_stack
from ..protocols import ProtBlushClassify2D
from ..reports.classes import class_gallery
from .run_viewer import RunViewer, blank_axes, run_plotter


class BlushClassify2DViewer(RunViewer):
    """Class averages, largest first, labelled with their share of the particles and resolution."""

    _label = "viewer 2D classification"
    _targets = [ProtBlushClassify2D]
    _waiting = "The classification has not finished yet."

    def _plots(self, prot):
        s = prot._readSummary()
        images = read_stack(prot._getExtraPath("run_classes.mrcs")).numpy()
        cols = min(6, len(images))
        rows = -(-len(images) // cols)
        plotter = run_plotter(prot, "Blush 2D classes", rows, cols, (1.8 * cols, 1.9 * rows + 0.4))
        class_gallery(
            blank_axes(plotter, rows * cols), images, s["class_distribution"], s["class_resolution_angstrom"]
        )
        return [plotter]
