"""One declaration per engine setting: its default, its help, its unit and the kind of value it
takes, in the settings dataclass itself; the command line (cli/options.add_settings) and the
Scipion forms read them from there instead of repeating them."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(
    default: Any,
    help: str,
    *,
    kind: str,
    unit: str | None = None,
    flag: str | None = None,
    group: str | None = None,
    choices: dict[str, Any] | None = None,
) -> Any:
    """A dataclass field with its command-line description.

    kind: positive, non_negative, count, order, int, float, str, flag (a switch: it sets the
    field to the opposite of its default) or choice (one of the words of `choices`, which maps
    each word to the field's value). flag: the option's name where it is not the field's name
    with dashes. group: the heading it is listed under in --help. help may place the default
    itself with `%(default)s` (a choice's default is its word); otherwise it follows the help as
    `(default, unit)`."""
    if kind == "choice" and (not choices or default not in choices.values()):
        raise ValueError(f"option {help!r}: a choice needs words for its values, its default among them")
    return field(
        default=default,
        metadata={"help": help, "kind": kind, "unit": unit, "flag": flag, "group": group, "choices": choices},
    )


def option_flag(f: Any) -> str:
    """The command-line flag of a settings field (a dataclasses.Field) declared with option(): its
    `flag`, else its name with dashes (`--offset-step`)."""
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def choice_word(f: Any, value: Any) -> Any:
    """A choice option's word for `value` (the command line takes words); any other value as is."""
    choices = f.metadata.get("choices")
    return next(word for word, v in choices.items() if v == value) if choices else value


def default_note(default: Any, unit: str | None) -> str:
    """` (default, unit)`: how a help text ends where it does not place %(default)s itself."""
    unit_text = f", {unit}" if unit else ""
    return f" ({default:g}{unit_text})" if isinstance(default, float) else f" ({default}{unit_text})"
