"""The engine stands without Scipion, and its public API (engine.__all__) resolves."""

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import blush_scipion.engine as engine

SCIPION = ("pyworkflow", "pwem")


def fresh_python(code: str) -> dict:
    """Run `code` in a new interpreter (this one has Scipion loaded by conftest); it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_engine_module_imports_scipion():
    # every module (and subpackage) under blush_scipion/engine, but __main__ files, which run a command
    found = fresh_python(f"""
        import importlib, json, pkgutil, sys
        import blush_scipion.engine as engine
        scipion = {SCIPION!r}
        loaded = lambda: {{m for m in sys.modules if m.split(".")[0] in scipion}}
        names, culprits = [], {{}}
        for info in pkgutil.walk_packages(engine.__path__, engine.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue
            before = loaded()
            importlib.import_module(info.name)
            names.append(info.name)
            if loaded() - before:
                culprits[info.name] = sorted(loaded() - before)[:5]
        print(json.dumps({{"names": names, "culprits": culprits, "loaded": sorted(loaded())}}))
    """)
    assert not found["culprits"], f"engine modules that import Scipion: {found['culprits']}"
    assert not found["loaded"]
    reached = {name.removeprefix("blush_scipion.engine.") for name in found["names"]}
    assert {"refine3d", "cli.refine3d", "blush.model"} <= reached, "the walk reached the subpackages"


def test_importing_the_engine_is_cheap():
    found = fresh_python("""
        import json, sys
        import blush_scipion.engine
        heavy = ("torch", "pyworkflow", "pwem")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
    """)
    assert found == [], "the API is imported on first use, not with the package"


def test_every_public_name_resolves_to_its_definition():
    submodules = {info.name for info in pkgutil.iter_modules(engine.__path__)}
    assert engine.__all__ and len(set(engine.__all__)) == len(engine.__all__)
    assert set(engine.__all__) == set(engine._API), "__all__ and the lazy table name the same things"
    for name in engine.__all__:
        assert name not in submodules, f"{name}: importing engine.{name} would rebind it to the module"
        value = getattr(engine, name)
        assert not inspect.ismodule(value)
        assert value is getattr(importlib.import_module(value.__module__), name)
        assert value.__module__.startswith("blush_scipion.engine."), value.__module__
    assert set(engine.__all__) <= set(dir(engine))


def test_star_import_and_unknown_names():
    namespace = {}
    exec("from blush_scipion.engine import *", namespace)
    assert set(engine.__all__) <= set(namespace)
    for name in ("refine", "classify", "reconstruct_particles", "read_map", "write_map", "Particles"):
        assert name in engine.__all__
    with pytest.raises(AttributeError, match="no_such_name"):
        engine.no_such_name  # noqa: B018
