"""summary.json: what every driver reports when its run ends (sizes, wall time, peak memory per
rank, the per-iteration history, the settings), beside RELION's files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import publish, write_json
from .distributed import World
from .history import history_json
from .memory import peak_memory_gb

if TYPE_CHECKING:  # the drivers import this module
    from .classify2d import Class2DSettings, Class2DState
    from .classify3d import Class3DSettings, Class3DState
    from .particles import Particles


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


def finish_classification(
    out: Path,
    log: Callable[[str], object],
    state: Class2DState | Class3DState,
    finals: list[str],
    *,
    renamed: tuple[str, ...] = (),
    world: World,
    settings: Class2DSettings | Class3DSettings,
    particles: Particles,
    wall_seconds: float,
) -> dict:
    """class2d's and class3d's end: the last iteration's files under their final names (`finals`,
    checkpoint.publish), the summary (per class: share and resolution), both written by the leader,
    and the closing log line."""
    if state.iteration == 0:
        raise ValueError("no iterations to run (--iter 0)")
    if world.leader:
        publish(out, state.iteration, finals, renamed=renamed)
    summary = run_summary(
        iterations=state.iteration,
        settings=settings,
        particles=particles,
        box=particles.image_size,
        apix=particles.pixel_size,
        world=world,
        wall_seconds=wall_seconds,
        history=history_json(state.history),
        classes=len(state.distribution),
        class_distribution=state.distribution,
        class_resolution_angstrom=state.resolution,
        resolution_angstrom=min(state.resolution),
    )
    if world.leader:
        write_json(out / "summary.json", summary)
    log(
        f"done: {summary['iterations']} iterations, {summary['classes']} classes, best class resolution "
        f"{summary['resolution_angstrom']:.2f} A, {summary['wall_seconds']:.0f} s"
    )
    return summary
