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
