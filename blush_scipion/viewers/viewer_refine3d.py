"""Scipion viewer for 3D auto-refine: FSC, resolution per iteration, angular distribution, central slice."""

import os

from ..engine.mrc import read_map
from ..protocols import ProtBlushRefine3D
from ..reports.plots import plot_angular_distribution, plot_fsc, plot_progress
from ..reports.refine import refine_angles, refine_fsc_curve, refine_history
from .run_viewer import RunViewer, run_plotter


class BlushRefine3DViewer(RunViewer):
    """FSC (0.143 and 0.5 lines) and resolution per iteration of the refined map, beside those of
    the project's other finished 3D auto-refine runs on the same particles (Blush against the
    standard prior, when both were run); the run's angular distribution and its map's central slice."""

    _label = "viewer 3D auto-refine"
    _targets = [ProtBlushRefine3D]
    _waiting = "The refinement has not finished yet."

    def _plots(self, prot):
        runs = [prot] + self._companions(prot)
        plotter = run_plotter(prot, "Blush 3D auto-refine", 2, 2, (12, 9))
        plot_fsc(
            plotter.createSubPlot("FSC", "spatial frequency (1/Å)", "FSC"),
            {_label(r): refine_fsc_curve(r._getExtraPath) for r in runs},
        )
        plot_progress(
            plotter.createSubPlot("Progress", "iteration", "resolution (Å)"),
            {_label(r): refine_history(r._getExtraPath) for r in runs},
        )
        plot_angular_distribution(
            plotter.createSubPlot("Angular distribution", "rot", "tilt"), *refine_angles(prot._getExtraPath)
        )
        volume = read_map(prot._getExtraPath("run_class001.mrc"))[0].numpy()
        ax = plotter.createSubPlot("Central slice (xy)", "x", "y")
        ax.imshow(volume[volume.shape[0] // 2], cmap="gray", origin="lower")
        ax.axis("off")
        return [plotter]

    def _companions(self, prot) -> list:
        """The project's other finished 3D auto-refine runs on the same particles."""

        def source(run):
            return run.inputParticles.getObjValue().getObjId(), run.inputParticles.getExtended()

        return [
            run
            for run in self.getProject().getRuns()
            if isinstance(run, ProtBlushRefine3D)
            and run.getObjId() != prot.getObjId()
            and run.isFinished()
            and source(run) == source(prot)
            and os.path.exists(self._resultFile(run))
        ]


def _label(run) -> str:
    return f"{'Blush' if run.useBlush.get() else 'standard prior'} (run {run.getObjId()})"
