"""Every figure the README quotes comes from a results file (issue 24).

`.venv/bin/python benchmarks/readme_figures.py [README] [--results DIR] [--list]` reads the README,
finds every quoted figure and looks for it in the files under benchmarks/results/ (each written by the
benchmark command the README names beside it). It prints one line per figure it cannot find (line
number, the figure, its line) and exits 1 if there is any; `make lint` runs it.

What is a figure (these rules and no others):

- Skipped text: fenced code blocks, inline code (a command and its flags), HTML comments, link and
  image targets, a `--flag VALUE` written out of code. A number glued to a letter, an underscore or
  a dot is part of a name (4gcnA, 3PWP, run_class001, v1.0, H200); one glued to a hyphen and a word
  is a compound (3-shell, 2-fold); one beside `^` is a shape or a power (48^3, sin^2); a number with
  two dots (3.1.3), or one right after a program's name (VERSIONED: RELION 3.1, torch 2.11), is a
  version. A number after `>`, `<`, `>=` or `<=` is a bound a test asserts, not a measurement.
- Tables: in a Markdown table's body rows every other number is a figure, except in the columns that
  hold inputs (PARAMETER_COLUMNS: model, SNR, box, pixel size, particle count, the job's name).
- Prose: a number is a figure when it has a decimal point, a thousands separator, or a unit of
  measurement after it (MEASURE_UNITS; the members of a list or range, "0.93, 0.50, 1.00",
  "94-229 s", "9.06 to 8.57 A", take the unit of the last one; in a table cell only a range or a
  pair "a / b" does). A plain integer with no unit is a figure only as a count out of a total
  ("148 of its 1,331 blocks"); otherwise (a count of classes, iterations, cores; a year) it is not.
- Inputs are not figures: a number followed by an input's unit (INPUT_UNITS: px, A/px, kDa,
  particles, ...) or right after an input's name (INPUT_WORDS: SNR, seed, order, per, ...), and the
  method's settings in SETTINGS: each a phrase of the README that states an option's default or a
  rule taken from RELION, with what it is. Only those phrases, where they stand, are exempt.

A figure is sourced when a results file holds a value of its kind (its unit: A, deg, s, GB, %, ...;
from a JSON key such as `wall_s` or `fsc_truth_05_A`, a Markdown column header such as `wall s` or
`(A)`, or the unit written after the number) that rounds to it at the README's precision: README 4.34
matches 4.3412 or "4.34", README 439 matches 439.2; minutes and hours match seconds converted. A figure
with no unit matches a value with none (purity, iterations, counts). The value must be in a results
file that the figure's passage names (a paragraph, or a table and the paragraph that introduces it:
`benchmarks/results/blush.md`, `class2d.md`, `relion_peer.{md,png}`): a figure whose passage names
none is reported as such. Or a figure is sourced when it lies in a one-off
passage: a paragraph that starts with "One-off measurement (`COMMAND`):", naming in inline code the
command that measured it. A paragraph that starts "One-off measurement" without one is an error, and
its figures are checked as any others.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import sys
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent

# A number as the README writes it: 4.34, 2,000, 0.12 (its % is a unit).
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")

# Units of measurement, and the kind of value each is compared with (None: a count or a ratio).
MEASURE_UNITS = {
    "A^2": "A^2",
    "A": "A",
    "Å": "A",
    "deg": "deg",
    "s": "s",
    "min": "min",
    "minutes": "min",
    "hours": "hours",
    "GB": "GB",
    "MB": "MB",
    "GFLOP/s": "GFLOP/s",
    "%": "%",
    "points": None,
    "times": None,
    "M": None,
}
# Units and nouns after which a number is an input of the experiment, not a result.
INPUT_UNITS = ("px", "A/px", "Å/px", "kDa", "particles", "classes", "steps", "blocks", "cores", "core")
# Words right before a number that name an input (SNR 0.02, seed 1, HEALPix order 2, per 1,000).
INPUT_WORDS = ("SNR", "seed", "seeds", "order", "per", "issue")
# Program names whose number is a version.
VERSIONED = ("RELION", "torch", "CUDA", "Python", "pyworkflow", "STAR", "Debian")
# Columns of a README table that hold inputs (the header, lower case, exactly).
PARAMETER_COLUMNS = {"model", "snr", "box px", "a/px", "particles", "job", "task"}

# The method's settings stated with a unit or a decimal, as the README's phrase that states each.
SETTINGS = {
    "reached 15 A": "--blush-from-resolution, the Blush start",
    "started at 15 A": "--blush-from-resolution 15",
    "waiting for 15 A": "--blush-from-resolution 15",
    "0.001 of the weight": "the unregularised reconstruction's constant",
    "low-passed to 60 A": "class3d --ini-high",
    "the 60 A start": "class3d --ini-high",
    "low-passed to 40 A": "the refinement benchmarks' start map",
    "40 A start": "the refinement benchmarks' start map",
    "low-passed to 15 A": "postprocess's mask",
    "on 20-40 A maps": "RELION 5's first iterations",
    "resolution 3-15 A": "the denoisers' training range",
    "pixel size 1.5-3 A": "the 2D denoiser's training range",
    "voxel sizes from 1.5 to 3.0 A": "the denoiser's working range",
    "at 1.5-3 A voxels": "the denoiser's working range",
    "voxel size 1.5-3 A": "the denoiser's training range",
    "map at 1.5 A": "the denoiser benchmark's map",
    "is a 15 deg grid": "HEALPix order 2",
    '"7.5 deg" default': "RELION's default sampling",
    "gives 7.5 deg": "HEALPix order 3",
    "7.5 deg): around each": "--local-from-order's default",
    "(3.75 deg, the old default)": "HEALPix order 4",
    "capped at 3.75 deg": "HEALPix order 4",
    "goes on to 0.94 deg": "HEALPix order 6",
    "under 40% of the step": "RELION's auto-sampling rule",
    "falling by 3%": "RELION's auto-sampling rule",
    "under 75% of the": "RELION's auto-sampling rule",
    "fine step 75%": "RELION's offset rule",
    "at most 1.5 A": "RELION's offset rule",
    "0.999 fraction": "RELION's adaptive fraction",
    "adaptive fraction, 0.999": "RELION's adaptive fraction",
    "0.5% of the set growing to 10%": "RELION 4's VDAM schedule",
    "step 0.9 falling to 0.5": "RELION 4's VDAM schedule",
    "0.143/0.5 lines": "the FSC thresholds",
    "10% of the peak": "postprocess's mask threshold",
    "between 10 A and": "RELION's Guinier range",
    "every 25 A": "localres's window spacing",
    "falls under 0.8": "RELION's phase-randomisation onset",
    "at 0.143": "the FSC threshold",
    "FSC 0.5": "the FSC threshold",
    "FRC 0.5": "the FRC threshold",
    "truth (0.5)": "the FSC threshold",
    "an 18 GB address-space limit": "benchmarks/scaling.py --limit-gb 18",
    "18 GB limit": "benchmarks/scaling.py --limit-gb 18",
    "3.0 files": "the STAR format's version",
    "at 12 deg / 2 px oversampled once = our 6 deg / 1 px": "the 2D benchmark's sampling",
    "3 deg off": "the sampling test's start poses",
    "4 A Nyquist": "Nyquist of 2 A/px",
    "30 minutes for each RELION arm": "benchmarks/relion_peer.py's budget (1800 s)",
}

ONE_OFF = re.compile(r"One-off measurement \(`[^`]+`\):")
ONE_OFF_START = re.compile(r"One-off measurement\b")
JOIN = re.compile(r",\s|,?\sand\s|-|\sto\s|\s?/\s?|\sagainst\s|\svs\.?\s|\s->\s|,?\sor\s")
# In a table cell only ranges and pairs share a unit ("12.51 / 8.83 A"); "0.952, 11.85 A" is two values.
TABLE_JOIN = re.compile(r"\s?/\s?|-|\sto\s|\s->\s")
# A results file named in the README: benchmarks/results/NAME.md, `NAME.json`, NAME.{md,png}.
CITED = re.compile(r"([\w.-]+)\.(?:md|json|png|\{[a-z,]+\})(?!\w)")
HEADER_KINDS = (
    (r"gflop", "GFLOP/s"),
    (r"\bgb\b|_gb\b|_gb_per_rank\b", "GB"),
    (r"bfactor|\bb \(", "A^2"),
    (r"\(a\)|_a\b|angstrom|\bres\b|locres|resolution", "A"),
    (r"\bdeg\b|_deg\b|angular_step", "deg"),
    (r"\bs\b|_s\b|seconds|wall", "s"),
)


@dataclass(frozen=True)
class Figure:
    line: int
    text: str  # as the README writes it
    kind: str | None  # the unit's kind (MEASURE_UNITS), None for a count or a ratio
    context: str
    scope: tuple[str, ...] = ()  # the results files its passage names (their stems)

    def __str__(self) -> str:
        return f"{self.line}: {self.text}{' ' + self.kind if self.kind else ''}: {self.context}"


def header_kind(header: str) -> str | None:
    for pattern, kind in HEADER_KINDS:
        if re.search(pattern, header.lower()):
            return kind
    return None


def _blank(text: str, pattern: str, flags: int = 0, keep: str = "\n") -> str:
    """The text with every match of pattern blanked, its length and line breaks kept."""
    return re.sub(pattern, lambda m: "".join(c if c in keep else " " for c in m.group(0)), text, flags=flags)


def _mask(text: str) -> str:
    """Code, comments, link targets and flags blanked; the SETTINGS phrases' digits made '#'."""
    text = _blank(text, r"^\s*```.*?^\s*```[^\n]*$", re.S | re.M)
    text = _blank(text, r"<!--.*?-->", re.S)
    text = _blank(text, r"`[^`]*`")  # a span may run across lines
    text = _blank(text, r"\]\([^)]*\)")
    text = _blank(text, r"--[a-z][\w-]*(\s+[\d.,]+)?")
    for phrase in SETTINGS:
        pattern = r"\s+".join(re.escape(w) for w in phrase.split())
        text = re.sub(pattern, lambda m: re.sub(r"\d", "#", m.group(0)), text)
    return text


def _is_name_or_version(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    after2 = text[end + 1] if end + 1 < len(text) else " "
    if before.isalpha() or before in "_.^#" or after.isalpha() or after in "_^#":
        return True
    if after == "." and after2.isdigit():  # 3.1.3
        return True
    if after == "-" and after2.isalpha():  # 3-shell, 2-fold
        return True
    if before == "-" and start >= 2 and text[start - 2].isalpha():  # blush-0.1.0
        return True
    word = re.search(r"(\w+)\s+$", text[max(0, start - 40) : start])
    # RELION 3.1 is a version; RELION 20 min is a figure
    return bool(word and word.group(1) in VERSIONED and _unit_after(text, end) is None)


def _unit_after(text: str, end: int) -> tuple[str, str | None] | None:
    """('input', None) after an input's unit, ('measure', kind) after a measurement's, else None."""
    rest = text[end : end + 12]
    for unit in sorted(INPUT_UNITS + tuple(MEASURE_UNITS), key=len, reverse=True):
        if re.match(r"\s?" + re.escape(unit) + r"(?![\w/^])", rest):
            return ("input", None) if unit in INPUT_UNITS else ("measure", MEASURE_UNITS[unit])
    return None


def _excluded_before(text: str, start: int) -> bool:
    before = text[max(0, start - 30) : start]
    if re.search(r"(?:(?<![-=])[<>]=?|[≤≥])\s*$", before):  # a test's bound, not an arrow (->)
        return True
    word = re.search(r"(\w+)[\s(:]{1,3}$", before)
    return bool(word and word.group(1) in INPUT_WORDS)


def _lines(text: str) -> tuple[list[int], list[str]]:
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    return starts, text.split("\n")


def _one_off_lines(raw_lines: list[str]) -> tuple[set[int], list[Figure]]:
    """The lines (1-based) of the one-off passages, and the markers that name no command."""
    inside: set[int] = set()
    bad: list[Figure] = []
    current = False
    for i, line in enumerate(raw_lines, start=1):
        if not line.strip():
            current = False
        elif ONE_OFF_START.match(line.lstrip()):
            current = bool(ONE_OFF.match(line.lstrip()))
            if not current:
                bad.append(Figure(i, "one-off passage names no command", None, line.strip()))
        if current:
            inside.add(i)
    return inside, bad


def _tables(lines: list[str]) -> dict[int, list[str]]:
    """Each table line (1-based) with its header's cells (lower case); a header and a rule map to []."""
    out: dict[int, list[str]] = {}
    header: list[str] = []
    for i, line in enumerate(lines, start=1):
        if not line.lstrip().startswith("|"):
            header = []
            continue
        cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            out[i] = []
        elif i < len(lines) and re.match(r"\s*\|\s*:?-", lines[i]):
            header = cells
            out[i] = []
        else:
            out[i] = header
    return out


def _scopes(
    raw_lines: list[str], tables: dict[int, list[str]], stems: set[str]
) -> dict[int, tuple[str, ...]]:
    """For each line (1-based), the results files its passage names; a table without one takes its
    introduction's (the passage before it)."""
    scopes: dict[int, tuple[str, ...]] = {}
    block: list[int] = []
    previous: tuple[str, ...] = ()
    for i in range(1, len(raw_lines) + 2):
        line = raw_lines[i - 1] if i <= len(raw_lines) else ""
        ends = not line.strip() or (block and (i in tables) != (block[-1] in tables))
        if ends and block:
            text = " ".join(raw_lines[j - 1] for j in block)
            named = tuple(sorted({m.group(1) for m in CITED.finditer(text)} & stems))
            if not named and block[0] in tables:
                named = previous
            for j in block:
                scopes[j] = named
            previous = named
            block = []
        if line.strip():
            block.append(i)
    return scopes


def readme_figures(text: str, stems: set[str] | None = None) -> tuple[list[Figure], list[Figure]]:
    """Every figure the README quotes outside one-off passages, and the one-off markers without a command.
    stems: the results files (names without suffix) a passage may name to narrow where its figures
    are looked for."""
    raw_lines = text.split("\n")
    masked = _mask(text)
    starts, lines = _lines(masked)
    one_off, bad = _one_off_lines(raw_lines)
    tables = _tables(lines)
    scopes = _scopes(raw_lines, tables, stems or set())
    tokens = [m for m in NUMBER.finditer(masked) if not _is_name_or_version(masked, m.start(), m.end())]
    where = [bisect.bisect_right(starts, m.start()) for m in tokens]
    units = [_unit_after(masked, m.end()) for m in tokens]
    for i in range(len(tokens) - 2, -1, -1):  # in prose a list's members take the unit of its last one
        between = masked[tokens[i].end() : tokens[i + 1].start()]
        joined = JOIN.fullmatch(between) if where[i] not in tables else TABLE_JOIN.fullmatch(between)
        if units[i] is None and joined:
            units[i] = units[i + 1]
    figures = []
    for m, line, unit in zip(tokens, where, units):
        if line in one_off or (unit and unit[0] == "input") or _excluded_before(masked, m.start()):
            continue
        kind = unit[1] if unit else None
        if line in tables:
            header = tables[line]
            col = masked[starts[line - 1] : m.start()].count("|") - 1
            name = header[col] if 0 <= col < len(header) else ""
            if not header or name in PARAMETER_COLUMNS:
                continue
            kind = kind if unit else header_kind(name)
        elif (
            unit is None
            and "." not in m.group(0)
            and "," not in m.group(0)
            and not re.match(r"\s+of\s+(?:its\s+|the\s+)?\d", masked[m.end() : m.end() + 12])
        ):
            continue  # a plain integer is a figure only as a count out of a total: 148 of 1,331
        figures.append(Figure(line, m.group(0), kind, raw_lines[line - 1].strip(), scopes.get(line, ())))
    return figures, bad


Values = dict[str, dict[Optional[str], set[Decimal]]]  # results file stem -> kind -> values


def _add(found: dict[str | None, set[Decimal]], kind: str | None, text: str) -> None:
    found.setdefault(kind, set()).add(Decimal(text.replace(",", "")))


def _text_values(found: dict[str | None, set[Decimal]], text: str, kind: str | None) -> None:
    """Numbers in a results file's text, each of the unit written after it, else of `kind`."""
    for m in NUMBER.finditer(text):
        unit = _unit_after(text, m.end())
        _add(found, unit[1] if unit and unit[0] == "measure" else kind, m.group(0))


def _json_values(found: dict[str | None, set[Decimal]], obj: object, kind: str | None) -> None:
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        _add(found, kind, repr(obj))
    elif isinstance(obj, str):
        _text_values(found, obj, kind)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _json_values(found, value, header_kind(str(key)))
    elif isinstance(obj, list):
        for value in obj:
            _json_values(found, value, kind)


def _markdown_values(found: dict[str | None, set[Decimal]], text: str) -> None:
    header: list[str] = []
    for line in text.split("\n"):
        if not line.lstrip().startswith("|"):
            header = []
            _text_values(found, line, None)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        if not header:
            header = cells
            continue
        for col, cell in enumerate(cells):
            _text_values(found, cell, header_kind(header[col]) if col < len(header) else None)


def results_values(results: Path) -> Values:
    """Every number in each results file, by kind: JSON values and strings, Markdown tables and text."""
    out: Values = {}
    for path in sorted(results.glob("*.json")) + sorted(results.glob("*.md")):
        found = out.setdefault(path.stem, {})
        if path.suffix == ".json":
            _json_values(found, json.loads(path.read_text()), None)
        else:
            _markdown_values(found, path.read_text())
    for found in out.values():
        seconds = found.get("s", set())
        found.setdefault("min", set()).update(v / 60 for v in seconds)
        found.setdefault("hours", set()).update(v / 3600 for v in seconds)
    return out


def sourced(figure: Figure, values: Values) -> bool:
    """A value of the figure's kind, in the results files its passage names, that rounds to it at the
    README's precision."""
    text = figure.text.replace(",", "")
    target = Decimal(text)
    places = len(text.split(".")[1]) if "." in text else 0
    half = Decimal(5) / Decimal(10) ** (places + 1)
    files = figure.scope
    return any(abs(v - target) <= half for f in files for v in values.get(f, {}).get(figure.kind, ()))


def check(readme: Path, results: Path) -> tuple[int, list[Figure]]:
    """How many figures the README quotes, and those without a source (with bad one-off markers)."""
    values = results_values(results)
    figures, problems = readme_figures(readme.read_text(), set(values))
    for f in figures:
        if not f.scope:
            problems.append(replace(f, context="its passage names no results file: " + f.context))
        elif not sourced(f, values):
            problems.append(f)
    return len(figures), sorted(problems, key=lambda p: p.line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("readme", nargs="?", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--list", action="store_true", help="print every figure found, sourced or not")
    args = parser.parse_args(argv)
    if args.list:
        stems = set(results_values(args.results))
        for f in readme_figures(args.readme.read_text(), stems)[0]:
            print(f"{f.line}: {f.text} {f.kind or ''} {','.join(f.scope)}")
    n, problems = check(args.readme, args.results)
    for p in problems:
        print(f"{args.readme.name}:{p}")
    print(f"{args.readme.name}: {n} figures, {len(problems)} without a source", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
