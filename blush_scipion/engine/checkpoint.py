"""Per-iteration checkpoints of the EM drivers, under RELION's run_itNNN_* names."""
from __future__ import annotations

import json
import re
from pathlib import Path

from .atomic import atomic_path

_OPTIMISER = re.compile(r"run_it(\d{3,})_optimiser\.json")


def iteration_path(out: Path, iteration: int, what: str) -> Path:
    return out / f"run_it{iteration:03d}_{what}"


def last_checkpoint(out: Path) -> int | None:
    """The last iteration whose optimiser.json (written last of its files) exists.

    By number, not name: run_it1000 follows run_it999 though it sorts before it."""
    done = [int(m[1]) for p in out.glob("run_it*_optimiser.json") if (m := _OPTIMISER.fullmatch(p.name))]
    return max(done, default=None)


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))
