"""A run folder belongs to one run.

What defines a run (its particle rows, its reference, the settings that shape its result) is
recorded in run.json beside its checkpoints. A fresh run refuses a folder that holds another run's
outputs (`overwrite` clears them first), `--continue` refuses one whose run differs and says what
differs, and a lock file keeps two processes out of one folder at once (a lock left by a killed
process on this machine is recognised as stale and taken over).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .atomic import atomic_path
from .blush.weights import sha256_of
from .distributed import World, on_leader

RUN_FILE = "run.json"
LOCK_FILE = ".blush.lock"
OUTPUTS = ("run_*", "summary.json", "grad_sums.safetensors", RUN_FILE)  # what our drivers write
TEMPORARY = tuple(f".{name.rstrip('*')}*" for name in OUTPUTS)  # atomic_path's temporaries of them


@dataclass(frozen=True)
class RunIdentity:
    """command: the driver; inputs: name -> fingerprint; settings: those that shape the result;
    defaults: the settings' defaults, which a run recorded before a setting existed ran with."""

    command: str
    inputs: dict
    settings: dict
    defaults: dict = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, command: str, inputs: dict, settings: Any, *, ignore: tuple[str, ...] = ()) -> RunIdentity:
        """An identity with `settings` (a settings dataclass, or a dict) as JSON holds them (so that
        a recorded one compares equal), less those in `ignore` (how a run is computed, not what it
        computes)."""
        if isinstance(settings, dict):
            values, defaults = dict(settings), {}
        else:
            values = asdict(settings)
            defaults = {f.name: f.default for f in fields(settings) if f.default is not MISSING}

        def as_json(d: dict) -> dict:
            return json.loads(json.dumps({k: v for k, v in d.items() if k not in ignore}, default=str))

        return cls(command, inputs, as_json(values), as_json(defaults))

    def differences(self, other: dict) -> list[str]:
        """What differs from a recorded identity (its dict), in words. A setting the record lacks
        counts as its default (the run was made before the setting existed)."""
        found = (
            [f"the command ({other.get('command')} there, {self.command} now)"]
            if other.get("command") != self.command
            else []
        )
        for name in sorted(set(self.inputs) | set(other.get("inputs", {}))):
            if self.inputs.get(name) != other.get("inputs", {}).get(name):
                found.append(f"the {name}")
        recorded = {**self.defaults, **other.get("settings", {})}
        for name in sorted(set(self.settings) | set(recorded)):
            if self.settings.get(name) != recorded.get(name):
                found.append(f"{name} ({recorded.get(name)!r} there, {self.settings.get(name)!r} now)")
        return found


def table_fingerprint(table: pd.DataFrame) -> str:
    """sha256 of a STAR table's content (rows and columns), whatever file or folder it came from."""
    digest = hashlib.sha256(",".join(map(str, table.columns)).encode())
    digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> str:
    return sha256_of(path)[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # a killed process nobody has reaped yet (a zombie) still answers signal 0
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    path = out / LOCK_FILE
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, _, pid = path.read_text().partition(" ")
            if host == socket.gethostname() and pid.strip().isdigit() and not _alive(int(pid)):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise ValueError(
                f"{out}: another run is writing here ({path.name}: {host} pid {pid.strip()}); "
                f"if none is, remove {path}"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        if path.exists() and path.read_text() == me:
            path.unlink()


def _remove(out: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()


@contextmanager
def claim(
    out: str | os.PathLike, identity: RunIdentity, *, resume: bool, overwrite: bool = False
) -> Iterator[Path]:
    """Hold `out` for one run of `identity` while the block runs.

    A fresh run needs a folder without another run's outputs (or `overwrite`); a resumed one needs
    the recorded run to be this one (a folder with checkpoints but no record, from before records
    were kept, is taken as it is)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out must be a folder, and this is a file")
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        _remove(out, TEMPORARY)  # what a killed atomic write left (atomic.py); no writer runs now
        record = out / RUN_FILE
        held = any(out.glob("run_it*_optimiser.json")) or (out / "summary.json").exists()
        if overwrite:
            _remove(out, OUTPUTS)
        elif resume and record.exists():
            differs = identity.differences(json.loads(record.read_text()))
            if differs:
                raise ValueError(f"{out}: --continue of a different run: " + "; ".join(differs))
        elif held and not resume:
            raise ValueError(
                f"{out}: holds another run's outputs; continue it (--continue), choose another "
                "--out, or clear it (--overwrite)"
            )
        with atomic_path(record) as tmp:
            recorded = {k: v for k, v in asdict(identity).items() if k != "defaults"}
            tmp.write_text(json.dumps(recorded, indent=2, default=str))
        yield out


@dataclass(frozen=True)
class RunControl:
    """How a driver runs, not what it computes: continue from the last checkpoint (`resume`) or
    start afresh (over another run's files only with `overwrite`), progress bars and the log, and
    the ranks under torch.distributed (`world`, from distributed.start)."""

    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    log: Callable[[str], object] = print
    world: World = World()

    @contextmanager
    def holding(self, out: str | os.PathLike, identity: RunIdentity) -> Iterator[RunControl]:
        """Hold `out` for this run (claim, on the leader only) while the block runs; yields the
        control this rank runs with: the leader's log and progress as given, the others' silent."""
        with on_leader(self.world, claim(out, identity, resume=self.resume, overwrite=self.overwrite)):
            log, progress = self.world.voice(self.log, progress=self.progress)
            yield replace(self, log=log, progress=progress)
