"""The denoise and train protocols' plots: the report functions on tiny files in the engine's formats,
and the Tk viewers' figures rendered headless in a real project (no protocol is run)."""

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("pyworkflow")

from PIL import Image  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from blush_scipion.engine.mrc import write_map  # noqa: E402
from blush_scipion.reports.denoise import denoise_maps, denoise_title, write_denoise_png  # noqa: E402
from blush_scipion.reports.train import train_record, write_train_png  # noqa: E402

WEIGHTS = "blush_finetuned.safetensors"  # ProtBlushTrain._weightsFile's name


def write_denoise_run(extra_dir: str, n: int = 16) -> None:
    """Half maps beside the folder, denoised.mrc and denoised.json in it, as `blush denoise` writes them."""
    os.makedirs(extra_dir, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    z, y, x = torch.meshgrid(*[torch.arange(n) - n / 2] * 3, indexing="ij")
    blob = torch.exp(-((x - 2) ** 2 + y**2 + (z + 1) ** 2) / 8)
    halves = [os.path.join(os.path.dirname(extra_dir), f"half{i}.mrc") for i in (1, 2)]
    for path in halves:
        write_map(path, blob + 0.3 * torch.randn(n, n, n, generator=g), 3.0)
    out = os.path.join(extra_dir, "denoised.mrc")
    write_map(out, blob, 3.0)
    record = {
        "half1": halves[0],
        "half2": halves[1],
        "out": out,
        "weights": "shipped",
        "pixel_size": 3.0,
        "box": n,
        "resolution_0143": 9.6,
        "trailing_shell": 5,
        "fsc": [1.0, 0.9, 0.6, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0],
        "seconds": 1.2,
    }
    with open(os.path.join(extra_dir, "denoised.json"), "w") as f:
        json.dump(record, f)


def write_train_log(extra_dir: str, done: int = 40, steps: int = 60, validation: bool = True) -> list[float]:
    """`<weights>.json` as blush.training.train rewrites it at a progress line: `done` of `steps` steps,
    the validation loss every 10 steps from step 0 (validation=False: a log from before the engine
    validated, without the key)."""
    os.makedirs(extra_dir, exist_ok=True)
    losses = list(0.3 * np.exp(-np.arange(done) / 15) + 0.1 + 0.01 * np.sin(np.arange(done)))
    record = {
        "settings": {"steps": steps, "learning_rate": 3e-4, "validation_samples": 8},
        "workers": 0,
        "ranks": 1,
        "sources": ["h1.mrc", "h2.mrc"],
        "losses": losses,
        "steps_done": done,
        "seconds": 12.0,
    }
    if validation:
        record["validation"] = [
            {"step": s, "loss": 0.35 * np.exp(-s / 20) + 0.12} for s in range(0, done + 1, 10)
        ]
    with open(os.path.join(extra_dir, WEIGHTS + ".json"), "w") as f:
        json.dump(record, f)
    return losses


def in_folder(folder: str):
    return lambda *names: os.path.join(folder, *names)


def check_png(path: str, min_size=(400, 300)) -> None:
    assert os.path.getsize(path) < 300_000
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        # something drawn: not one flat colour
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(2)) > 1


def test_denoise_report_draws_the_denoised_slices_beside_the_half_maps(tmp_path):
    extra = in_folder(str(tmp_path / "extra"))
    write_denoise_run(extra())
    maps = denoise_maps(extra)
    assert list(maps) == ["half 1", "half 2", "denoised"]
    assert all(m.shape == (16, 16, 16) for m in maps.values())
    assert "9.60 Å" in denoise_title(extra) and "shell 5" in denoise_title(extra)
    path = write_denoise_png(extra)
    assert path == extra("slices.png")
    check_png(path, (700, 700))


def validation_line(ax):
    """The axes' line labelled as the validation loss, or None."""
    return next((line for line in ax.lines if line.get_label().startswith("validation")), None)


def test_train_report_draws_the_loss_per_step_and_its_running_mean(tmp_path):
    extra = in_folder(str(tmp_path / "extra"))
    losses = write_train_log(extra())
    assert train_record(extra(WEIGHTS + ".json"))["losses"] == losses
    check_png(write_train_png(extra, WEIGHTS))
    write_train_log(extra(), validation=False)  # an older log: the training loss alone
    check_png(write_train_png(extra, WEIGHTS))

    from matplotlib.figure import Figure

    from blush_scipion.reports.train import plot_training_loss

    ax = Figure().subplots()
    plot_training_loss(ax, losses, total_steps=60)  # a running job: 40 of 60 steps logged
    per_step, mean = ax.lines
    assert len(per_step.get_xdata()) == 40 and len(mean.get_xdata()) == 40 - 3 + 1  # window 60 // 20
    assert "40 of 60 steps" in ax.get_title()
    ax = Figure().subplots()
    plot_training_loss(ax, losses[:1], total_steps=1)  # one step: no mean to draw
    assert len(ax.lines) == 1 and "(1 steps)" in ax.get_title()


def test_train_report_draws_the_validation_loss_on_the_same_axes(tmp_path):
    from matplotlib.figure import Figure

    from blush_scipion.reports.train import plot_training_loss

    extra = in_folder(str(tmp_path / "extra"))
    write_train_log(extra(), done=40, steps=60)
    record = train_record(extra(WEIGHTS + ".json"))
    ax = Figure().subplots()
    plot_training_loss(ax, record["losses"], 60, validation=record["validation"])
    per_step, mean, validation = ax.lines
    assert list(validation.get_xdata()) == [0, 10, 20, 30, 40]
    assert list(validation.get_ydata()) == [v["loss"] for v in record["validation"]]
    assert validation_line(ax) is validation
    assert f"{record['validation'][-1]['loss']:.3g}" in validation.get_label()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["per step", "mean of 3 steps", validation.get_label()]
    ax = Figure().subplots()
    plot_training_loss(ax, record["losses"], 60, validation=[])  # validation off (--validation-samples 0)
    assert len(ax.lines) == 2 and validation_line(ax) is None


class TestDenoiseTrainViewers(BaseTest):
    """The viewers Scipion offers for our denoise and train runs, their figures saved headless."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def _saved(self, protocol_class):
        prot = self.newProtocol(protocol_class)
        self.proj.saveProtocol(prot)  # a run folder, as the project window gives a new run
        return prot

    def _render(self, views, name):
        self.assertEqual(len(views), 1)
        path = self.proj.getTmpPath(name)
        views[0].savefig(path)
        check_png(path)

    def test_viewers_are_registered_for_the_protocols(self):
        from pyworkflow import Config
        from pyworkflow.viewer import DESKTOP_TKINTER

        from blush_scipion.protocols import ProtBlushDenoise, ProtBlushTrain
        from blush_scipion.viewers import BlushDenoiseViewer, BlushTrainViewer

        domain = Config.getDomain()
        for protocol, viewer in ((ProtBlushDenoise, BlushDenoiseViewer), (ProtBlushTrain, BlushTrainViewer)):
            self.assertIn(viewer, domain.findViewers(protocol(), DESKTOP_TKINTER))

    def test_denoise_viewer(self):
        from pyworkflow.viewer import MessageView

        from blush_scipion.protocols import ProtBlushDenoise
        from blush_scipion.viewers import BlushDenoiseViewer

        prot = self._saved(ProtBlushDenoise)
        viewer = BlushDenoiseViewer(project=self.proj)
        self.assertIsInstance(viewer._visualize(prot)[0], MessageView)  # not run yet
        write_denoise_run(prot._getExtraPath())
        views = viewer._visualize(prot)
        self.assertEqual(len(views[0].figure.axes), 9)
        self._render(views, "denoise_viewer.png")

    def test_train_viewer_also_while_the_run_goes_on(self):
        from pyworkflow.viewer import MessageView

        from blush_scipion.protocols import ProtBlushTrain
        from blush_scipion.viewers import BlushTrainViewer

        prot = self._saved(ProtBlushTrain)
        self.assertEqual(os.path.basename(prot._weightsFile()), WEIGHTS)
        viewer = BlushTrainViewer(project=self.proj)
        self.assertIsInstance(viewer._visualize(prot)[0], MessageView)
        write_train_log(prot._getExtraPath(), done=40, steps=60)
        views = viewer._visualize(prot)
        ax = views[0].figure.axes[0]
        self.assertIn("40 of 60 steps", ax.get_title())
        self.assertEqual(list(validation_line(ax).get_xdata()), [0, 10, 20, 30, 40])
        self.assertTrue(any(line.startswith("Validation loss (8 fixed blocks") for line in prot._summary()))
        self._render(views, "train_viewer.png")
        write_train_log(prot._getExtraPath(), done=40, steps=60, validation=False)  # an older log
        views = viewer._visualize(prot)
        self.assertIsNone(validation_line(views[0].figure.axes[0]))
        self.assertFalse(any("Validation" in line for line in prot._summary()))
        self._render(views, "train_viewer_old_log.png")
