"""Types of numeric options: a value that cannot be right is refused by the parser in one line
naming the option (`argument --offset-step: must be a number > 0, not '0'`), before any work."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from ..option import choice_word, default_note, option_flag


def _number(text: str, kind, test, words: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {words}, not {text!r}") from None
    if not (math.isfinite(value) and test(value)):
        raise argparse.ArgumentTypeError(f"must be {words}, not {text!r}")
    return value


def positive(text: str) -> float:
    """A finite number > 0: sizes, steps, resolutions, pixel sizes."""
    return _number(text, float, lambda v: v > 0, "a number > 0")


def non_negative(text: str) -> float:
    """A finite number >= 0: ranges, B-factors."""
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def count(text: str) -> int:
    """An integer >= 1: iterations, particles, classes, batches."""
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


def order(text: str) -> int:
    """An integer >= 0: HEALPix orders."""
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


KINDS: dict[str, Callable[[str], Any] | None] = {
    "positive": positive,
    "non_negative": non_negative,
    "count": count,
    "order": order,
    "int": int,
    "float": float,
    "str": None,  # as given: argparse's own
}


def add_run_flags(parser) -> None:
    """--continue and --overwrite of an iterative run, whose folder run_folder.py holds."""
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="resume from the last finished iteration (refused where the folder holds another run)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="clear another run's outputs from --out first"
    )


def add_settings(parser, settings_class, *, group: str | None = None) -> dict:
    """The command-line flags of a settings dataclass whose fields are declared with
    engine.option.option (flag, kind, help, unit and group stated once, there): each becomes
    `--flag`, under its group's heading (`group` where the field names none), its default and unit
    written into its help. A kind "flag" field is a switch to the opposite of its default, a
    "choice" takes one of its words. Returns the argument groups by name, for a hand-written
    flag to join one."""
    from dataclasses import MISSING, fields

    groups: dict = {}
    for f in fields(settings_class):
        meta = f.metadata
        if "help" not in meta:
            continue
        name = meta.get("group") or group
        if name and name not in groups:
            groups[name] = parser.add_argument_group(name)
        target = groups[name] if name else parser
        flag = option_flag(f)
        default = None if f.default is MISSING else choice_word(f, f.default)
        kind, choices = meta["kind"], meta.get("choices")
        help = meta["help"].replace("%", "%%").replace("%%(default)s", "%(default)s")
        if "%(default)s" not in help and default is not None and kind != "flag":
            help += default_note(default, meta.get("unit"))
        if kind == "flag":
            action = "store_false" if default else "store_true"
            target.add_argument(flag, dest=f.name, action=action, help=help)
        elif choices:  # kind "choice"
            target.add_argument(flag, dest=f.name, choices=list(choices), default=default, help=help)
        else:
            target.add_argument(
                flag,
                dest=f.name,
                type=KINDS[kind],
                default=default,
                metavar=flag[2:].upper().replace("-", "_"),
                help=help,
            )
    return groups


def settings_from(settings_class, args, **overrides):
    """The settings dataclass from parsed arguments (fields without a flag keep their default; a
    choice's word becomes its value)."""
    from dataclasses import fields

    given = {}
    for f in fields(settings_class):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            choices = f.metadata.get("choices")
            given[f.name] = choices[value] if choices else value
    return settings_class(**{**given, **overrides})
