"""The relion_refine run behind an external-reconstruction hand-over: the pixel size and particle
diameter that RELION 3.1 and 4 leave out of the hand-over STAR (RELION 5 writes them), read from the
run's own files beside it.

`relion_refine --o DIR/run` hands over DIR/run_itNNN[_half1|2]_class001_external_reconstruct.star
after writing the previous iteration's DIR/run_itMMM_optimiser.star (data_optimiser_general:
rlnParticleDiameter, and rlnModelStarFile naming the model STAR, whose data_model_general has
rlnPixelSize, the references' pixel size). Before iteration 1 that is iteration 0's set.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .star import read_star, require_block, require_columns

# run root, iteration (absent for a reconstruction outside the iterations), half set, class or body
HAND_OVER_NAME = re.compile(
    r"(?P<root>.+?)(?:_it(?P<iteration>\d+))?(?:_half[12])?_(?:class|body)\d+"
    r"_external_reconstruct\.star"
)


@dataclass(frozen=True)
class RunSettings:
    """What the run's files say; None where they do not."""

    optimiser: Path | None
    pixel_size: float | None  # A
    diameter: float | None  # A


def latest_optimiser(star: str | os.PathLike) -> Path | None:
    """The run's newest *_itNNN_optimiser.star beside a hand-over STAR, from before the hand-over's
    iteration; None if the name is not RELION's or there is none."""
    star = Path(star)
    name = HAND_OVER_NAME.fullmatch(star.name)
    if name is None:
        return None
    before = int(name["iteration"]) if name["iteration"] is not None else None
    found = {}
    for path in star.parent.glob(f"{glob.escape(name['root'])}_it*_optimiser.star"):
        iteration = re.fullmatch(rf"{re.escape(name['root'])}_it(\d+)_optimiser\.star", path.name)
        if iteration and (before is None or int(iteration[1]) < before):
            found[int(iteration[1])] = path
    return found[max(found)] if found else None


def run_settings(star: str | os.PathLike) -> RunSettings:
    """Pixel size and particle diameter of the relion_refine run that wrote a hand-over STAR.
    A file that exists but cannot be read raises StarError naming it."""
    optimiser = latest_optimiser(star)
    if optimiser is None:
        return RunSettings(None, None, None)
    general = require_block(read_star(optimiser), "optimiser_general", optimiser)
    require_columns(general, ["rlnModelStarFile"], optimiser, "optimiser_general")
    row = general.iloc[0]
    diameter = float(row["rlnParticleDiameter"]) if "rlnParticleDiameter" in general.columns else -1.0
    model = _beside(Path(str(row["rlnModelStarFile"])), optimiser)
    model_general = require_block(read_star(model), "model_general", model)
    require_columns(model_general, ["rlnPixelSize"], model, "model_general")
    pixel_size = float(model_general.iloc[0]["rlnPixelSize"])
    return RunSettings(optimiser, pixel_size if pixel_size > 0 else None, diameter if diameter > 0 else None)


def _beside(path: Path, optimiser: Path) -> Path:
    """RELION names files relative to its working directory (ours when it calls us); else (the
    folder moved, or run from elsewhere) the file beside the optimiser STAR."""
    return path if path.exists() else optimiser.parent / path.name
