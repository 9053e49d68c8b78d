"""BLUSH_ENV_ACTIVATION: every engine run of a protocol starts in the environment it activates (torch with
the user's CUDA), or in this Python when it is empty (the default: `make demo`'s single venv)."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("pyworkflow")

from pyworkflow.utils.process import buildRunCommand  # noqa: E402

from blush_scipion.constants import BLUSH_ENV_ACTIVATION  # noqa: E402
from blush_scipion.plugin import Plugin  # noqa: E402
from blush_scipion.protocols import (  # noqa: E402
    ProtBlushDenoise,
    ProtBlushRefine3D,
    ProtBlushValidateFsc,
)

ACTIVATION = "conda activate blush-test"
HOOK = 'eval "$(conda shell.bash hook)"&&'  # CONDA_ACTIVATION_CMD as Scipion's configuration gives it


@pytest.fixture
def activation(monkeypatch):
    """Set the plugin variable (as scipion.conf would) to the value given; conda's hook faked."""
    monkeypatch.setattr(Plugin, "getCondaActivationCmd", classmethod(lambda cls: HOOK))
    monkeypatch.setenv("PYTHONPATH", "/scipion/site-packages")

    def set_to(value: str):
        monkeypatch.setitem(Plugin._vars, BLUSH_ENV_ACTIVATION, value)

    return set_to


def engine_call(protocol, *args, **kwargs) -> dict:
    """What `_runEngine` hands to runJob, and the shell command pyworkflow builds from it."""
    calls = []

    def run_job(program, arguments, **kw):
        calls.append(dict(program=program, args=arguments, **kw))

    protocol.runJob = run_job
    protocol._runEngine(*args, **kwargs)
    (call,) = calls
    call["command"] = buildRunCommand(call["program"], call["args"], call["numberOfMpi"], env=call["env"])
    return call


def test_without_the_variable_the_engine_runs_in_this_python(activation):
    activation("")
    call = engine_call(ProtBlushDenoise(), ["denoise", "--half1", "a.mrc"])
    assert call["program"] == Plugin.getProgram()
    assert call["command"].split() == [Plugin.getProgram(), "denoise", "--half1", "a.mrc", "--device", "cpu"]
    assert call["executable"] is None and call["numberOfMpi"] == 1
    assert call["env"]["PYTHONPATH"] == "/scipion/site-packages"  # Scipion's environment as it was


def test_with_the_variable_the_engine_runs_after_the_activation(activation):
    activation(ACTIVATION)
    call = engine_call(ProtBlushDenoise(), ["denoise", "--half1", "a.mrc"])
    assert call["command"].strip() == (
        f"{HOOK} {ACTIVATION} && python -m blush_scipion.engine.cli denoise --half1 a.mrc --device cpu"
    )
    assert call["executable"] == "/bin/bash"
    assert "PYTHONPATH" not in call["env"]  # Scipion's packages would shadow the environment's


def test_torch_distributed_ranks_start_in_the_activated_environment(activation):
    refine = ProtBlushRefine3D(numberOfMpi=2)
    activation("")
    plain = engine_call(refine, ["refine3d", "--o", "run"], distributed=True)
    assert plain["program"].split()[1:] == [
        "--standalone",
        "--nproc-per-node=2",
        "--no-python",
        Plugin.getProgram(),
    ]
    assert os.path.basename(plain["program"].split()[0]) == "torchrun"
    activation(ACTIVATION)
    activated = engine_call(refine, ["refine3d", "--o", "run"], distributed=True)
    assert activated["program"] == (
        f"{HOOK} {ACTIVATION} && python -m torch.distributed.run --standalone "
        "--nproc-per-node=2 -m blush_scipion.engine.cli"
    )
    assert activated["args"] == "refine3d --o run --device cpu"


def test_an_activation_other_than_conda_is_used_as_given(activation):
    activation("source /opt/blush/bin/activate")
    call = engine_call(ProtBlushDenoise(), ["denoise"])
    assert call["program"] == "source /opt/blush/bin/activate && python -m blush_scipion.engine.cli"


def test_fsc_validation_runs_through_the_engine_command_too(activation, tmp_path):
    from pwem.objects import Volume

    prot = ProtBlushValidateFsc()
    prot.setWorkingDir(str(tmp_path))
    prot.halfMap1.set(Volume(location="h1.mrc"))
    prot.halfMap2.set(Volume(location="h2.mrc"))
    calls = []
    prot.runJob = lambda program, arguments, **kw: calls.append((program, arguments))
    activation(ACTIVATION)
    prot.fscStep()
    ((program, arguments),) = calls
    assert program.endswith(f"{ACTIVATION} && python -m blush_scipion.engine.cli")
    assert arguments.startswith("fsc h1.mrc h2.mrc --json ") and "--device" not in arguments


VENV_ACTIVATE = os.path.join(sys.prefix, "bin", "activate")


@pytest.mark.skipif(
    sys.prefix == sys.base_prefix or not os.path.exists(VENV_ACTIVATE),
    reason="needs a virtual environment's activate script",
)
def test_a_real_activation_runs_the_engine(activation, tmp_path):
    """This very venv, activated as a separate environment would be: the command pyworkflow builds runs."""
    activation(f". {VENV_ACTIVATE}")
    call = engine_call(ProtBlushValidateFsc(), ["fsc", "--help"], device=False)
    env = dict(call["env"], PATH="/usr/bin:/bin")  # no python of ours on PATH until the activation
    run = subprocess.run(
        call["command"],
        shell=True,
        executable=call["executable"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: blush fsc")


def test_define_binaries_declares_a_conda_environment_with_torch_and_this_package(activation):
    packages = []

    class Env:
        def addPackage(self, name, **kwargs):
            packages.append((name, kwargs))

    Plugin.defineBinaries(Env())
    ((name, kw),) = packages
    ((command, target),) = kw["commands"]
    assert name == "blush" and kw["tar"] == "void.tgz" and kw["default"] is False
    assert command.startswith(HOOK) and command.endswith(f"touch {target}")
    assert "conda create -y -n blush-" in command and "pip install 'torch>=2.1'" in command
    assert "pip install --no-deps -e " in command  # the engine without Scipion's packages


def test_conda_activation_without_scipions_conda_setting_loads_condas_hook(activation, monkeypatch):
    monkeypatch.setattr(Plugin, "getCondaActivationCmd", classmethod(lambda cls: ""))
    activation(ACTIVATION)
    program = engine_call(ProtBlushDenoise(), ["denoise"])["program"]
    assert program == f'eval "$(conda shell.bash hook)" && {ACTIVATION} && python -m blush_scipion.engine.cli'
