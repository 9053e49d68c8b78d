"""RELION STAR files (starfile), with errors that name the file, block and column."""

from __future__ import annotations

import os

import pandas as pd
import starfile

from .atomic import atomic_path


class StarError(ValueError):
    """A STAR file that cannot be used, with the file named in the message."""


def read_star(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """All data blocks of a STAR file, by name (without 'data_'); loops as DataFrames."""
    if not os.path.exists(path):
        raise StarError(f"{path}: no such STAR file")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as e:  # starfile raises bare exceptions on malformed input
        raise StarError(f"{path}: cannot parse as STAR: {e}") from e
    return {name: (df if isinstance(df, pd.DataFrame) else pd.DataFrame([df])) for name, df in blocks.items()}


def require_block(blocks: dict[str, pd.DataFrame], name: str, path) -> pd.DataFrame:
    if name not in blocks:
        raise StarError(f"{path}: no data_{name} block (found: {', '.join(blocks) or 'none'})")
    return blocks[name]


def require_columns(table: pd.DataFrame, columns, path, block: str, why: str = "") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise StarError(
            f"{path}: data_{block} lacks column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}{'; ' + why if why else ''}"
        )


def write_star(path: str | os.PathLike, blocks: dict[str, pd.DataFrame]) -> None:
    """Write data blocks (loops) atomically, RELION 3.1 style."""
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)
