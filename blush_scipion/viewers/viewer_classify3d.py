"""Scipion viewer for 3D classification: the class maps' central slices, the classes per iteration,
and each class's angular distribution."""

import os

import numpy as np
from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..protocols import ProtBlushClassify3D
from ..reports.classes3d import (
    class3d_angles,
    class3d_gallery,
    class3d_maps,
    class3d_summary,
    plot_class_angles,
    plot_class_progress,
)


class BlushClassify3DViewer(Viewer):
    """Central slices (xy, xz, yz) of each class map, largest class first, labelled with its share of
    the particles and resolution; share, resolution and changes of class per iteration; angular
    distribution per class."""

    _label = "viewer 3D classification"
    _targets = [ProtBlushClassify3D]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, prot, **kwargs):
        if not os.path.exists(prot._getExtraPath("summary.json")):
            return [self.errorMessage("The classification has not finished yet.")]
        extra, title = prot._getExtraPath, prot.getRunName()
        s = class3d_summary(extra)
        k = s["classes"]
        slices = EmPlotter(
            x=k, y=3, mainTitle=title, windowTitle="Blush 3D classes", figsize=(5.4, 1.9 * k + 0.6)
        )
        axes = np.array([slices.createSubPlot("", "", "") for _ in range(3 * k)])
        class3d_gallery(axes, class3d_maps(extra, k), s["class_distribution"], s["class_resolution_angstrom"])
        progress = EmPlotter(
            x=1, y=3, mainTitle=title, windowTitle="Blush 3D classification progress", figsize=(14, 4.5)
        )
        plot_class_progress([progress.createSubPlot("", "", "") for _ in range(3)], s["history"])
        cols = min(k, 4)
        rows = -(-k // cols)
        angles = EmPlotter(
            x=rows,
            y=cols,
            mainTitle=title,
            figsize=(4.5 * cols, 3.5 * rows),
            windowTitle="Blush 3D classes: angular distribution",
        )
        plot_class_angles([angles.createSubPlot("", "", "") for _ in range(k)], k, *class3d_angles(extra))
        return [slices, progress, angles]
