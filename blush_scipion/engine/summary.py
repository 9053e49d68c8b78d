"""summary.json: what every driver reports when its run ends (sizes, wall time, peak memory per
rank, the per-iteration history, the settings), beside RELION's files."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .checkpoint import write_json
from .distributed import World
from .memory import peak_memory_gb


def run_summary(
    *,
    iterations: int,
    settings,
    particles,
    box: int,
    apix: float,
    world: World,
    wall_seconds: float,
    history: list,
    **extra,
) -> dict:
    """The fields every driver's summary shares, `extra` (the driver's own) among them. Every rank
    calls it (the peaks are gathered from all)."""
    return {
        "iterations": iterations,
        "blush": settings.blush,
        "wall_seconds": round(wall_seconds, 1),
        "particles": len(particles),
        "box": box,
        "pixel_size": apix,
        "ranks": world.size,
        **extra,
        "history": history,
        **peak_memory_gb(settings.device, world),
        "settings": asdict(settings),
    }


def finish_classification(out: Path, log, state, *, world: World, **common) -> dict:
    """class2d's and class3d's summary (per class: share and resolution), written by the leader,
    and the closing log line."""
    summary = run_summary(
        world=world,
        history=state.history,
        classes=len(state.distribution),
        class_distribution=state.distribution,
        class_resolution_angstrom=state.resolution,
        resolution_angstrom=min(state.resolution),
        **common,
    )
    if world.leader:
        write_json(out / "summary.json", summary)
    log(
        f"done: {summary['iterations']} iterations, {summary['classes']} classes, best class resolution "
        f"{summary['resolution_angstrom']:.2f} A, {summary['wall_seconds']:.0f} s"
    )
    return summary
