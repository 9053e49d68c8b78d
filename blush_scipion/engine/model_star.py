"""RELION's run_model.star as the drivers write it: model_general, model_classes, one curve table per
class (per shell), and the noise spectrum per optics group."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .images import noise_model_blocks


class ClassModel(Protocol):
    """What a classification's model STAR reads of its state (classify2d's or classify3d's)."""

    @property
    def r_current(self) -> int: ...
    @property
    def sigma2(self) -> list[list[float]]: ...
    @property
    def sigma_offset(self) -> float: ...
    @property
    def distribution(self) -> list[float]: ...
    @property
    def resolution(self) -> list[float]: ...


def shell_columns(n: int, pixel_size: float) -> dict[str, np.ndarray]:
    """A curve table's first columns, each (n//2+1,): the shell, its spatial frequency (1/A) and its
    resolution (A; 999 at shell 0, as RELION writes it)."""
    shells = np.arange(n // 2 + 1)
    return {
        "rlnSpectralIndex": shells,
        "rlnResolution": shells / (n * pixel_size),
        "rlnAngstromResolution": np.where(shells > 0, n * pixel_size / np.maximum(shells, 1), 999.0),
    }


def write_model_star(
    path: Path,
    general: dict,
    classes: dict[str, list],
    curves: list[dict[str, np.ndarray]],
    sigma2: list[list[float]],
    n: int,
    pixel_size: float,
) -> None:
    """Write run_model.star atomically: `general` (model_general), `classes` (model_classes' columns),
    per class its curve's columns after shell_columns (model_class_<k>), and the noise spectra
    sigma2 (G, n//2+1) per optics group."""
    import starfile

    blocks: dict = {"model_general": general, "model_classes": pd.DataFrame(classes)}
    for k, curve in enumerate(curves):
        blocks[f"model_class_{k + 1}"] = pd.DataFrame({**shell_columns(n, pixel_size), **curve})
    blocks.update(noise_model_blocks(sigma2, n, pixel_size))
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)


def write_classification_model_star(
    path: Path,
    state: ClassModel,
    references: list[str],
    curves: list[dict[str, np.ndarray]],
    *,
    dimensionality: int,
    n: int,
    pixel_size: float,
    tau2_fudge: float,
) -> None:
    """class2d's and class3d's run_model.star: the classes' `references` (file names), shares and
    resolutions, and per class its `curves` (the SSNR, ...), as RELION's 2D or 3D classification
    (`dimensionality`) writes them."""
    general = {
        "rlnReferenceDimensionality": dimensionality,
        "rlnDataDimensionality": 2,
        "rlnOriginalImageSize": n,
        "rlnCurrentResolution": float(min(state.resolution)),
        "rlnCurrentImageSize": 2 * state.r_current,
        "rlnPixelSize": pixel_size,
        "rlnNrClasses": len(state.distribution),
        **({"rlnNrBodies": 1} if dimensionality == 3 else {}),
        "rlnTau2FudgeFactor": tau2_fudge,
        "rlnSigmaOffsetsAngst": state.sigma_offset * pixel_size,
    }
    classes: dict[str, list] = {
        "rlnReferenceImage": references,
        "rlnClassDistribution": state.distribution,
        "rlnEstimatedResolution": state.resolution,
    }
    write_model_star(path, general, classes, curves, state.sigma2, n, pixel_size)
