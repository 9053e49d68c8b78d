"""A private, headless Scipion set-up for tests and the demo: nothing is written to the user's home.

Call configure_scipion() before pyworkflow is first imported (it reads its configuration once).
Variables already set by the user win.
"""

import os
import sys
from pathlib import Path


def configure_scipion(root: str | os.PathLike) -> Path:
    """Create `root`/config/hosts.conf and point Scipion's variables at `root`; returns `root`."""
    root = Path(root).resolve()
    (root / "config").mkdir(parents=True, exist_ok=True)
    hosts = root / "config" / "hosts.conf"
    if not hosts.exists():
        hosts.write_text("[localhost]\n")  # without it pyworkflow calls sys.exit
    defaults = {
        "SCIPION_HOME": root,
        "SCIPION_USER_DATA": root / "data",
        "SCIPION_DOMAIN": "pwem",
        "SCIPION_PYTHON": sys.executable,  # protocols run in a subprocess with this Python
        "SCIPION_TESTS": root / "tests",
        "SCIPION_TEST_NOSYNC": "1",
        "SCIPION_NOTIFY": "False",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": root / "matplotlib",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
    return root
