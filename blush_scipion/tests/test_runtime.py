"""The engine process's set-up (engine/runtime.py): large batches on huge pages, and the `blush`
command running with it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Twenty batches of 64 MB, each written in full and freed, in a fresh process; prints the minor page
# faults they cost (each page touched for the first time is one).
BATCHES = """
import json, resource, sys, torch
from blush_scipion.engine.runtime import prepare_process
if sys.argv[1] == "prepared":
    prepare_process()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 * 2**20).sum()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def batch_faults(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # none of the caller's settings (THP_MEM_ALLOC_ENABLE among them)
    run = subprocess.run([sys.executable, "-c", BATCHES, mode], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.skipif(
    not THP.exists() or "[never]" in THP.read_text(), reason="the kernel gives no transparent huge pages"
)
def test_large_batches_fault_in_huge_pages():
    plain, prepared = batch_faults("plain"), batch_faults("prepared")
    pages = 20 * 64 * 2**20 // 4096
    if "[madvise]" in THP.read_text():  # huge pages only when asked ("always" gives them unasked)
        assert plain > 0.9 * pages  # 4 KB pages, each faulted in by the kernel, batch after batch
    assert prepared < 0.1 * pages  # 2 MB pages: 512 times fewer where the kernel has them


def test_the_command_sets_the_process_up_before_its_work(monkeypatch, tmp_path, capsys):
    from blush_scipion.engine import runtime
    from blush_scipion.engine.cli import main

    calls = []
    monkeypatch.setattr(runtime, "prepare_process", lambda: calls.append("prepared"))
    assert main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc")]) == 2  # fails at its first read
    assert calls == ["prepared"]
    assert "a.mrc" in capsys.readouterr().err
