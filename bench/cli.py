"""argparse types for the benchmarks' numeric flags: a bad value is a one-line usage error.

``type=float`` alone lets ``-5``, ``nan`` and ``inf`` through, and a list
parsed after argparse (``--arrivals abc``) ends in a traceback; these types
refuse each with the flag's name, before anything starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    return _checked_int(text, minimum=1)


def non_negative_int(text: str) -> int:
    return _checked_int(text, minimum=0)


def positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def positive_floats(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers above 0, at least one."""
    values = tuple(positive_float(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("want at least one number, comma-separated")
    return values


def positive_ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers of at least 1, at least one."""
    values = tuple(positive_int(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("want at least one whole number, comma-separated")
    return values


def choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated subset of ``allowed`` (at least one), in the order given."""

    def parse(text: str) -> tuple[str, ...]:
        keys = tuple(key.strip() for key in text.split(",") if key.strip())
        unknown = [key for key in keys if key not in allowed]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(
                f"want a comma-separated subset of {','.join(allowed)}, got {text!r}"
            )
        return keys

    return parse


def _checked_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value
