"""atomic.py (an interrupted write leaves the old file) and checkpoint.py (resuming from the last whole
iteration)."""

import fnmatch
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from blush_scipion.engine.atomic import atomic_path
from blush_scipion.engine.checkpoint import iteration_path, last_checkpoint, write_json
from blush_scipion.engine.run_folder import TEMPORARY


class Interrupted(Exception):
    pass


def visible(folder):
    """The folder's files as a user (or a glob like run_it*) sees them: not the hidden temporaries."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_write_lands_whole_with_no_temporary_left(tmp_path):
    target = tmp_path / "summary.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent, "beside the target: os.replace then stays on one file system"
        assert tmp.suffix == ".json", "writers that choose the format by extension see the target's"
        assert tmp.name.startswith(".") and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_permissions_are_as_open_would_make_them(tmp_path):
    target = tmp_path / "map.mrc"
    umask = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"\0")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


def test_creates_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.star"
    with atomic_path(target) as tmp:
        tmp.write_text("data_\n")
    assert target.read_text() == "data_\n"


@pytest.mark.parametrize("error", [Interrupted, KeyboardInterrupt])
def test_error_mid_write_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    target = tmp_path / "run_it002_optimiser.json"
    target.write_text("old")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_text("half of the ne")
        raise error
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == [target.name]


def test_error_mid_first_write_leaves_no_file(tmp_path):
    target = tmp_path / "run_class001.mrc"
    with pytest.raises(Interrupted), atomic_path(target) as tmp:
        tmp.write_bytes(b"MAP partial")
        raise Interrupted
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_killed_mid_write_keeps_the_old_file_and_hides_the_partial_one(tmp_path):
    """A kill -9 runs no cleanup: the partial temporary stays, but hidden, unseen by last_checkpoint
    and of a name run_folder.claim removes before the next run."""
    target = iteration_path(tmp_path, 3, "optimiser.json")
    write_json(iteration_path(tmp_path, 2, "optimiser.json"), {"iteration": 2})
    target.write_text('{"iteration": 3}')
    script = textwrap.dedent(f"""
        import os, signal
        from blush_scipion.engine.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write('{{"iteration": 3, "half of')
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert json.loads(target.read_text()) == {"iteration": 3}
    assert visible(tmp_path) == ["run_it002_optimiser.json", "run_it003_optimiser.json"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and "half of" in (tmp_path / leftovers[0]).read_text()
    assert any(fnmatch.fnmatch(leftovers[0], pattern) for pattern in TEMPORARY)
    assert last_checkpoint(tmp_path) == 3


def test_write_json_round_trip_and_failure(tmp_path):
    path = iteration_path(tmp_path, 7, "optimiser.json")
    assert path.name == "run_it007_optimiser.json"
    write_json(path, {"state": {"iteration": 7, "resolution": 4.5}})
    assert json.loads(path.read_text()) == {"state": {"iteration": 7, "resolution": 4.5}}
    with pytest.raises(TypeError):
        write_json(path, {"state": object()})  # not JSON: refused before a byte lands
    assert json.loads(path.read_text())["state"]["iteration"] == 7
    assert os.listdir(tmp_path) == [path.name]


def test_last_checkpoint_of_an_empty_or_fresh_folder(tmp_path):
    assert last_checkpoint(tmp_path) is None
    (tmp_path / "run.json").write_text("{}")
    iteration_path(tmp_path, 1, "data.star").write_text("")  # iteration 1 started, never finished
    assert last_checkpoint(tmp_path) is None
    write_json(iteration_path(tmp_path, 0, "optimiser.json"), {})
    assert last_checkpoint(tmp_path) == 0  # iteration 0 counts (callers test `is not None`)


def test_last_checkpoint_skips_a_half_written_iteration(tmp_path):
    for it in (1, 2, 3):
        for what in ("half1_class001.mrc", "half2_class001.mrc", "data.star"):
            iteration_path(tmp_path, it, what).write_text("")
        write_json(iteration_path(tmp_path, it, "optimiser.json"), {"iteration": it})
    # iteration 4: its maps and data written, killed while writing optimiser.json (written last)
    for what in ("half1_class001.mrc", "half2_class001.mrc", "data.star"):
        iteration_path(tmp_path, 4, what).write_text("")
    (tmp_path / ".run_it004_optimiser.json.k1ll3d.json").write_text('{"iter')
    # and a file whose name merely begins like a checkpoint's
    (tmp_path / "run_it005_optimiser.json.bak").write_text("")
    assert last_checkpoint(tmp_path) == 3


def test_last_checkpoint_orders_by_number_past_999(tmp_path):
    for it in (998, 999, 1000):
        write_json(iteration_path(tmp_path, it, "optimiser.json"), {})
    assert iteration_path(tmp_path, 1000, "optimiser.json").name == "run_it1000_optimiser.json"
    assert last_checkpoint(tmp_path) == 1000
