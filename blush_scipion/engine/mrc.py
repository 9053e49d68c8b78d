"""MRC maps and MRCS stacks (mrcfile), keeping the voxel size."""

from __future__ import annotations

import itertools
import os
import warnings

import mrcfile
import numpy as np
import torch

from .atomic import atomic_path


class MapError(ValueError):
    """A map or stack that cannot be used, with the file named in the message."""


def read_map(path: str | os.PathLike, *, cubic: bool = True) -> tuple[torch.Tensor, float]:
    """Read a 3D map -> ((n, n, n) float32 tensor indexed [z, y, x], voxel size in A)."""
    try:
        with warnings.catch_warnings():  # mrcfile warns of NaNs on its own lines; we refuse them below
            warnings.simplefilter("ignore", RuntimeWarning)
            with mrcfile.open(path, permissive=True) as mrc:
                data = np.asarray(mrc.data, dtype=np.float32).copy()
                apix = float(mrc.voxel_size.x)
    except (OSError, ValueError) as e:
        raise MapError(f"{path}: cannot read as MRC: {e}") from e
    if data is None or data.ndim != 3:
        raise MapError(f"{path}: expected a 3D map, found shape {None if data is None else data.shape}")
    if cubic and len(set(data.shape)) != 1:
        raise MapError(f"{path}: map is not cubic (shape z,y,x = {data.shape}); resample or pad it to a cube")
    if not np.isfinite(data).all():
        raise MapError(f"{path}: map contains {int((~np.isfinite(data)).sum())} NaN or infinite values")
    return torch.from_numpy(data), apix


def read_stack(path: str | os.PathLike) -> torch.Tensor:
    """(K, n, n) float32 images of an MRCS stack (a single image reads as K = 1)."""
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float32)
    return torch.from_numpy(data.reshape((-1,) + data.shape[-2:]).copy())


def read_map_pair(
    path1: str | os.PathLike, path2: str | os.PathLike
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Two maps that must share box and pixel size (half maps, or a map and its mask), and that size."""
    a, apix_a = read_map(path1)
    b, apix_b = read_map(path2)
    if a.shape != b.shape:
        raise MapError(f"{path2}: shape {tuple(b.shape)} differs from {path1}'s {tuple(a.shape)}")
    if abs(apix_a - apix_b) > 1e-3 * apix_a:
        raise MapError(f"{path2}: pixel size {apix_b:.4f} A differs from {path1}'s {apix_a:.4f} A")
    for path, volume in ((path1, a), (path2, b)):
        if not volume.abs().max() > 0:
            raise MapError(f"{path}: map is all zeros")
    return a, b, apix_a


def write_map(path: str | os.PathLike, volume: torch.Tensor, pixel_size: float) -> None:
    """Write a (n, n, n) [z, y, x] map (float32) with its voxel size, atomically."""
    data = volume.detach().to("cpu", torch.float32).numpy()
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data))
        mrc.voxel_size = pixel_size
        mrc.update_header_stats()


def write_stack(path: str | os.PathLike, images, pixel_size: float, n_images: int | None = None):
    """Write an MRCS stack atomically from a (B, n, n) tensor or an iterable of (b, n, n) batches.

    For an iterable, `n_images` gives the total so the stack is written through a memory map.
    """
    with atomic_path(path) as tmp:
        if isinstance(images, torch.Tensor):
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(images.detach().cpu().float().numpy())
                mrc.set_image_stack()
                mrc.voxel_size = pixel_size
        else:
            batches = iter(images)
            first = next(batches)
            n = first.shape[-1]
            with mrcfile.new_mmap(tmp, shape=(n_images, n, n), mrc_mode=2, overwrite=True) as mrc:
                mrc.set_image_stack()
                mrc.voxel_size = pixel_size
                start = 0
                for batch in itertools.chain([first], batches):
                    mrc.data[start : start + len(batch)] = batch.detach().cpu().float().numpy()
                    start += len(batch)
                if start != n_images:
                    raise ValueError(f"{path}: expected {n_images} images, got {start}")
                mrc.update_header_stats()


class StackReader:
    """Reads images by 0-based index from MRCS stacks, keeping each file memory-mapped.

    `with StackReader() as reader:` closes every stack it opened when the block ends, even on error.
    """

    def __init__(self):
        self._open = {}

    def __enter__(self) -> StackReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read(self, path: str, indices: np.ndarray) -> np.ndarray:
        """(k,) indices -> (k, n, n) float32 images from one stack."""
        mrc = self._open.get(path)
        if mrc is None:
            try:
                mrc = self._open[path] = mrcfile.mmap(path, mode="r", permissive=True)
            except (OSError, ValueError) as e:
                raise MapError(f"{path}: cannot open image stack: {e}") from e
        data = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
        if indices.max(initial=-1) >= data.shape[0]:
            raise MapError(f"{path}: image {indices.max() + 1} requested, stack holds {data.shape[0]}")
        if indices.min(initial=0) < 0:  # numpy would wrap around to the stack's end
            raise MapError(f"{path}: image {indices.min() + 1} requested; RELION's image numbers start at 1")
        images = np.asarray(data[indices], dtype=np.float32)
        finite = np.isfinite(images).all(axis=(1, 2))
        if not finite.all():
            raise MapError(f"{path}: image {indices[~finite][0] + 1} holds NaN or infinite pixels")
        return images

    def close(self):
        for mrc in self._open.values():
            mrc.close()
        self._open.clear()
