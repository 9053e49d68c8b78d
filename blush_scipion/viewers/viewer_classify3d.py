"""Scipion viewer for 3D classification: the class maps' central slices, the classes per iteration,
and each class's angular distribution."""

from ..protocols import ProtBlushClassify3D
from ..reports.classes3d import (
    class3d_angles,
    class3d_gallery,
    class3d_maps,
    class3d_summary,
    plot_class_angles,
    plot_class_progress,
)
from .run_viewer import RunViewer, blank_axes, run_plotter


class BlushClassify3DViewer(RunViewer):
    """Central slices (xy, xz, yz) of each class map, largest class first, labelled with its share of
    the particles and resolution; share, resolution and changes of class per iteration; angular
    distribution per class."""

    _label = "viewer 3D classification"
    _targets = [ProtBlushClassify3D]
    _waiting = "The classification has not finished yet."

    def _plots(self, prot):
        extra = prot._getExtraPath
        s = class3d_summary(extra)
        k = s["classes"]
        slices = run_plotter(prot, "Blush 3D classes", k, 3, (5.4, 1.9 * k + 0.6))
        maps = class3d_maps(extra, k)
        class3d_gallery(
            blank_axes(slices, 3 * k), maps, s["class_distribution"], s["class_resolution_angstrom"]
        )
        progress = run_plotter(prot, "Blush 3D classification progress", 1, 3, (14, 4.5))
        plot_class_progress(blank_axes(progress, 3), s["history"])
        cols = min(k, 4)
        rows = -(-k // cols)
        angles = run_plotter(
            prot, "Blush 3D classes: angular distribution", rows, cols, (4.5 * cols, 3.5 * rows)
        )
        plot_class_angles(blank_axes(angles, k), k, *class3d_angles(extra))
        return [slices, progress, angles]
