"""A particle data set: RELION 3.1 particles + optics tables, its images, CTFs and poses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .ctf import CtfParameters
from .mrc import StackReader
from .rotation import euler_to_matrix, matrix_to_euler
from .star import StarError, read_star, require_block, require_columns, write_star

CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
OPTICS_COLUMNS = (
    "rlnOpticsGroup",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnImagePixelSize",
)
POSE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
# RELION 3.0 files keep optics on each particle; these move to a data_optics block on reading
LEGACY_OPTICS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize")


@dataclass
class Particles:
    """Particles (one row each, RELION column names) with their optics groups.

    `root` is where relative image names resolve (RELION resolves them against its project
    directory; we try the STAR file's directory, then its parents (a job folder such as
    Refine3D/job012/ sits two levels below the project), then the working directory).
    """

    table: pd.DataFrame
    optics: pd.DataFrame
    root: Path
    source: str = "<memory>"

    @classmethod
    def read(cls, path: str | os.PathLike) -> Particles:
        blocks = read_star(path)
        if "particles" in blocks:
            table = blocks["particles"]
            optics = require_block(blocks, "optics", path)
        elif len(blocks) == 1:  # RELION 3.0: one unnamed/"images" block with optics per particle
            table, optics = _split_legacy(next(iter(blocks.values())), path)
        else:
            raise StarError(f"{path}: no data_particles block (found: {', '.join(blocks)})")
        require_columns(table, ["rlnImageName"], path, "particles")
        require_columns(optics, OPTICS_COLUMNS, path, "optics")
        if "rlnOpticsGroup" not in table.columns:
            if len(optics) != 1:
                raise StarError(
                    f"{path}: data_particles lacks column rlnOpticsGroup, needed with "
                    f"{len(optics)} optics groups"
                )
            table = table.assign(rlnOpticsGroup=int(optics["rlnOpticsGroup"].iloc[0]))
        unknown = set(table["rlnOpticsGroup"]) - set(optics["rlnOpticsGroup"])
        if unknown:
            raise StarError(
                f"{path}: particles refer to optics group(s) {sorted(unknown)} missing from data_optics"
            )
        if len(table) == 0:
            raise StarError(f"{path}: data_particles is empty")
        table = _numbers_that_can_be_right(table, optics, path)
        return cls(
            table.reset_index(drop=True), optics.reset_index(drop=True), _image_root(path, table), str(path)
        )

    def write(self, path: str | os.PathLike) -> None:
        """Write the set as RELION 3.1 STAR; relative image names of existing stacks that would not
        resolve from the new file's folder (another folder than this set's root) become absolute."""
        table = self.table
        if Path(path).resolve().parent != Path(self.root).resolve():
            table = table.assign(rlnImageName=[self._portable(name) for name in table["rlnImageName"]])
        write_star(path, {"optics": self.optics, "particles": table})

    def _portable(self, name) -> str:
        number, at, stack = str(name).rpartition("@")
        if os.path.isabs(stack) or not (Path(self.root) / stack).exists():  # nothing to point to: leave it
            return str(name)
        return f"{number}{at}{(Path(self.root) / stack).resolve()}"

    def __len__(self) -> int:
        return len(self.table)

    def subset(self, rows) -> Particles:
        return Particles(self.table.iloc[rows].reset_index(drop=True), self.optics, self.root, self.source)

    def with_columns(self, **columns) -> Particles:
        return Particles(self.table.assign(**columns), self.optics, self.root, self.source)

    def with_poses(
        self, rotations: torch.Tensor, origins: torch.Tensor, max_prob: torch.Tensor, **columns
    ) -> Particles:
        """These particles at new poses (rotations() and origins() read them back): (N, 3, 3)
        rotations, (N, 2) origins in pixels and (N,) posterior maxima, with more `columns`."""
        rot, tilt, psi = matrix_to_euler(rotations)
        apix = self.pixel_size
        return self.with_columns(
            rlnAngleRot=rot.double().numpy(),
            rlnAngleTilt=tilt.double().numpy(),
            rlnAnglePsi=psi.double().numpy(),
            rlnOriginXAngst=(origins[:, 0] * apix).double().numpy(),
            rlnOriginYAngst=(origins[:, 1] * apix).double().numpy(),
            rlnMaxValueProbDistribution=max_prob.double().numpy(),
            **columns,
        )

    # --- per-particle values -------------------------------------------------------------
    def optics_column(self, column: str) -> np.ndarray:
        """The optics group's value of `column` for every particle."""
        require_columns(self.optics, [column], self.source, "optics")
        lookup = self.optics.set_index("rlnOpticsGroup")[column]
        return lookup.loc[self.table["rlnOpticsGroup"].to_numpy()].to_numpy()

    def column(self, column: str, default=None) -> np.ndarray:
        if column in self.table.columns:
            return self.table[column].to_numpy()
        if column in self.optics.columns:
            return self.optics_column(column)
        if default is None:
            raise StarError(f"{self.source}: data_particles lacks column {column}")
        return np.full(len(self), default)

    @property
    def pixel_size(self) -> float:
        """The one pixel size of all optics groups (refuses mixtures)."""
        sizes = np.unique(self.optics["rlnImagePixelSize"].astype(float).round(4))
        if len(sizes) != 1:
            raise StarError(
                f"{self.source}: optics groups have mismatched pixel sizes {list(sizes)} A; "
                f"rescale the particles to one pixel size first"
            )
        return float(sizes[0])

    def _image_sizes(self) -> list[int]:
        return sorted(set(self.optics["rlnImageSize"].astype(int)))

    @property
    def image_size(self) -> int:
        if "rlnImageSize" in self.optics.columns:
            sizes = self._image_sizes()
            if len(sizes) != 1:
                raise StarError(f"{self.source}: optics groups have mismatched image sizes {sizes}")
            return sizes[0]
        return int(self.read_images([0]).shape[-1])

    def has_ctf(self) -> bool:
        return all(c in self.table.columns for c in CTF_COLUMNS)

    def ctf(self, rows=slice(None)) -> CtfParameters:
        require_columns(self.table, CTF_COLUMNS, self.source, "particles")

        def values(column, default):
            return torch.as_tensor(np.asarray(self.column(column, default), dtype=np.float32)[rows])

        return CtfParameters(
            defocus_u=values("rlnDefocusU", None),
            defocus_v=values("rlnDefocusV", None),
            defocus_angle=values("rlnDefocusAngle", None),
            voltage=values("rlnVoltage", None),
            cs=values("rlnSphericalAberration", None),
            amplitude_contrast=values("rlnAmplitudeContrast", None),
            phase_shift=values("rlnPhaseShift", 0.0),
            bfactor=values("rlnCtfBfactor", 0.0),
            scale=values("rlnCtfScalefactor", 1.0),
        )

    def has_poses(self) -> bool:
        return all(c in self.table.columns for c in POSE_COLUMNS)

    def rotations(self, rows=slice(None)) -> torch.Tensor:
        """(B, 3, 3) RELION rotation matrices of the particles' poses."""
        require_columns(self.table, POSE_COLUMNS, self.source, "particles")
        angles = [torch.tensor(self.table[c].to_numpy(np.float64)[rows]) for c in POSE_COLUMNS]
        return euler_to_matrix(*angles)

    def start_rotations(self) -> torch.Tensor:
        """(N, 3, 3): the particles' given poses, or the identity where the STAR has none."""
        return self.rotations() if self.has_poses() else torch.eye(3).expand(len(self), 3, 3).clone()

    def origins(self, rows=slice(None)) -> torch.Tensor:
        """(B, 2) RELION origins (x, y) in pixels: the shift that centres the particle (its centre
        sits at the image centre minus the origin)."""
        ox = self.column("rlnOriginXAngst", 0.0).astype(np.float32)[rows]
        oy = self.column("rlnOriginYAngst", 0.0).astype(np.float32)[rows]
        return torch.as_tensor(np.stack([ox, oy], axis=-1)) / self.pixel_size

    def classes(self) -> torch.Tensor:
        """(N,) long: each particle's class, 0-based (rlnClassNumber - 1)."""
        return torch.as_tensor(self.column("rlnClassNumber").astype(np.int64)) - 1

    def max_prob(self) -> torch.Tensor:
        """(N,) float32: each particle's posterior maximum (rlnMaxValueProbDistribution)."""
        return torch.as_tensor(self.column("rlnMaxValueProbDistribution").astype(np.float32))

    def half_sets(self) -> np.ndarray:
        """(N,) 1 or 2: rlnRandomSubset where present, else alternating (odd/even rows)."""
        if "rlnRandomSubset" in self.table.columns:
            subsets = self.table["rlnRandomSubset"].to_numpy().astype(int)
            if not set(np.unique(subsets)) <= {1, 2}:
                raise StarError(f"{self.source}: rlnRandomSubset must be 1 or 2")
            return subsets
        return np.arange(len(self)) % 2 + 1

    # --- images ----------------------------------------------------------------------------
    def image_locations(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(stack path, 0-based index) per requested row."""
        names = self.table["rlnImageName"].to_numpy()[rows]
        paths, index = [], []
        for name in names:
            number, _, stack = str(name).partition("@")
            if not stack:  # a single image per file
                number, stack = "1", number
            paths.append(stack if os.path.isabs(stack) else str(self.root / stack))
            index.append(int(number) - 1)
        return np.asarray(paths), np.asarray(index)

    def read_images(self, rows, reader: StackReader | None = None) -> torch.Tensor:
        """(B, n, n) float32 images of the given rows, in row order (StackReader refuses NaN pixels);
        a stack whose images differ from the optics table's rlnImageSize is refused."""
        own = reader is None
        reader = reader or StackReader()
        try:
            paths, index = self.image_locations(rows)
            out = None
            for stack in np.unique(paths):
                sel = np.nonzero(paths == stack)[0]
                if not os.path.exists(stack):
                    raise StarError(f"{self.source}: image stack {stack} not found")
                images = reader.read(stack, index[sel])
                if "rlnImageSize" in self.optics.columns and images.shape[-1] not in self._image_sizes():
                    raise StarError(
                        f"{stack}: images are {images.shape[-1]} px, {self.source}'s optics table "
                        f"says {', '.join(map(str, self._image_sizes()))}"
                    )
                if out is None:
                    out = np.empty((len(paths),) + images.shape[1:], dtype=np.float32)
                out[sel] = images
            return torch.from_numpy(out)
        finally:
            if own:
                reader.close()


def _numbers_that_can_be_right(table: pd.DataFrame, optics: pd.DataFrame, path) -> pd.DataFrame:
    """Refuse what cannot be right, naming the file, the column and the first bad row (1-based):
    pixel sizes <= 0, non-numeric or non-finite CTF values, image numbers < 1. Pixel origins
    (rlnOriginX/Y, RELION 3.0's) in a 3.1 file become rlnOriginX/YAngst, never ignored."""

    def numbers(frame: pd.DataFrame, column: str, block: str, test=None, words: str = "") -> np.ndarray:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) | (~test(values) if test else False)
        if bad.any():
            row = int(np.nonzero(bad)[0][0])
            raise StarError(
                f"{path}: data_{block} row {row + 1}: {column} is {frame[column].iloc[row]!r}, "
                f"not a {words or 'finite number'}"
            )
        return values

    numbers(optics, "rlnImagePixelSize", "optics", lambda v: v > 0, "pixel size > 0")
    numbers(optics, "rlnVoltage", "optics", lambda v: v > 0, "voltage > 0")
    numbers(optics, "rlnSphericalAberration", "optics")
    numbers(optics, "rlnAmplitudeContrast", "optics", lambda v: (v >= 0) & (v <= 1), "fraction in [0, 1]")
    for column in (*CTF_COLUMNS, "rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor", *POSE_COLUMNS):
        if column in table.columns:
            numbers(table, column, "particles")
    numbered = table["rlnImageName"].astype(str).str.partition("@")
    has_number = numbered[1] == "@"
    index = pd.to_numeric(numbered[0].where(has_number, "1"), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(index) | (index < 1) | (index != np.round(index))
    if bad.any():
        row = int(np.nonzero(bad)[0][0])
        raise StarError(
            f"{path}: data_particles row {row + 1}: rlnImageName {table['rlnImageName'].iloc[row]!r}: "
            "image numbers are whole numbers from 1 (RELION's)"
        )
    for axis in "XY":
        if f"rlnOrigin{axis}" in table.columns and f"rlnOrigin{axis}Angst" not in table.columns:
            pixels = numbers(table, f"rlnOrigin{axis}", "particles")
            apix = optics.set_index("rlnOpticsGroup")["rlnImagePixelSize"].astype(float)
            angst = pixels * apix.loc[table["rlnOpticsGroup"]].to_numpy()
            table = table.assign(**{f"rlnOrigin{axis}Angst": angst}).drop(columns=[f"rlnOrigin{axis}"])
    return table


def _image_root(path, table: pd.DataFrame) -> Path:
    """The folder against which the first relative image name exists (see Particles)."""
    first = str(table["rlnImageName"].iloc[0]).split("@")[-1]
    star_dir = Path(path).resolve().parent
    if Path(first).is_absolute():
        return star_dir
    for folder in [star_dir, *list(star_dir.parents)[:3]]:
        if (folder / first).exists():
            return folder
    return Path.cwd()


def concatenate(sets: list[Particles]) -> Particles:
    """One set from several: image names made absolute, each set's optics groups kept as groups of
    their own (renumbered 1.. in order)."""
    tables, optics, next_group = [], [], 1
    for p in sets:
        paths, index = p.image_locations(np.arange(len(p)))
        renumber = {int(g): next_group + i for i, g in enumerate(p.optics["rlnOpticsGroup"])}
        next_group += len(renumber)
        o = p.optics.copy()
        o["rlnOpticsGroup"] = o["rlnOpticsGroup"].map(renumber)
        if "rlnOpticsGroupName" in o.columns:
            o["rlnOpticsGroupName"] = [f"opticsGroup{g}" for g in o["rlnOpticsGroup"]]
        t = p.table.copy()
        t["rlnOpticsGroup"] = t["rlnOpticsGroup"].map(renumber)
        t["rlnImageName"] = [f"{i + 1:06d}@{os.path.abspath(s)}" for i, s in zip(index, paths)]
        tables.append(t)
        optics.append(o)
    table = pd.concat(tables, ignore_index=True)
    return Particles(
        table, pd.concat(optics, ignore_index=True), Path.cwd(), " + ".join(p.source for p in sets)
    )


def _split_legacy(table: pd.DataFrame, path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELION 3.0 particles -> (particles, optics) with one optics group per distinct setting."""
    table = table.copy()
    if "rlnImagePixelSize" not in table.columns:
        if {"rlnDetectorPixelSize", "rlnMagnification"} <= set(table.columns):
            table["rlnImagePixelSize"] = table["rlnDetectorPixelSize"] * 1e4 / table["rlnMagnification"]
        else:
            raise StarError(
                f"{path}: no data_optics block and no pixel size "
                f"(rlnImagePixelSize or rlnDetectorPixelSize + rlnMagnification)"
            )
    require_columns(table, LEGACY_OPTICS, path, "particles")
    for axis in "XY":
        if f"rlnOrigin{axis}" in table.columns:  # pixels in 3.0, Angstrom in 3.1
            table[f"rlnOrigin{axis}Angst"] = table.pop(f"rlnOrigin{axis}") * table["rlnImagePixelSize"]
    optics = table[list(LEGACY_OPTICS)].drop_duplicates().reset_index(drop=True)
    optics.insert(0, "rlnOpticsGroup", np.arange(1, len(optics) + 1))
    optics.insert(1, "rlnOpticsGroupName", [f"opticsGroup{i}" for i in optics["rlnOpticsGroup"]])
    table = table.merge(optics, on=list(LEGACY_OPTICS)).drop(
        columns=list(LEGACY_OPTICS) + ["rlnOpticsGroupName", "rlnDetectorPixelSize", "rlnMagnification"],
        errors="ignore",
    )
    return table, optics
