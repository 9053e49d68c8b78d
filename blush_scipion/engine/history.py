"""The drivers' per-iteration history: one typed record per iteration, kept in the checkpoint's state
(run_itNNN_optimiser.json) and listed in summary.json under "history", as JSON objects whose keys
are the records' field names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="IterationRecord")
S = TypeVar("S", bound="DriverState")


@dataclass
class IterationRecord:
    """What every driver records of an iteration: its number (1-based, the checkpoint's)."""

    iteration: int

    _absent: ClassVar[frozenset[str]] = frozenset()  # per record where from_json found keys missing

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (dataclasses.asdict): its fields in order, less an optional one left
        None (a peak that only a CUDA device has) and those its source JSON lacked (from_json)."""
        absent = self._absent
        optional = {f.name for f in fields(self) if f.default is None}
        return {
            k: v for k, v in asdict(self).items() if k not in absent and not (v is None and k in optional)
        }

    @classmethod
    def from_json(cls: type[R], entry: dict[str, Any]) -> R:
        """A record from its JSON, as a checkpoint holds it. Keys the record does not know are
        dropped; fields that a checkpoint written before they were recorded lacks are None, and
        to_json leaves them out again."""
        values: dict[str, Any] = {f.name: entry.get(f.name) for f in fields(cls)}
        record = cls(**values)
        # an attribute, not a field: asdict and the record's equality leave it out
        object.__setattr__(record, "_absent", frozenset(f.name for f in fields(cls) if f.name not in entry))
        return record


@dataclass
class Refine3DRecord(IterationRecord):
    """One iteration of refine3d (both halves): the sampling it searched, what it found, its time."""

    resolution: float  # A, gold-standard FSC = 0.143
    healpix_order: int
    angular_step: float  # degrees
    local: bool  # local searches around the previous poses
    offset_step: float  # pixels
    offset_range: float  # pixels
    r_current: int  # the E-step's radius, Fourier pixels
    angular_change: float  # degrees, the mean over particles (symmetry-aware)
    offset_change: float  # pixels, RMS
    accuracy_rotation: float  # degrees, RELION's expected accuracy
    accuracy_translation_angstrom: float
    seconds: float
    expectation_seconds: float
    maximization_seconds: float
    accuracy_seconds: float
    blush: bool  # the references came from the denoiser
    blush_seconds: float
    peak_rss_gb: float  # memory.peak_memory_gb: the process's peak so far
    cuda_peak_allocated_gb: float | None = None  # on a CUDA device only


@dataclass
class Class2DRecord(IterationRecord):
    """One iteration of class2d (one mini-batch with --grad)."""

    resolution: float  # A, the best class's
    r_current: int  # the E-step's radius, Fourier pixels
    particles: int  # the mini-batch's size, or the set's
    class_changes: float  # fraction of the particles whose class changed
    sigma_offset_px: float
    seconds: float
    m_step_seconds: float


@dataclass
class Class3DRecord(IterationRecord):
    """One iteration of class3d."""

    class_distribution: list[float]  # (K,)
    class_resolution_angstrom: list[float]  # (K,)
    r_current: int  # the E-step's radius, Fourier pixels
    class_changes: float  # fraction of the particles whose class changed
    angular_change: float | None  # degrees; None (null) in the first iteration
    sigma_offset_px: float
    seconds: float
    expectation_seconds: float
    maximization_seconds: float
    blush: bool | None = None  # the next references denoised (None: without --blush)


def history_json(history: Sequence[IterationRecord]) -> list[dict[str, Any]]:
    """A history as summary.json and the checkpoints list it."""
    return [entry.to_json() for entry in history]


class DriverState:
    """What the drivers' state dataclasses share: a history of `record`s, and the JSON of the whole
    state that the checkpoints hold (dataclasses.asdict, the history as history_json)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    record: ClassVar[type[IterationRecord]]
    history: list

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "history": history_json(self.history)}

    @classmethod
    def from_json(cls: type[S], state: dict[str, Any]) -> S:
        """A state from a checkpoint's JSON (written by to_json, or by the plain dicts before it)."""
        history = [cls.record.from_json(entry) for entry in state.get("history", [])]
        return cls(**{**state, "history": history})
