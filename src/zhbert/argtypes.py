"""argparse ``type=`` callables for the commands' numeric options: one home for the ranges.

Python's ``int``/``float`` take ``nan``, ``inf``, ``-1`` and ``1e400``; passed on, such a
value became a traceback deep in a command (an OverflowError in the curve laws), a loop
without end (``--n-boot 1e20``) or a quiet nonsense ("inf USD"). Each option here names its
range once, and argparse turns a value outside it into its one-line error with exit 2
(``cli._Parser``), before the command writes anything.

Imports nothing heavy: every command's parser is built from these before it runs.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

SEED_LIMIT = 2 ** 32


def _bounds_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str | None:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return None


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], float]:
    """A finite float in the range given (``low_open``: ``low`` itself refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        inside = math.isfinite(value)
        if inside and low is not None:
            inside = value > low if low_open else value >= low
        if inside and high is not None:
            inside = value < high if high_open else value <= high
        if not inside:
            bounds = _bounds_text(low, high, low_open, high_open)
            raise argparse.ArgumentTypeError(f"{text} is not a finite number" if bounds is None
                                             else f"{text} is not a number {bounds}")
        return value
    parse.__name__ = "number"  # argparse names the type in "invalid number value"
    return parse


def count(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]; "1e5" and "100_000" read as 100000, "1.5" is refused."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
            if not (math.isfinite(as_float) and as_float.is_integer()):
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
            value = int(as_float)
        if value < low or (high is not None and value > high):
            where = f"in [{low:,}, {high:,}]" if high is not None else f">= {low:,}"
            raise argparse.ArgumentTypeError(f"{text} is not a whole number {where}")
        return value
    parse.__name__ = "count"
    return parse


# a --seed option: numpy's SeedSequence takes no negative seed, Optuna's samplers none of
# 2^32 or more (train.seed, for torch and numpy only, is [0, 2^64): config.validate)
seed = count(0, SEED_LIMIT - 1)


def cores(text: str) -> int:
    """A count of threads or processes: at least 1, at most the cores this process may run
    on (more only wait on each other; 10^6 asked for a million threads or processes)."""
    from zhbert.threads import available_cores
    value, most = count(1)(text), available_cores()
    if value > most:
        raise argparse.ArgumentTypeError(f"{text} is more than the {most} core{'s' * (most != 1)} "
                                         "this process may run on (its CPU affinity)")
    return value


def out_path(text: str) -> str:
    """An --out: '' is no path (Path('') is ".", the current directory, or the option's
    default taken without a word)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("'' names no folder; give a path")
    return text


# Shared ranges, named once: a probability or share; a fraction of a split; a bootstrap.
probability = number(0.0, 1.0)
positive = number(0.0, low_open=True)
non_negative = number(0.0)
# A run's speed and price, given to cost a plan: bounded well past any real machine so that a
# slip (1e300) is refused, not printed as a 300-digit token count and "inf USD". The largest
# published batches are ~16M tokens a step; a day a step and a million USD an hour are no setup.
tokens_per_step = number(0.0, 1e9, low_open=True)
seconds_per_step = number(0.0, 86_400.0, low_open=True)
price_per_hour = number(0.0, 1e6, low_open=True)
# --n-boot: 0 takes the delta method instead of refits; 10^5 refits bound a bootstrap where
# 10^20 never ended (a refit of tests/data/tiny-2000 took ~9 ms in predict and ~74 ms in
# analyze on an EPYC family 26 model 2: 10^5 is ~15 minutes and ~2 hours); default 200
# 1..MIN_BOOT-1 are refused: a percentile "interval" of one refit is that refit twice and
# excluded its own point ("80%: 42.4-42.4%" for a forecast of 41.9%); the 2.5th and 97.5th
# percentiles need some 20 refits to be two draws apart
MIN_BOOT = 20
_boot_range = count(0, 100_000)


def boot_count(text: str) -> int:
    """--n-boot: 0 (the delta method) or MIN_BOOT..10^5 bootstrap refits."""
    value = _boot_range(text)
    if 0 < value < MIN_BOOT:
        raise argparse.ArgumentTypeError(
            f"{text} is too few: percentile intervals need at least {MIN_BOOT} refits "
            "(0 takes no refits: the laws' delta-method intervals instead, and none for the "
            "schedule-free curves)")
    return value
