"""Scipion viewer for denoiser training: the loss per optimiser step and on the validation set."""

from ..protocols import ProtBlushTrain
from ..reports.train import plot_training_loss, train_record
from .run_viewer import RunViewer, run_plotter


class BlushTrainViewer(RunViewer):
    """The training loss per step, its running mean and the loss on the fixed validation set (drawn
    once, from seeds no training sample uses) at the steps the engine measured it, on the same axes (as
    extra/loss.png); shown while the run goes on too, from the log the engine rewrites at each
    progress line. Logs from before the engine validated show the training loss alone."""

    _label = "viewer train denoiser"
    _targets = [ProtBlushTrain]
    _waiting = "The training has not logged a step yet."

    def _resultFile(self, prot) -> str:
        return prot._weightsFile() + ".json"

    def _plots(self, prot):
        r = train_record(self._resultFile(prot))
        plotter = run_plotter(prot, "Blush train denoiser", 1, 1, (8, 5))
        plot_training_loss(
            plotter.createSubPlot("", "", ""),
            r["losses"],
            r["settings"].get("steps"),
            validation=r.get("validation"),
        )
        return [plotter]
