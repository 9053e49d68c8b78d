"""Scipion viewer for denoiser training: the loss per optimiser step and on the validation set."""

import os

from pwem.viewers.plotter import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..protocols import ProtBlushTrain
from ..reports.train import plot_training_loss, train_record


class BlushTrainViewer(Viewer):
    """The training loss per step, its running mean and the loss on the fixed validation set (drawn
    once, from seeds no training sample uses) at the steps the engine measured it, on the same axes (as
    extra/loss.png); shown while the run goes on too, from the log the engine rewrites at each
    progress line. Logs from before the engine validated show the training loss alone."""

    _label = "viewer train denoiser"
    _targets = [ProtBlushTrain]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, prot, **kwargs):
        log = prot._weightsFile() + ".json"
        if not os.path.exists(log):
            return [self.errorMessage("The training has not logged a step yet.")]
        r = train_record(log)
        plotter = EmPlotter(
            x=1, y=1, mainTitle=prot.getRunName(), windowTitle="Blush train denoiser", figsize=(8, 5)
        )
        plot_training_loss(
            plotter.createSubPlot("", "", ""),
            r["losses"],
            r["settings"].get("steps"),
            validation=r.get("validation"),
        )
        return [plotter]
