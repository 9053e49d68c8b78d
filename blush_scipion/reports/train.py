"""What a train run wrote (the weights' .json log: settings, sources, the loss per step and the loss on
its fixed validation set), as plot data, and its loss curves as a PNG (no Scipion import). Logs
written before the engine validated have no validation losses; their plots show the training loss
alone."""

from __future__ import annotations

import json

import numpy as np

from .plots import render_png


def train_record(path: str) -> dict:
    """The log `blush train` writes beside the weights (`<weights>.json`): losses, validation
    ([{"step", "loss"}], absent from older logs), steps_done, seconds, sources, settings; rewritten
    at each progress line, so a running job has one too."""
    with open(path) as f:
        return json.load(f)


def plot_training_loss(
    ax, losses, total_steps: int | None = None, title: str = "Training loss", validation=None
) -> None:
    """The loss per optimiser step and its running mean over a twentieth of the steps (the window of the
    engine's progress lines), and the loss on the fixed validation set at the steps it was measured
    (`validation`: the log's [{"step", "loss"}], step 0 before training; none or empty: not drawn)."""
    losses = np.asarray(losses, float)
    steps = np.arange(1, len(losses) + 1)
    window = max(1, (total_steps or len(losses)) // 20)
    ax.plot(steps, losses, lw=0.8, alpha=0.4, label="per step")
    if len(losses) >= window > 1:
        mean = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], mean, lw=2, label=f"mean of {window} steps")
    if validation:
        at = [v["step"] for v in validation]
        value = [v["loss"] for v in validation]
        ax.plot(at, value, "o-", lw=1.5, ms=4, color="black", label=f"validation (last {value[-1]:.3g})")
    done = f"{len(losses)}" + (f" of {total_steps}" if total_steps and total_steps != len(losses) else "")
    ax.set_title(f"{title} ({done} steps)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (relative error)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def write_train_png(extra, weights_name: str) -> str:
    """loss.png beside the run's files from `<weights_name>.json`; `extra(name)` gives a path."""
    r = train_record(extra(weights_name + ".json"))
    return render_png(
        extra("loss.png"),
        lambda ax: plot_training_loss(
            ax, r["losses"], r["settings"].get("steps"), validation=r.get("validation")
        ),
    )
