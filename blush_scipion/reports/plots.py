"""The plots behind the viewers, drawn on any matplotlib Axes: in Scipion's Tk windows or,
headless, into PNG files (render_png)."""

from __future__ import annotations

import numpy as np


def _crossing(freq: np.ndarray, fsc: np.ndarray, threshold: float) -> float | None:
    """Frequency (1/A) where the curve first falls below `threshold`, interpolated."""
    below = np.nonzero(fsc[1:] < threshold)[0]
    if len(below) == 0:
        return None
    i = below[0] + 1
    f0, f1 = fsc[i - 1], fsc[i]
    return float(freq[i - 1] + (f0 - threshold) / (f0 - f1) * (freq[i] - freq[i - 1]))


def plot_fsc(ax, curves: dict[str, tuple], title: str = "Fourier shell correlation") -> None:
    """FSC curves {label: (frequency 1/A, fsc)} with the 0.143 and 0.5 lines and resolutions."""
    for label, (freq, fsc) in curves.items():
        freq, fsc = np.asarray(freq, float), np.asarray(fsc, float)
        marks = []
        for threshold in (0.143, 0.5):
            x = _crossing(freq, fsc, threshold)
            marks.append(f"{1 / x:.2f} Å" if x else "Nyquist")
        ax.plot(freq, fsc, lw=2, label=f"{label} (0.143: {marks[0]}, 0.5: {marks[1]})")
    for threshold, style in ((0.143, "--"), (0.5, ":")):
        ax.axhline(threshold, color="grey", ls=style, lw=1)
        ax.text(
            ax.get_xlim()[1] if ax.get_xlim()[1] > 0 else 0.25,
            threshold + 0.01,
            f"{threshold}",
            ha="right",
            color="grey",
            fontsize=8,
        )
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)


def plot_progress(
    ax,
    histories: dict[str, list[dict]],
    title: str = "Refinement progress",
    ylabel: str = "gold-standard resolution (A, FSC 0.143)",
) -> None:
    """Resolution per iteration for one or more runs {label: summary history}; changes of angular
    step, and the iteration from which Blush made the references, annotated where the history has them."""
    for label, history in histories.items():
        its = [h["iteration"] for h in history]
        res = [h["resolution"] for h in history]
        ax.plot(its, res, marker="o", lw=2, label=label)
        for h in history:
            if (
                h["iteration"] > 1
                and "angular_step" in h
                and h["angular_step"] != history[h["iteration"] - 2]["angular_step"]
            ):
                ax.annotate(
                    f"{h['angular_step']:.2f} deg",
                    (h["iteration"], h["resolution"]),
                    textcoords="offset points",
                    xytext=(0, 8),
                    fontsize=7,
                    ha="center",
                )
        blush = [h for h in history if h.get("blush")]
        if blush and not history[0].get("blush"):
            ax.annotate(
                "Blush from here",
                (blush[0]["iteration"], blush[0]["resolution"]),
                textcoords="offset points",
                xytext=(0, -14),
                fontsize=7,
                ha="center",
                color=ax.lines[-1].get_color(),
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_angular_distribution(
    ax, rot: np.ndarray, tilt: np.ndarray, title: str = "Angular distribution"
) -> None:
    """Particles per view direction: a hexagonal histogram of (rot, tilt) in degrees."""
    ax.hexbin(rot, tilt, gridsize=(36, 12), extent=(-180, 180, 0, 180), cmap="viridis", mincnt=1)
    ax.set_xlim(-180, 180)
    ax.set_ylim(180, 0)
    ax.set_xlabel("rot (deg)")
    ax.set_ylabel("tilt (deg)")
    ax.set_title(f"{title} ({len(rot)} particles)")


def plot_central_slices(axes, volume: np.ndarray, title: str = "") -> None:
    """Three orthogonal central slices (z, y, x) of a [z, y, x] map on three Axes."""
    n = volume.shape[0]
    for ax, (name, img) in zip(
        axes, (("xy", volume[n // 2]), ("xz", volume[:, n // 2]), ("yz", volume[:, :, n // 2]))
    ):
        ax.imshow(img, cmap="gray", origin="lower")
        ax.set_title(f"{title} {name}".strip(), fontsize=9)
        ax.axis("off")


def plot_guinier(
    ax, resolution_squared: np.ndarray, curves: dict[str, np.ndarray], fit=None, title: str = "Guinier plot"
) -> None:
    """ln(amplitude) per shell against 1/d^2 {label: curve} (RELION's -99 marks an empty shell and is
    left out); `fit` = (slope, intercept, (d_low, d_high) in A) draws the fitted line over its range."""
    x = np.asarray(resolution_squared, float)
    for label, y in curves.items():
        y = np.asarray(y, float)
        ax.plot(x[y > -99], y[y > -99], lw=2, label=label)
    if fit is not None:
        slope, intercept, (low, high) = fit
        span = np.linspace(1 / low**2, 1 / high**2, 50)
        ax.plot(
            span,
            intercept + slope * span,
            "k--",
            lw=1.5,
            label=f"fit {low:.1f}-{high:.1f} Å: B = {4 * slope:.1f} Å²",
        )
    ax.set_xlabel("resolution² (1/Å²)")
    ax.set_ylabel("ln(amplitude)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_local_resolution_slices(
    axes, resolution: np.ndarray, density: np.ndarray, inside: np.ndarray, title: str = "Local resolution"
) -> None:
    """Three orthogonal central slices of [z, y, x] maps on three Axes: the density in grey, the local
    resolution (A) in colour where `inside` is true, one colour bar for all three."""
    n = resolution.shape[0]
    values = resolution[inside]
    # the 2nd-98th percentiles: a few edge voxels at the coarsest value would flatten the scale
    low, high = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
    image = None
    cuts = (np.s_[n // 2], np.s_[:, n // 2], np.s_[:, :, n // 2])
    for ax, name, cut in zip(axes, ("xy", "xz", "yz"), cuts):
        ax.imshow(density[cut], cmap="gray", origin="lower")
        shown = np.ma.masked_where(~inside[cut], resolution[cut])
        image = ax.imshow(
            shown, cmap="RdYlBu_r", vmin=low, vmax=max(high, low + 1e-3), origin="lower", alpha=0.8
        )
        ax.set_title(f"{title} {name}", fontsize=9)
        ax.axis("off")
    # beside the last panel only: a bar taken from all three is a layout tight_layout cannot handle
    axes[-1].figure.colorbar(image, ax=axes[-1], fraction=0.046, pad=0.04, label="local resolution (Å)")


def render_png(path: str, draw, size=(7, 4.5), ncols: int = 1, nrows: int = 1) -> str:
    """Draw with `draw(ax or axes)` on a headless figure and save it as PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    axes = fig.subplots(nrows, ncols)
    draw(axes)
    fig.tight_layout()
    fig.savefig(path)
    return path
