"""Types of numeric options: a value that cannot be right is refused by the parser in one line
naming the option (`argument --offset-step: must be a number > 0, not '0'`), before any work."""

from __future__ import annotations

import argparse
import math


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


KINDS = {
    "positive": positive,
    "non_negative": non_negative,
    "count": count,
    "order": order,
    "int": int,
    "float": float,
    "str": str,
}


def add_settings(parser, settings_class, *, group: str | None = None) -> None:
    """The command-line flags of a settings dataclass whose fields are declared with
    engine.option.option (flag, kind, help and unit stated once, there): each becomes `--flag`
    (a store_true for kind "flag"), its default and unit written into its help."""
    from dataclasses import MISSING, fields

    target = parser.add_argument_group(group) if group else parser
    for f in fields(settings_class):
        meta = f.metadata
        if "help" not in meta:
            continue
        flag = "--" + (meta.get("flag") or f.name.replace("_", "-"))
        default = None if f.default is MISSING else f.default
        if meta["kind"] == "flag":
            target.add_argument(flag, dest=f.name, action="store_true", help=meta["help"])
            continue
        unit = f", {meta['unit']}" if meta.get("unit") else ""
        shown = (
            ""
            if default is None
            else f" ({default:g}{unit})"
            if isinstance(default, float)
            else f" ({default}{unit})"
        )
        target.add_argument(
            flag,
            dest=f.name,
            type=KINDS[meta["kind"]],
            default=default,
            metavar=flag[2:].upper().replace("-", "_"),
            help=(meta["help"] + shown).replace("%", "%%"),
        )


def settings_from(settings_class, args, **overrides):
    """The settings dataclass from parsed arguments (fields without a flag keep their default)."""
    from dataclasses import fields

    given = {f.name: getattr(args, f.name) for f in fields(settings_class) if hasattr(args, f.name)}
    return settings_class(**{**given, **overrides})
