"""Per-iteration checkpoints of the EM drivers, under RELION's run_itNNN_* names."""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_path


def iteration_path(out: Path, iteration: int, what: str) -> Path:
    return out / f"run_it{iteration:03d}_{what}"


def last_checkpoint(out: Path) -> int | None:
    """The last iteration whose optimiser.json (written last of its files) exists."""
    done = sorted(out.glob("run_it*_optimiser.json"))
    return int(done[-1].name[6:9]) if done else None


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))
