"""One declaration per engine setting: its default, its help, its unit and the kind of value it
takes, in the settings dataclass itself; the command line (cli/options.add_settings) and the
Scipion forms read them from there instead of repeating them."""

from __future__ import annotations

from dataclasses import field


def option(default, help: str, *, kind: str, unit: str | None = None, flag: str | None = None):
    """A dataclass field with its command-line description. kind: positive, non_negative, count,
    order, int, float, str or flag (a switch); flag: the option's name where it is not the field's
    name with dashes."""
    return field(default=default, metadata={"help": help, "kind": kind, "unit": unit, "flag": flag})
