"""Scipion viewer for 2D classification: the class averages and the resolution per iteration."""

import json
import os
from pathlib import Path

import numpy as np
from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..engine.mrc import read_stack
from ..protocols import ProtBlushClassify2D
from ..reports.classes import class_gallery


class BlushClassify2DViewer(Viewer):
    """Class averages, largest first, labelled with their share of the particles and resolution."""

    _label = "viewer 2D classification"
    _targets = [ProtBlushClassify2D]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, prot, **kwargs):
        if not os.path.exists(prot._getExtraPath("summary.json")):
            return [self.errorMessage("The classification has not finished yet.")]
        s = json.loads(Path(prot._getExtraPath("summary.json")).read_text())
        images = read_stack(prot._getExtraPath("run_classes.mrcs")).numpy()
        cols = min(6, len(images))
        rows = -(-len(images) // cols)
        plotter = EmPlotter(
            x=rows,
            y=cols,
            mainTitle=prot.getRunName(),
            windowTitle="Blush 2D classes",
            figsize=(1.8 * cols, 1.9 * rows + 0.4),
        )
        axes = np.array([plotter.createSubPlot("", "", "") for _ in range(rows * cols)])
        class_gallery(axes, images, s["class_distribution"], s["class_resolution_angstrom"])
        return [plotter]
