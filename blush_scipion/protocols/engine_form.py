"""Form parameters that mirror a setting of the engine: the default and the help come from the
settings dataclass's option() declaration (engine/option.py), and the engine's flags are written from
the same declarations, so the form and `blush <command> --help` cannot drift apart. The protocol keeps
what is Scipion's own: the parameter's name (projects store it), label, condition, expert level."""

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from pyworkflow.protocol import params

from ..engine.option import choice_word, default_note, option_flag

# the form's parameter class for each kind of option (a protocol may ask for another, e.g. a FileParam)
PARAM_CLASSES = {
    "positive": params.FloatParam,
    "non_negative": params.FloatParam,
    "float": params.FloatParam,
    "count": params.IntParam,
    "order": params.IntParam,
    "int": params.IntParam,
    "str": params.StringParam,
    "flag": params.BooleanParam,
}


UNITS = {"A": "Å"}  # the command line's ASCII spelling, as the forms write it


def _same(value):
    return value


@dataclass(frozen=True)
class Conversion:
    """How a form value stands for the engine's (`to_engine`), and back (`to_form`, for the default)."""

    to_engine: Callable[[Any], Any]
    to_form: Callable[[Any], Any]


SAME = Conversion(_same, _same)
# a number the engine leaves unset (None: its own choice, e.g. 90% of the box) is -1 in the form
UNSET_IS_MINUS_ONE = Conversion(lambda v: v if v > 0 else None, lambda v: -1 if v is None else v)
# a resolution the engine leaves unset where the form holds a negative number (0 stays 0)
NEGATIVE_IS_UNSET = Conversion(lambda v: v if v >= 0 else None, lambda v: -1 if v is None else v)
# an optional file: empty in the form
UNSET_IS_EMPTY = Conversion(lambda v: v or None, lambda v: v or "")
# a "Skip ...?" question for a setting that is on by default
NEGATED = Conversion(lambda v: not v, lambda v: not v)
# an EnumParam over HEALPix orders from 1 (protocol_refine3d.SAMPLINGS)
ORDER_FROM_ONE = Conversion(lambda i: i + 1, lambda order: order - 1)


@dataclass(frozen=True)
class Mirror:
    """A form parameter standing for one field of the engine's settings."""

    field: Any  # dataclasses.Field, declared with engine.option.option
    conversion: Conversion = SAME

    def engine_args(self, value) -> list:
        """The engine's flag (and value) for the form's value: a switch only where it differs from the
        engine's default, a choice by its word, nothing for an unset value."""
        value = self.conversion.to_engine(value)
        meta = self.field.metadata
        if meta["kind"] == "flag":
            return [option_flag(self.field)] if value != self.field.default else []
        if value is None:
            return []
        return [option_flag(self.field), choice_word(self.field, value)]


def settings_field(settings_class, name: str):
    """The dataclass field `name` of an engine settings class, which must carry option() metadata."""
    found = {f.name: f for f in fields(settings_class)}
    if name not in found or "help" not in found[name].metadata:
        raise ValueError(f"{settings_class.__name__}.{name} is not an option of the engine")
    return found[name]


def setting_help(f, note: str = "") -> str:
    """The option's help as the form shows it: its flag, its help with the default placed as the
    command line places it (engine/cli/options.add_settings), then the form's own note."""
    meta, default = f.metadata, choice_word(f, f.default)
    text = meta["help"]
    if "%(default)s" in text:
        text = text.replace("%(default)s", str(default))
    elif default is not None and meta["kind"] != "flag":
        text += default_note(default, UNITS.get(meta["unit"], meta["unit"]) if meta.get("unit") else None)
    text = f"{option_flag(f)} of the engine: {text}."  # the name to look up in `blush <command> --help`
    return f"{text} {note}" if note else text


class EngineForm:
    """Mixin for protocols whose form mirrors an engine settings dataclass, `_settings`."""

    _settings: type  # e.g. engine.refine3d.RefineSettings

    def _addSetting(
        self,
        form,
        name: str,
        field: str,
        *,
        label: str,
        note: str = "",
        conversion: Conversion = SAME,
        paramClass=None,
        **kwargs,
    ):
        """Form parameter `name` for the engine setting `field`. `default=` in kwargs only where the form
        means to differ from the engine (tests list those); `note`: what the form adds to the help."""
        f = settings_field(self._settings, field)
        kwargs.setdefault("default", conversion.to_form(f.default))
        form.addParam(
            name,
            paramClass or PARAM_CLASSES[f.metadata["kind"]],
            label=label,
            help=setting_help(f, note),
            **kwargs,
        )
        if "_mirrors" not in vars(self):
            self._mirrors = {}
        self._mirrors[name] = Mirror(f, conversion)

    def _settingArgs(self) -> list:
        """The engine's flags for the mirrored parameters, in the form's order; a parameter the form
        hides (its condition false, e.g. Blush's options without Blush) is not passed."""
        args = []
        for name, mirror in self._mirrors.items():
            if self._definition.evalParamCondition(name):
                args += mirror.engine_args(getattr(self, name).get())
        return args
