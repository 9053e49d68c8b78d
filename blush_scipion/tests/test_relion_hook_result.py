"""relion-hook writes only where RELION reads (issue 19, class 5): the rlnExtReconsResult of a
hand-over must be an .mrc in the STAR's own folder (RELION's job folder, beside the data and weight
files it names), and no input; anything else is refused in one line before any compute."""

import os
import subprocess
import sys

import pytest

from blush_scipion.engine import cli

from .one_line import assert_refused, fingerprints
from .test_relion_hook import blob, write_hand_over


def _hand_over(folder, result: str):
    """A hand-over in folder/job whose rlnExtReconsResult is `result` ({job}: the job folder,
    {root}: the files' common stem)."""
    job = folder / "job"
    job.mkdir()
    star = write_hand_over(job, blob(8))
    root = str(star)[: -len(".star")]
    text = star.read_text()
    line = next(t for t in text.splitlines() if t.startswith("_rlnExtReconsResult "))
    star.write_text(text.replace(line, f"_rlnExtReconsResult {result.format(job=job, root=root)}"))
    return star


def _link_out(folder):
    """job/link.mrc, a symbolic link to a file outside the job folder."""
    (folder / "elsewhere").mkdir()
    (folder / "elsewhere" / "target.mrc").write_bytes(b"someone's map")
    star = _hand_over(folder, "{job}/link.mrc")
    os.symlink(folder / "elsewhere" / "target.mrc", star.parent / "link.mrc")
    return star


def _far(folder):
    return folder.parent / f"{folder.name}_far.mrc"  # outside the test's folder, its own name


# (hand-over made in a folder, extra options, words the one line must hold)
CASES = {
    "another folder": (
        lambda d: _hand_over(d, str(d / "elsewhere.mrc")),
        [],
        ["is outside the STAR's folder"],
    ),
    "absolute, far away": (
        lambda d: _hand_over(d, str(_far(d))),
        [],
        ["_far.mrc'", "outside the STAR's folder"],
    ),
    "../ relative": (lambda d: _hand_over(d, "../escape.mrc"), [], ["'../escape.mrc'", "climbs out"]),
    "../ inside an absolute path": (lambda d: _hand_over(d, "{job}/../escape.mrc"), [], ["climbs out"]),
    "a subfolder": (lambda d: _hand_over(d, "{job}/sub/result.mrc"), [], ["outside the STAR's folder"]),
    "not .mrc": (lambda d: _hand_over(d, "{root}.txt"), [], ["is not an .mrc map"]),
    ".mrcs stack": (lambda d: _hand_over(d, "{root}.mrcs"), [], ["is not an .mrc map"]),
    "the STAR itself": (lambda d: _hand_over(d, "{root}.star"), [], ["is not an .mrc map"]),
    "the data file": (lambda d: _hand_over(d, "{root}_data_real.mrc"), [], ["is one of the hook's inputs"]),
    "the weight file": (lambda d: _hand_over(d, "{root}_weight.mrc"), [], ["is one of the hook's inputs"]),
    "a link out of the folder": (_link_out, [], ["link.mrc", "outside the STAR's folder"]),
    "--out names an input": (
        lambda d: _hand_over(d, "{root}.mrc"),
        ["--out", "{root}_data_imag.mrc"],
        ["--out", "_data_imag.mrc", "is one of the hook's inputs"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_result_where_relion_does_not_read_is_refused(case, tmp_path, capsys):
    build, options, words = CASES[case]
    star = build(tmp_path)
    root = str(star)[: -len(".star")]
    before = fingerprints(tmp_path)
    code = cli.main(["relion-hook", str(star), *(o.format(root=root) for o in options)])
    line = assert_refused(
        code,
        capsys.readouterr().err,
        "relion-hook",
        str(star),
        "rlnExtReconsResult" if "--out" not in options else "--out",
        *words,
    )
    print(f"| {case} | `{line}` |")
    assert fingerprints(tmp_path) == before  # nothing written, nothing changed
    assert not _far(tmp_path).exists()


def test_relion_python_blush_refuses_it_too(tmp_path):
    star = _hand_over(tmp_path, "../escape.mrc")
    before = fingerprints(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from blush_scipion.engine.cli.relion_hook import "
            "relion_python_blush as main; raise SystemExit(main())",
            str(star),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]  # RELION shows our standard output
    assert last.startswith("relion_python_blush: error: ")
    assert "climbs out" in run.stdout and fingerprints(tmp_path) == before


def test_relion_s_own_relative_names_from_the_project_folder_are_answered(tmp_path):
    """RELION names the files relative to the project folder it runs in, the STAR in a job folder."""
    job = tmp_path / "Refine3D" / "job001"
    job.mkdir(parents=True)
    star = write_hand_over(job, blob(8))
    star.write_text(star.read_text().replace(f"{tmp_path}/", ""))
    relative = star.relative_to(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "blush_scipion.engine.cli", "relion-hook", str(relative)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert (job / "run_it001_class001_external_reconstruct.mrc").stat().st_size > 0
