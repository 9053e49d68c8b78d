"""A run folder belongs to one run: fresh runs, --continue, --overwrite and the lock."""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from blush_scipion.engine.run_folder import LOCK_FILE, RUN_FILE, RunIdentity, claim, table_fingerprint

IDENTITY = RunIdentity.of(
    "refine3d",
    {"particle rows": "abc", "reference": "def"},
    {"symmetry": "C1", "ini_high": 40.0, "device": "cpu", "offsets": (1, 2)},
    ignore=("device",),
)


def test_a_fresh_run_records_itself_and_releases_its_lock(tmp_path):
    with claim(tmp_path / "run", IDENTITY, resume=False) as out:
        assert (out / LOCK_FILE).exists()
    assert not (out / LOCK_FILE).exists()
    recorded = json.loads((out / RUN_FILE).read_text())
    assert recorded["settings"] == {
        "symmetry": "C1",
        "ini_high": 40.0,
        "offsets": [1, 2],
    }  # device is not recorded
    assert IDENTITY.differences(recorded) == []


def test_a_run_recorded_before_a_setting_existed_continues_at_that_settings_default(tmp_path):
    @dataclass(frozen=True)
    class Settings:
        symmetry: str = "C1"
        blush_from_resolution: float = 0.0  # the setting added since the run was recorded

    older = {"command": "class3d", "inputs": {}, "settings": {"symmetry": "C1"}}
    assert RunIdentity.of("class3d", {}, Settings()).differences(older) == []
    changed = RunIdentity.of("class3d", {}, Settings(blush_from_resolution=15.0)).differences(older)
    assert changed == ["blush_from_resolution (0.0 there, 15.0 now)"]
    with claim(tmp_path, RunIdentity.of("class3d", {}, Settings()), resume=False):
        pass
    assert "defaults" not in json.loads((tmp_path / RUN_FILE).read_text())


def test_another_runs_folder_is_refused_unless_continued_or_overwritten(tmp_path):
    with claim(tmp_path, IDENTITY, resume=False):
        (tmp_path / "run_it001_optimiser.json").write_text("{}")
        (tmp_path / "input_particles.star").write_text("kept")  # a protocol's input beside the outputs
    with (
        pytest.raises(ValueError, match="holds another run's outputs"),
        claim(tmp_path, IDENTITY, resume=False),
    ):
        pass
    with claim(tmp_path, IDENTITY, resume=True):  # the same run goes on
        pass
    other = RunIdentity.of(
        "refine3d",
        {"particle rows": "abc", "reference": "xyz"},
        {"symmetry": "C2", "ini_high": 40.0, "offsets": (1, 2)},
    )
    with (
        pytest.raises(ValueError, match=r"different run: the reference; symmetry \('C1' there, 'C2' now\)"),
        claim(tmp_path, other, resume=True),
    ):
        pass
    with claim(tmp_path, other, resume=False, overwrite=True):
        assert not (tmp_path / "run_it001_optimiser.json").exists()
        assert (tmp_path / "input_particles.star").read_text() == "kept"
    assert other.differences(json.loads((tmp_path / RUN_FILE).read_text())) == []


def test_a_live_lock_keeps_a_second_run_out_and_a_stale_one_is_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(f"{socket.gethostname()} {sleeper.pid}")
        with (
            pytest.raises(ValueError, match=f"another run is writing here .* pid {sleeper.pid}"),
            claim(tmp_path, IDENTITY, resume=True),
        ):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with claim(tmp_path, IDENTITY, resume=True):  # its process is gone: the lock is stale
        assert (tmp_path / LOCK_FILE).read_text() == f"{socket.gethostname()} {os.getpid()}"


def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ValueError, match="must be a folder"), claim(tmp_path / "out", IDENTITY, resume=False):
        pass
    assert (tmp_path / "out").read_text() == "not a folder"


def test_the_particle_fingerprint_follows_the_rows_not_the_file():
    table = pd.DataFrame({"rlnImageName": ["1@a.mrcs", "2@a.mrcs"], "rlnDefocusU": [10000.0, 12000.0]})
    assert table_fingerprint(table) == table_fingerprint(table.copy())
    changed = table.assign(rlnDefocusU=[10000.0, 12001.0])
    assert table_fingerprint(changed) != table_fingerprint(table)


def test_the_lock_of_a_killed_but_unreaped_process_is_stale(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not waited for, so a zombie
    deadline = time.time() + 30
    while (
        Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        and time.time() < deadline
    ):
        time.sleep(0.05)
    (tmp_path / LOCK_FILE).write_text(f"{socket.gethostname()} {zombie.pid}")
    with claim(tmp_path, IDENTITY, resume=True):
        pass
    zombie.wait()


def test_temporaries_of_a_killed_atomic_write_are_cleared(tmp_path):
    (tmp_path / ".run_class001.mrc.k3j2.mrc").write_bytes(b"half a map")  # as atomic_path names them
    (tmp_path / ".summary.json.x8.json").write_text("{")
    (tmp_path / ".hidden_by_the_user").write_text("kept")
    with claim(tmp_path, IDENTITY, resume=True):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_by_the_user", RUN_FILE]
