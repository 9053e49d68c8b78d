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


def publish(out: Path, iteration: int, names: list[str], *, renamed: tuple[str, ...] = ()) -> None:
    """An iteration's files under their final names, run_itNNN_<name> -> run_<name>, each written
    atomically; in those named in `renamed` (a model STAR naming the maps), the iteration's names of
    its files become the final ones."""
    prefix = iteration_path(out, iteration, "").name
    for name in names:
        data = (out / f"{prefix}{name}").read_bytes()
        if name in renamed:
            data = data.replace(prefix.encode(), b"run_")
        with atomic_path(out / f"run_{name}") as tmp:
            tmp.write_bytes(data)
