"""The engine's command line as a user runs it: `python -m blush_scipion.engine.cli ARGS` in a new process."""

import subprocess
import sys


def blush(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`blush ARGS` (each made a string) in `cwd`, with `env`: its exit code, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "blush_scipion.engine.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )
