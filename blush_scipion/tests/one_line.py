"""What every refused input must look like (issue 19): exit code 2, one line
`blush <command>: error: ...` holding the given words, no traceback, inputs left as they were."""

import hashlib
from pathlib import Path


def fingerprints(*folders: Path) -> dict:
    """sha256 of every file under `folders`: compare before and after a command."""
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def assert_refused(code: int, stderr: str, command: str, *words: str) -> str:
    """The one line a refused command printed, after checking it; returns it for the report."""
    # progress bars may come first where the fault shows mid-run (a NaN in the 5th image)
    lines = [line for line in stderr.strip().splitlines() if "batch/s]" not in line]
    assert code == 2, f"exit code {code}: {stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"blush {command}: error: "), stderr[-2000:]
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]
