"""The facility workflow template, as a facility runs it: placeholders filled, the project created
with pyworkflow's create script, every protocol scheduled headless, each waiting for its input,
run to the end on small simulated data (a few minutes on 2 cores, most of it the scheduler's
polling: scheduled protocols check their inputs every 15-120 s)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pyworkflow")

from .conftest import MODEL  # noqa: E402  (conftest has configured Scipion's environment)

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "blush_facility.json.template"
PROJECT = "BlushTestTemplateFacility"
TIMEOUT_S = 1500
APIX = 3.0


def _fill_template(values: dict, out: Path) -> Path:
    """The template with its placeholders set by alias, as `scipion3 template FILE alias=value` does."""
    from pyworkflow.template import LocalTemplate

    template = LocalTemplate("blush_scipion", str(TEMPLATE))
    template.replaceEnvVariables()
    template.parseContent()
    for alias, value in values.items():
        assert template.setParamValue(alias, str(value)), alias
    filled = Path(template.createTemplateFile())
    out.write_text(filled.read_text())
    filled.unlink()
    return out


def _run_script(args: list, log: Path, cwd: Path):
    # stdout to a file, not a pipe: the schedulers started by the script inherit it and live on
    with open(log, "a") as f:
        subprocess.run(
            [sys.executable, "-m"] + args,
            cwd=cwd,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            check=True,
            timeout=300,
        )


def _load(name):
    import pyworkflow as pw
    from pyworkflow.project import Manager, Project

    project = Project(pw.Config.getDomain(), os.path.realpath(Manager().getProjectPath(name)))
    project.load()
    return project


def test_facility_template_runs_scheduled(tmp_path):
    from pyworkflow.project import Manager

    from blush_scipion.engine.fourier import low_pass
    from blush_scipion.engine.mrc import read_map, write_map
    from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

    sim = tmp_path / "sim"
    simulate_from_model(
        MODEL, SimulationSettings(n_particles=300, box=40, pixel_size=APIX, snr=0.3, seed=5), sim
    )
    truth, _ = read_map(sim / "truth.mrc")
    write_map(sim / "start.mrc", low_pass(truth, 30.0, APIX), APIX)
    workflow = _fill_template(
        dict(
            star=sim / "particles.star",
            map=sim / "start.mrc",
            angpix=APIX,
            classes=4,
            iter2d=3,
            diameter=90,
            iter3d=3,
        ),
        tmp_path / "workflow.json",
    )

    manager = Manager()
    if manager.hasProject(PROJECT):
        manager.deleteProject(PROJECT)
    log = tmp_path / "scripts.log"
    _run_script(["pyworkflow.project.scripts.create", PROJECT, str(workflow)], log, tmp_path)
    project = _load(PROJECT)
    runs = project.getRuns()
    assert len(runs) == 7 and all(r.isSaved() for r in runs), [
        (r.getClassName(), r.getStatus()) for r in runs
    ]
    # pyworkflow's schedule script would launch 3D auto-refine and post-process twice (see
    # blush_scipion/schedule.py); ours schedules each protocol once, as that script otherwise does
    _run_script(["blush_scipion.schedule", PROJECT], log, tmp_path)

    start = time.time()
    while True:
        project = _load(PROJECT)
        statuses = {
            f"{r.getObjId()} {r.getClassName()}": r.getStatus() for r in project.getRuns(refresh=True)
        }
        if all(s in ("finished", "failed", "aborted") for s in statuses.values()):
            break
        assert time.time() - start < TIMEOUT_S, f"not finished after {TIMEOUT_S} s: {statuses}"
        time.sleep(10)
    print(f"workflow finished in {time.time() - start:.0f} s")
    assert set(statuses.values()) == {"finished"}, (statuses, log.read_text()[-3000:])

    def is_half_import(run):  # the volume import that reads the refinement's run folder
        return run.getClassName() == "ProtImportVolumes" and bool(run.filesPattern.get())

    runs = {r.getClassName(): r for r in project.getRuns() if not is_half_import(r)}
    half_import = next(r for r in project.getRuns() if is_half_import(r))
    # each protocol launched once, and those downstream waited for their inputs while not ready
    for run in project.getRuns():
        schedule_log = Path(project.path, run.getScheduleLog()).read_text()
        assert schedule_log.count("Launching the protocol") == 1, (run.getClassName(), schedule_log[-2000:])
    assert "There are no files matching" in Path(project.path, half_import.getScheduleLog()).read_text()
    assert "...waiting for" in Path(project.path, runs["ProtBlushRefine3D"].getScheduleLog()).read_text()
    assert half_import.outputVolumes.getSize() == 2

    refine = runs["ProtBlushRefine3D"]
    assert refine.outputParticles.getSize() == 300
    assert refine.outputVolume.hasHalfMaps() and os.path.exists(refine.outputVolume.getFileName())
    assert os.path.exists(refine.outputVolumeBlush.getFileName())
    gold = float(refine.outputFSC.calculateResolution())
    assert 2 * APIX - 0.01 < gold < 30.0, gold
    assert runs["ProtBlushClassify2D"].outputClasses.getSize() >= 1

    validated = float(runs["ProtBlushValidateFsc"].outputFSC.calculateResolution())
    assert abs(validated - gold) < 1.0, (validated, gold)  # the same half maps, unmasked

    post = runs["ProtBlushPostprocess"]
    assert os.path.exists(post.outputVolume.getFileName()) and os.path.exists(post.outputMask.getFileName())
    corrected = float(post.outputFSC.calculateResolution())
    assert 2 * APIX - 0.01 < corrected < gold + 0.5, (corrected, gold)
