"""One source for each option (issue 23): every engine setting declared with engine.option.option
has exactly one `blush` flag, with the dataclass's default, and the bare command line gives the
dataclass's defaults; the only other flags are the inputs, outputs and run controls written by hand."""

import importlib
from dataclasses import fields

import pytest

from blush_scipion.engine.classify2d import Class2DSettings
from blush_scipion.engine.classify3d import Class3DSettings
from blush_scipion.engine.cli import Parser
from blush_scipion.engine.cli.options import settings_from
from blush_scipion.engine.refine3d import RefineSettings

COMMANDS = {  # command: its settings, its required arguments, its flags that are not settings
    "refine3d": (
        RefineSettings,
        ["--particles", "p.star", "--ref", "r.mrc", "--out", "o"],
        {"particles", "ref", "out", "resume", "overwrite"},
    ),
    "class2d": (
        Class2DSettings,
        ["--particles", "p.star", "--out", "o"],
        {"particles", "out", "resume", "overwrite", "iter"},  # --iter: its default depends on --grad
    ),
    "class3d": (
        Class3DSettings,
        ["--particles", "p.star", "--ref", "r.mrc", "--out", "o"],
        {"particles", "ref", "out", "resume", "overwrite"},
    ),
}


def parser(command):
    p = Parser(prog=f"blush {command}")
    importlib.import_module(f"blush_scipion.engine.cli.{command}").add_args(p)
    return p


def declared(settings):
    return [f for f in fields(settings) if "help" in f.metadata]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_setting_has_one_flag_with_its_default(command):
    settings, _, by_hand = COMMANDS[command]
    actions = [a for a in parser(command)._actions if a.option_strings and a.dest != "help"]
    assert declared(settings), f"{settings.__name__} declares no option"
    for f in declared(settings):
        flag = "--" + (f.metadata["flag"] or f.name.replace("_", "-"))
        mine = [a for a in actions if a.dest == f.name or flag in a.option_strings]
        assert len(mine) == 1, f"{command} {flag}: {len(mine)} flags for {settings.__name__}.{f.name}"
        (action,) = mine
        assert action.option_strings == [flag] and action.dest == f.name, (command, flag, action)
        choices = f.metadata["choices"]
        default = choices[action.default] if choices else action.default
        assert default == f.default, f"{command} {flag}: default {default!r}, {f.name} = {f.default!r}"
    # no setting also has a hand-written flag of another name
    names = {f.name for f in declared(settings)}
    others = {a.dest for a in actions} - names
    assert others == by_hand, (
        f"{command}: flags besides the settings' {sorted(others)}, expected {sorted(by_hand)}"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_bare_command_line_gives_the_default_settings(command):
    settings, required, _ = COMMANDS[command]
    assert settings_from(settings, parser(command).parse_args(required)) == settings()


def test_a_given_flag_reaches_its_setting():
    args = parser("refine3d").parse_args(
        COMMANDS["refine3d"][1]
        + [
            "--max-iter",
            "3",
            "--blush-skip-spectral-trailing",
            "--blush-trailing-fill",
            "zero",
            "--sym",
            "D2",
        ]
    )
    s = settings_from(RefineSettings, args)
    assert (s.max_iterations, s.blush_trailing, s.blush_fill, s.symmetry) == (3, False, False, "D2")
    args = parser("class2d").parse_args(COMMANDS["class2d"][1] + ["--no-center", "--k", "3", "--batch", "5"])
    s = settings_from(Class2DSettings, args)
    assert (s.center_classes, s.classes, s.batch_size) == (False, 3, 5)
