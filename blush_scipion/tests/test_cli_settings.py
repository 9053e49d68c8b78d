"""One source for each option (issue 23): every engine setting declared with engine.option.option
has exactly one `blush` flag, with the dataclass's default, and the bare command line gives the
dataclass's defaults; the only other flags are the inputs, outputs and run controls written by hand."""

import importlib
from dataclasses import fields

import pytest

from blush_scipion.engine.blush.training import TrainSettings
from blush_scipion.engine.classify2d import Class2DSettings
from blush_scipion.engine.classify3d import Class3DSettings
from blush_scipion.engine.cli import Parser
from blush_scipion.engine.cli.localres import LocalresSettings
from blush_scipion.engine.cli.options import settings_from
from blush_scipion.engine.cli.postprocess import PostprocessSettings
from blush_scipion.engine.cli.reconstruct import ReconstructSettings
from blush_scipion.engine.refine3d import RefineSettings
from blush_scipion.engine.simulate import SimulationSettings

PARTICLES, REF, OUT = ["--particles", "p.star"], ["--ref", "r.mrc"], ["--out", "o"]
HALVES = ["--half1", "a.mrc", "--half2", "b.mrc", "--out", "o"]
RUN = {"resume", "overwrite"}  # add_run_flags
MAPS = {"half1", "half2", "out", "mask", "angpix"}  # maps.add_half_maps, and the mask and pixel size
COMMANDS = {  # command: its settings, its required arguments, its flags that are not settings
    "refine3d": (RefineSettings, PARTICLES + REF + OUT, {"particles", "ref", "out", *RUN}),
    # --iter: its default depends on --grad
    "class2d": (Class2DSettings, PARTICLES + OUT, {"particles", "out", "iter", *RUN}),
    "class3d": (Class3DSettings, PARTICLES + REF + OUT, {"particles", "ref", "out", *RUN}),
    # --dim: the integers 2 and 3 (option()'s choices are words); --workers: no setting
    "train": (
        TrainSettings,
        ["--models", "m.pdb", *OUT],
        {"out", "models", "pairs", "init", "diameter", "exclude", "validation_models", "dim", "workers"},
    ),
    # --defocus MIN MAX: two settings in one flag
    "simulate": (SimulationSettings, ["--model", "m.pdb", *OUT], {"model", "out", "defocus"}),
    "reconstruct": (ReconstructSettings, PARTICLES + OUT, {"particles", "out"}),
    "localres": (LocalresSettings, HALVES, MAPS),
    "postprocess": (PostprocessSettings, HALVES, MAPS),
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
    args = parser("train").parse_args(
        COMMANDS["train"][1]
        + ["--batch", "3", "--lr", "0.01", "--res-max", "9", "--dim", "2", "--validate-every", "5"]
    )
    s = settings_from(TrainSettings, args)
    assert (s.batch_size, s.learning_rate, s.resolution_max, s.dim, s.validate_every) == (3, 0.01, 9.0, 2, 5)
    args = parser("simulate").parse_args(
        COMMANDS["simulate"][1] + ["--n", "7", "--apix", "1.5", "--seed", "4"]
    )
    s = settings_from(SimulationSettings, args)
    assert (s.n_particles, s.pixel_size, s.seed) == (7, 1.5, 4)
    args = parser("reconstruct").parse_args(
        COMMANDS["reconstruct"][1] + ["--sym", "D2", "--no-ctf", "--batch", "9"]
    )
    s = settings_from(ReconstructSettings, args)
    assert (s.symmetry, s.ctf, s.wiener, s.batch_size) == ("D2", False, True, 9)
    args = parser("localres").parse_args(COMMANDS["localres"][1] + ["--minres", "40", "--radius", "9"])
    s = settings_from(LocalresSettings, args)
    assert (s.min_resolution, s.radius, s.edge) == (40.0, 9.0, None)


@pytest.mark.parametrize(
    "command, flag, value, words",
    [
        ("train", "--batch", "0", "must be a whole number >= 1"),
        ("train", "--lr", "-1", "must be a number > 0"),
        ("train", "--dim", "4", "invalid choice"),
        ("simulate", "--n", "0", "must be a whole number >= 1"),
        ("simulate", "--apix", "nan", "must be a number > 0"),
        ("reconstruct", "--pad", "0", "must be a whole number >= 1"),
        ("localres", "--edge", "-1", "must be a number >= 0"),
        ("postprocess", "--mask-threshold", "x", "invalid float value"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_its_flag(command, flag, value, words, capsys):
    with pytest.raises(SystemExit) as stop:
        parser(command).parse_args(COMMANDS[command][1] + [flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {flag}: {words}" in err, err
