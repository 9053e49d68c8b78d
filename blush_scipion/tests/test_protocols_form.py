"""The drivers' forms mirror the engine's settings (protocols/engine_form.py): each mirrored parameter's
default and help come from the settings dataclass, and the command line a form builds is the one
the engine's own parser reads back into the form's values. No project is run: the forms are built,
filled and asked for their command lines."""

import argparse
import importlib
from pathlib import Path

import pytest

pytest.importorskip("pyworkflow")

from pwem.objects import VolumeMask  # noqa: E402

from blush_scipion.engine.cli.options import settings_from  # noqa: E402
from blush_scipion.protocols import (  # noqa: E402
    ProtBlushClassify2D,
    ProtBlushClassify3D,
    ProtBlushLocalResolution,
    ProtBlushPostprocess,
    ProtBlushRefine3D,
)

DRIVERS = {ProtBlushRefine3D: "refine3d", ProtBlushClassify3D: "class3d", ProtBlushClassify2D: "class2d"}
COMMANDS = {**DRIVERS, ProtBlushPostprocess: "postprocess"}  # forms whose command line a test reads back
MIRRORING = [*COMMANDS, ProtBlushLocalResolution]  # every form with engine settings
# where a form means to differ from the engine (each says so in its help: "Default here ...")
FORM_DEFAULTS = {
    ProtBlushRefine3D: {"useBlush": True, "maxIterations": 25},
    ProtBlushClassify2D: {"numberOfClasses": 20},
    ProtBlushPostprocess: {"bfactor": -100},
}


def command_line(protocol, **values) -> list[str]:
    """The engine command line the protocol's step runs, with the form's `values` (half maps stand in
    for a volume's)."""
    prot = protocol()
    prot.workingDir.set("/run")
    for name, value in values.items():
        getattr(prot, name).set(value)
    ran = []
    prot._runEngine = lambda args, **_: ran.append([str(a) for a in args])
    prot._halfMapArgs = lambda: ["--half1", "/h1.mrc", "--half2", "/h2.mrc"]
    step = next(s for s in prot._stepNames if s in ("refineStep", "classifyStep", "postprocessStep"))
    getattr(prot, step)()  # the step that runs the engine
    (args,) = ran
    return args


def options(args: list[str]) -> dict:
    """--option -> its value (None for a switch), order aside."""
    found, i = {}, 1
    while i < len(args):
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        found[args[i]] = value
        i += 2 if value is not None else 1
    return found


@pytest.mark.parametrize("protocol", MIRRORING, ids=lambda p: p.__name__)
def test_mirrored_defaults_are_the_engines(protocol):
    prot = protocol()
    mirrors = prot._mirrors
    assert len(mirrors) >= 3
    differ = {}
    for name, mirror in mirrors.items():
        value = getattr(prot, name).get()
        if mirror.conversion.to_engine(value) != mirror.field.default:
            differ[name] = value
    assert differ == FORM_DEFAULTS.get(protocol, {})


@pytest.mark.parametrize("protocol", MIRRORING, ids=lambda p: p.__name__)
def test_mirrored_help_is_the_engines(protocol):
    prot = protocol()
    for name, mirror in prot._mirrors.items():
        help = prot._definition.getParam(name).help.get()
        flag = mirror.field.metadata["flag"] or mirror.field.name.replace("_", "-")
        assert help.startswith(f"--{flag} of the engine: "), help
        words = mirror.field.metadata["help"].split("%(default)s")[0]
        assert words in help, (name, help)
    for name in FORM_DEFAULTS.get(protocol, {}):
        assert "Default here" in prot._definition.getParam(name).help.get(), name


# the command lines the forms built before they were generated from the settings (order aside)
BEFORE = {
    ProtBlushRefine3D: (
        {},
        "refine3d --particles /run/extra/input_particles.star --ref /run/extra/reference.mrc "
        "--out /run/extra --sym C1 --ini-high 40.0 --healpix-order 2 --local-from-order 3 "
        "--offset-range 5.0 --offset-step 2.0 --max-iter 25 --continue --blush --blush-from-resolution 15.0",
    ),
    ProtBlushClassify3D: (
        {},
        "class3d --particles /run/extra/input_particles.star --ref /run/extra/reference.mrc --out /run/extra "
        "--k 4 --iter 25 --tau2-fudge 4.0 --ini-high 60.0 --sym C1 --healpix-order 2 --offset-range 5.0 "
        "--offset-step 2.0 --seed 0 --continue",
    ),
    ProtBlushClassify2D: (
        {"useGradientAlg": True, "numberOfVDAMBatches": 6, "centerClasses": False, "maskDiameterA": 90},
        "class2d --particles /run/extra/input_particles.star --out /run/extra --k 20 --iter 6 "
        "--tau2-fudge 2.0 --psi-step 6.0 --offset-range 5.0 --offset-step 1.0 --continue --diameter 90.0 "
        "--no-center --grad",
    ),
}


@pytest.mark.parametrize("protocol", list(DRIVERS), ids=lambda p: p.__name__)
def test_command_line_is_as_before(protocol):
    values, before = BEFORE[protocol]
    args = command_line(protocol, **values)
    assert args[0] == DRIVERS[protocol]
    assert options(args) == options(before.split())


def test_blush_options_only_with_blush():
    """A parameter the form hides (its condition false) is not passed."""
    on = dict(blushWeights="/w.safetensors", blushSkipSpectralTrailing=True, blushFromResolution=0.0)
    assert not any("blush" in a for a in command_line(ProtBlushRefine3D, useBlush=False, **on))
    got = options(command_line(ProtBlushRefine3D, **on))
    assert {k: v for k, v in got.items() if "blush" in k} == {
        "--blush": None,
        "--blush-weights": "/w.safetensors",
        "--blush-from-resolution": "0.0",
        "--blush-skip-spectral-trailing": None,
    }


COMMON = dict(maskDiameterA=90.0, offsetSearchRangePix=3.0, offsetSearchStepPix=1.5)
CHANGED = {  # every mirrored parameter away from the engine's default (refine3d's form: Blush on already)
    ProtBlushRefine3D: COMMON
    | dict(symmetryGroup="D2", initialLowPassFilterA=30.0, angularSamplingDeg=0, localSearchAutoSamplingDeg=4)
    | dict(maxIterations=6, blushWeights="/w.st", blushFromResolution=0.0, blushSkipSpectralTrailing=True),
    ProtBlushClassify3D: COMMON
    | dict(numberOfClasses=2, numberOfIterations=8, symmetryGroup="C2", initialLowPassFilterA=30.0)
    | dict(regularisation=2.0, useBlush=True, blushWeights="/w.st", angularSamplingDeg=0, randomSeed=7),
    ProtBlushClassify2D: COMMON
    | dict(numberOfClasses=3, useGradientAlg=True, regularisation=3.0, centerClasses=False, psiStepDeg=10.0)
    | dict(useBlush=True, blushWeights="/w2.st"),
    ProtBlushPostprocess: dict(autobLowresA=8.0, autobHighresA=0.0, lowPassA=4.0, maskThreshold=0.02)
    | dict(maskExtendPx=2.0, maskSoftEdgePx=4.0, bfactor=-50.0),  # the B-factor hidden: the fit's
}


@pytest.mark.parametrize("protocol", list(COMMANDS), ids=lambda p: p.__name__)
@pytest.mark.parametrize("changed", [False, True], ids=["defaults", "changed"])
def test_engine_reads_back_the_forms_values(protocol, changed):
    """The engine's own parser turns the form's command line into the form's values, field by field;
    a parameter the form hides leaves the engine's default."""
    values = CHANGED[protocol] if changed else {}
    if changed:
        assert set(protocol()._mirrors) - set(values) <= {"useBlush"}
    args = command_line(protocol, **values)
    command = importlib.import_module(f"blush_scipion.engine.cli.{COMMANDS[protocol]}")
    parser = argparse.ArgumentParser()
    command.add_args(parser)
    settings = settings_from(protocol._settings, parser.parse_args(args[1:]))
    prot = protocol()
    for name, value in values.items():
        getattr(prot, name).set(value)
    for name, mirror in prot._mirrors.items():
        shown = prot._definition.evalParamCondition(name)
        expected = mirror.conversion.to_engine(getattr(prot, name).get()) if shown else mirror.field.default
        assert getattr(settings, mirror.field.name) == expected, name


def test_a_mask_is_passed_as_the_reference_mask():
    prot_values = {"referenceMask": VolumeMask(location="/in/mask.mrc")}
    for protocol in (ProtBlushRefine3D, ProtBlushClassify3D):
        assert options(command_line(protocol, **prot_values))["--mask"] == "/in/mask.mrc"


def test_switches_and_choices_as_the_engine_takes_them():
    from blush_scipion.engine.refine3d import RefineSettings
    from blush_scipion.protocols.engine_form import NEGATED, Mirror, settings_field

    fill = Mirror(settings_field(RefineSettings, "blush_fill"))  # a choice: its word
    assert (fill.engine_args(True), fill.engine_args(False)) == (
        ["--blush-trailing-fill", "wiener"],
        ["--blush-trailing-fill", "zero"],
    )
    skip = Mirror(settings_field(RefineSettings, "blush_trailing"), NEGATED)  # a switch: only when set
    assert (skip.engine_args(False), skip.engine_args(True)) == ([], ["--blush-skip-spectral-trailing"])
    with pytest.raises(ValueError, match="resolution_margin"):
        settings_field(RefineSettings, "resolution_margin")  # no option(): not the engine's to mirror


def test_a_slurm_job_asks_for_the_gpus_the_form_lists():
    """docs/slurm_hosts.conf as Scipion fills it for 3D auto-refine on four GPUs through a queue: one
    node, four GPUs, the form's threads; in the job, the protocol's command starts four torchrun ranks
    that share those threads."""
    import pwem
    from pyworkflow.protocol.hosts import HostConfig

    pwem.Domain.getProtocols()  # the plugin registry a Scipion project loads (the job names its plugin)
    hosts_conf = Path(__file__).resolve().parents[2] / "docs" / "slurm_hosts.conf"
    host = HostConfig.load(str(hosts_conf))["localhost"]
    prot = ProtBlushRefine3D()
    prot.setObjId(12)
    prot.workingDir.set("/project/Runs/000012_ProtBlushRefine3D")
    prot.setHostConfig(host)
    prot.useGpu.set(True)
    prot.gpuList.set("0 1 2 3")
    prot.numberOfThreads.set(8)
    prot._useQueue.set(True)
    prot.setQueueParams(["gpu", {"JOB_MEMORY": "96", "JOB_TIME": "48"}])
    job = {**host.getQueuesDefault(), **prot.getSubmitDict(), "JOB_COMMAND": "pw_protocol_run.py ..."}
    script = (host.getSubmitTemplate() % job).splitlines()
    for line in [
        "#SBATCH --job-name=scipion12",
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gres=gpu:4",
        "#SBATCH --mem=96G",
        "#SBATCH --time=48:00:00",
        "pw_protocol_run.py ...",
    ]:
        assert line in script
    assert host.getSubmitCommand() % job == "sbatch /project/Runs/000012_ProtBlushRefine3D/logs/scipion12.job"

    ran = []
    prot.runJob = lambda program, args, env, **_: ran.append((program, args, env))
    prot._runEngine(["refine3d", "--particles", "p.star"], distributed=True)
    ((program, args, env),) = ran
    assert "--nproc-per-node=4" in program
    assert args.endswith("--device cuda")
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert env["OMP_NUM_THREADS"] == "2"
