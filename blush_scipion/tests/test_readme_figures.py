"""benchmarks/readme_figures.py: every figure the README quotes is in a results file (issue 24)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "benchmarks" / "readme_figures.py")
assert _spec and _spec.loader
rf = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("readme_figures", rf)  # dataclasses look their module up there
_spec.loader.exec_module(rf)


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "blush.json").write_text(
        json.dumps({"rows": [{"fsc_truth_05_A": 4.3412, "wall_s": 439.2, "iterations": 10}]})
    )
    (out / "class2d.md").write_text(
        "| snr | arm | purity | frc_truth_05_A |\n|---|---|---|---|\n| 0.05 | standard | 0.952 | 11.85 |\n"
    )
    return out


BLUSH = "(`benchmarks/results/blush.json`, `class2d.md`)"


def unsourced(tmp_path, results, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    return rf.check(readme, results)[1]


def test_a_made_up_figure_is_caught(tmp_path, results, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\nBlush reaches 4.34 A in 439 s {BLUSH}.\nWith the new trick it reaches 3.21 A.\n"
    )
    assert rf.main([str(readme), "--results", str(results)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["README.md:4: 3.21 A: With the new trick it reaches 3.21 A."]


def test_a_sourced_figure_passes_at_the_readmes_precision(tmp_path, results):
    text = f"Blush reaches 4.34 A (4.3 A rounded) in 439 s over 10 iterations; purity 0.952 {BLUSH}.\n"
    assert unsourced(tmp_path, results, text) == []
    readme = tmp_path / "README.md"
    assert rf.main([str(readme), "--results", str(results)]) == 0
    assert [f.text for f in unsourced(tmp_path, results, f"It reaches 4.35 A {BLUSH}.\n")] == ["4.35"]


def test_a_figure_must_match_a_value_of_its_unit(tmp_path, results):
    # 4.34 is a resolution in the results, not a time; 11.85 is a resolution, not a purity
    found = unsourced(tmp_path, results, f"It took 4.34 s; 439 A {BLUSH}.\n")
    assert [f.text for f in found] == ["4.34", "439"]


def test_table_cells_are_figures_except_the_input_columns(tmp_path, results):
    text = (
        f"From {BLUSH}:\n\n| model | SNR | wall s | FSC | purity |\n|---|---|---|---|---|\n"
        "| 4gcnA (14 kDa) | 0.05 | 439 | 4.34 A | 0.952 |\n"
        "| 4gcnA | 0.02 | 512 | 4.34 A | 0.97 |\n"
    )
    assert [(f.line, f.text) for f in unsourced(tmp_path, results, text)] == [(6, "512"), (6, "0.97")]


def test_lists_and_ranges_take_their_last_members_unit(tmp_path, results):
    assert [f.text for f in unsourced(tmp_path, results, f"Ours 4.34, 4.9 and 11.85 A {BLUSH}.\n")] == ["4.9"]
    assert [f.text for f in unsourced(tmp_path, results, f"Ours 439-500 s {BLUSH}.\n")] == ["500"]


def test_code_versions_names_inputs_and_bounds_are_not_figures(tmp_path, results):
    text = (
        "```\nblush refine3d --snr 0.07 --iter 25.5\n```\n\n"
        "Run `benchmarks/blush_vs_standard.py --snr 0.03` with RELION 3.1.3 (RELION 4.1, torch 2.11) on\n"
        "4gcnA and 2qdlA, 2,000 particles of 64 px at 2.5 A/px, SNR 0.07, seed 3, a 17.3 kDa protein;\n"
        "the test holds the error < 1.5 deg; the 3-shell edge; 48^3 blocks; 12 classes.\n"
    )
    assert unsourced(tmp_path, results, text) == []


def test_a_program_name_makes_a_version_only_without_a_unit(tmp_path, results):
    found = unsourced(tmp_path, results, f"RELION 3.1 and RELION 5 took RELION 20 min {BLUSH}.\n")
    assert [f.text for f in found] == ["20"]


def test_a_figure_comes_from_the_results_files_its_passage_names(tmp_path, results):
    assert unsourced(tmp_path, results, "Purity 0.952 (`benchmarks/results/class2d.md`).\n") == []
    found = unsourced(tmp_path, results, "Blush reaches 4.34 A (`benchmarks/results/class2d.md`).\n")
    assert [f.text for f in found] == ["4.34"]
    # in a results file, but the passage does not say which
    found = unsourced(tmp_path, results, "Blush reaches 4.34 A.\n\nIt is in `blush.json`.\n")
    assert [(f.line, f.text) for f in found] == [(1, "4.34")]
    assert found[0].context.startswith("its passage names no results file")


def test_a_one_off_passage_must_name_its_command(tmp_path, results):
    named = "One-off measurement (`.venv/bin/python measure.py --n 3`): it took 7.77 s\nand 1.23 GB.\n"
    assert unsourced(tmp_path, results, named) == []
    for unnamed in (
        "One-off measurement: it took 7.77 s.\n",
        "One-off measurement (by hand): it took 7.77 s.\n",
        "One-off measurement (``): it took 7.77 s.\n",
    ):
        found = [f.text for f in unsourced(tmp_path, results, unnamed)]
        assert found == ["one-off passage names no command", "7.77"], unnamed
    # the passage ends at the blank line: a figure after it needs a source again
    found = unsourced(tmp_path, results, named + f"\nThen 8.88 s {BLUSH}.\n")
    assert [(f.line, f.text) for f in found] == [(4, "8.88")]


def test_settings_are_exempt_only_as_their_phrase(tmp_path, results):
    assert unsourced(tmp_path, results, f"once the map has reached 15 A, Blush starts {BLUSH}.\n") == []
    assert [f.text for f in unsourced(tmp_path, results, f"Blush reaches 15 A {BLUSH}.\n")] == ["15"]


def test_the_readme_quotes_only_sourced_figures():
    n, problems = rf.check(ROOT / "README.md", ROOT / "benchmarks" / "results")
    assert n > 200, n  # the rules still find the README's figures
    assert problems == [], "\n".join(f"README.md:{p}" for p in problems)
