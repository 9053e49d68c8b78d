"""What a 3D classification run wrote, as plot data, and its plots as PNGs (no Scipion import)."""

import json

import numpy as np

from ..engine.mrc import read_map
from ..engine.particles import Particles
from .plots import plot_angular_distribution, render_png


def class3d_summary(extra) -> dict:
    """summary.json of the run; `extra(name)` gives a file's path."""
    with open(extra("summary.json")) as f:
        return json.load(f)


def class3d_maps(extra, classes: int) -> list[np.ndarray]:
    """The K class maps, [z, y, x] each."""
    return [read_map(extra(f"run_class{k:03d}.mrc"))[0].numpy() for k in range(1, classes + 1)]


def class3d_angles(extra) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class number, rot, tilt) of every particle in run_data.star."""
    table = Particles.read(extra("run_data.star")).table
    return (
        table["rlnClassNumber"].to_numpy().astype(int),
        table["rlnAngleRot"].to_numpy(),
        table["rlnAngleTilt"].to_numpy(),
    )


def class3d_gallery(axes, maps: list[np.ndarray], distribution, resolution) -> None:
    """One row per class, largest first, on a (K, 3) grid of Axes: central slices xy, xz, yz, each
    row labelled with the class's number, share and resolution."""
    axes = np.asarray(axes).reshape(len(maps), 3)
    for row, k in zip(axes, np.argsort(distribution)[::-1]):
        volume, n = maps[k], maps[k].shape[0]
        for ax, image in zip(row, (volume[n // 2], volume[:, n // 2], volume[:, :, n // 2])):
            ax.imshow(image, cmap="gray", origin="lower")
            ax.axis("off")
        # one title per row, over the middle panel: three short ones would collide with it
        row[1].set_title(
            f"class {k + 1}: {100 * distribution[k]:.1f}%, {resolution[k]:.1f} Å (xy, xz, yz)", fontsize=8
        )


def plot_class_progress(axes, history: list[dict]) -> None:
    """Three Axes: each class's share, each class's resolution, and the particles that changed class
    (with the mean change of orientation, where recorded), per iteration."""
    its = [h["iteration"] for h in history]
    shares = np.array([h["class_distribution"] for h in history])
    resolutions = np.array([h["class_resolution_angstrom"] for h in history])
    for k in range(shares.shape[1]):
        axes[0].plot(its, 100 * shares[:, k], marker="o", lw=2, label=f"class {k + 1}")
        axes[1].plot(its, resolutions[:, k], marker="o", lw=2, label=f"class {k + 1}")
    axes[2].plot(its, [100 * h["class_changes"] for h in history], marker="o", lw=2, color="black")
    moved = [(h["iteration"], h["angular_change"]) for h in history if h.get("angular_change") is not None]
    if moved:  # as RELION's viewer: changes of orientation beside changes of class
        twin = axes[2].twinx()
        twin.plot(*zip(*moved), marker="s", lw=1.5, ls="--", color="tab:red")
        twin.set_ylabel("mean change of orientation (deg)", color="tab:red")
    panels = (
        (axes[0], "Class distribution", "particles (%)"),
        (axes[1], "Class resolution", "resolution (Å)"),
        (axes[2], "Changes", "particles that changed class (%)"),
    )
    for ax, title, ylabel in panels:
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator  # here: importing the module must not load matplotlib

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].invert_yaxis()
    axes[0].legend(fontsize=7)


def plot_class_angles(axes, classes: int, numbers: np.ndarray, rot: np.ndarray, tilt: np.ndarray) -> None:
    """The angular distribution of each class's particles, one Axes per class."""
    axes = np.ravel(axes)
    for ax in axes[classes:]:  # the grid's spare places
        ax.axis("off")
    for k, ax in enumerate(axes[:classes], 1):
        inside = numbers == k
        if not inside.any():  # hexbin has nothing to bin
            ax.set_title(f"Class {k} (no particles)")
            ax.axis("off")
            continue
        plot_angular_distribution(ax, rot[inside], tilt[inside], title=f"Class {k}")


def write_class3d_pngs(extra, label: str) -> list[str]:
    """classes.png (central slices of each class map), progress.png and angles.png beside the run's
    files; `extra(name)` gives a path."""
    summary = class3d_summary(extra)
    k = summary["classes"]
    maps = class3d_maps(extra, k)

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4, 1.9 * k + 0.4), dpi=100)
    class3d_gallery(
        fig.subplots(k, 3, squeeze=False),
        maps,
        summary["class_distribution"],
        summary["class_resolution_angstrom"],
    )
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(extra("classes.png"))
    cols = min(k, 4)
    return [
        extra("classes.png"),
        render_png(
            extra("progress.png"),
            lambda axes: plot_class_progress(axes, summary["history"]),
            size=(14, 4),
            ncols=3,
        ),
        render_png(
            extra("angles.png"),
            lambda axes: plot_class_angles(axes, k, *class3d_angles(extra)),
            size=(4.5 * cols, 3.5 * -(-k // cols)),
            ncols=cols,
            nrows=-(-k // cols),
        ),
    ]
