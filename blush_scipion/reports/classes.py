"""What a 2D classification run wrote, as plot data, and its plots as PNGs (no Scipion import)."""

import json
from pathlib import Path

import numpy as np

from ..engine.mrc import read_stack
from .plots import plot_progress, render_png


def class_gallery(axes, images: np.ndarray, distribution, resolution) -> None:
    """Class averages on a grid of Axes, largest class first, each labelled with its share and resolution."""
    order = np.argsort(distribution)[::-1]
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, k in zip(np.ravel(axes), order):
        ax.imshow(images[k], cmap="gray", origin="lower")
        ax.set_title(f"{k + 1}: {100 * distribution[k]:.1f}%, {resolution[k]:.0f} Å", fontsize=7)


def write_class2d_pngs(extra, label: str) -> list[str]:
    """classes.png (the gallery) and progress.png beside the run's files; `extra(name)` gives a path."""
    summary = json.loads(Path(extra("summary.json")).read_text())
    images = read_stack(extra("run_classes.mrcs")).numpy()
    cols = min(10, len(images))
    rows = -(-len(images) // cols)

    def gallery(axes):
        class_gallery(axes, images, summary["class_distribution"], summary["class_resolution_angstrom"])

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.4 * cols, 1.5 * rows), dpi=100)
    gallery(fig.subplots(rows, cols, squeeze=False))
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(extra("classes.png"))
    return [
        extra("classes.png"),
        render_png(
            extra("progress.png"),
            lambda ax: plot_progress(
                ax,
                {label: summary["history"]},
                "2D classification progress",
                "best class resolution (A, SSNR 1)",
            ),
        ),
    ]
