"""The Blush engine: cryo-EM reconstruction and refinement in PyTorch.

Nothing below this package imports Scipion; it runs from its own command line (`blush`).
Conventions throughout: volumes are indexed [z, y, x] and images [y, x]; the real-space centre is
at index n // 2 (RELION's); Fourier transforms are unnormalised forward (torch's "backward" norm);
half-transforms (rfft) keep kx >= 0 with ky centred at index n // 2.

The public API is `__all__` below, each name importable from here (`from blush_scipion.engine
import refine`); a name's module (and torch with it) is imported on first use, so importing this
package alone stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> the module (under this package) that defines it; no name may be a submodule's own name
# (importing `engine.simulate` would rebind `engine.simulate` to the module)
_API = {
    # the drivers, each writing RELION's files into a run folder and returning its summary
    "refine": "refine3d",
    "RefineSettings": "refine3d",
    "classify": "classify2d",
    "Class2DSettings": "classify2d",
    "reconstruct_particles": "reconstruct",
    "Reconstruction": "reconstruct",
    "postprocess_half_maps": "postprocess",
    "PostprocessResult": "postprocess",
    "local_resolution": "localres",
    "LocalResolution": "localres",
    "simulate_from_model": "simulate",
    "SimulationSettings": "simulate",
    # data in and out
    "Particles": "particles",
    "read_map": "mrc",
    "write_map": "mrc",
    "read_map_pair": "mrc",
    "read_stack": "mrc",
    "write_stack": "mrc",
    "StackReader": "mrc",
    "MapError": "mrc",
    "read_star": "star",
    "write_star": "star",
    "StarError": "star",
    # measures
    "fourier_shell_correlation": "fsc",
    "resolution_at": "fsc",
    # the Blush denoiser
    "Denoiser": "blush.denoiser",
    "load_denoiser": "blush.denoiser",
    "denoise_map": "blush.denoiser",
    "WeightsError": "blush.weights",
    # several ranks under torchrun / srun
    "World": "distributed",
    # how a driver runs: resume, overwrite, progress, log, ranks
    "RunControl": "run_folder",
}

__all__ = [  # _API's names, spelled out for the tools that read __all__ without running the module
    "Class2DSettings",
    "Denoiser",
    "LocalResolution",
    "MapError",
    "Particles",
    "PostprocessResult",
    "Reconstruction",
    "RefineSettings",
    "RunControl",
    "SimulationSettings",
    "StackReader",
    "StarError",
    "WeightsError",
    "World",
    "classify",
    "denoise_map",
    "fourier_shell_correlation",
    "load_denoiser",
    "local_resolution",
    "postprocess_half_maps",
    "read_map",
    "read_map_pair",
    "read_stack",
    "read_star",
    "reconstruct_particles",
    "refine",
    "resolution_at",
    "simulate_from_model",
    "write_map",
    "write_stack",
    "write_star",
]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; the names above, spelled out
    from .blush.denoiser import Denoiser, denoise_map, load_denoiser
    from .blush.weights import WeightsError
    from .classify2d import Class2DSettings, classify
    from .distributed import World
    from .fsc import fourier_shell_correlation, resolution_at
    from .localres import LocalResolution, local_resolution
    from .mrc import MapError, StackReader, read_map, read_map_pair, read_stack, write_map, write_stack
    from .particles import Particles
    from .postprocess import PostprocessResult, postprocess_half_maps
    from .reconstruct import Reconstruction, reconstruct_particles
    from .refine3d import RefineSettings, refine
    from .run_folder import RunControl
    from .simulate import SimulationSettings, simulate_from_model
    from .star import StarError, read_star, write_star
