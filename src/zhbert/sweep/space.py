"""The search space: a TOML file over any key that `zhbert train --set` accepts.

    [train]
    steps = 300                          # a plain value: fixed for every trial
    [train.lr]
    low = 1e-4                           # a range (float or int, from the key's type)
    high = 3e-3
    log = true                           # optional: sample on a log scale
    [train.warmup_steps]
    low = 0
    high = 200
    step = 20                            # optional: a grid step
    [train.batch_size]
    choices = [32, 64]                   # categorical

Every key and every value a trial can take (each range's ends, each choice, every
fixed value) goes through config.py's own `load_config`, the one validation
`--set` uses, so an unknown key or a value the trainer refuses fails here, with the
line of the space file and the fix, before any trial starts; like `--set`, every
problem of the file is told at once.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, NoReturn

from zhbert.config import SECTIONS, ConfigError, closest, line_of, load_config, tomllib
from zhbert.errors import UserError

RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Param:
    """One searched key: a float/int range or a categorical."""
    name: str                       # section.key
    kind: str                       # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def distribution(self):
        from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                          IntDistribution)
        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log,
                                   step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def tidy(self, value: Any) -> Any:
        """A value of this param as the space file writes its grid: a float range's step
        grid to the decimals of its low and step (Optuna hands out low + k * step, and
        0.1 * 3 is 0.30000000000000004, which reached the trial's config and its log line)."""
        if self.kind != "float" or self.step is None or not isinstance(value, float):
            return value
        return round(value, max(_decimals(self.step), _decimals(self.low)))

    def to_json(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"kind": self.kind, "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}


@dataclass(frozen=True)
class Space:
    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def distributions(self) -> dict[str, Any]:
        return {name: p.distribution() for name, p in self.params.items()}

    def overrides(self, values: dict[str, Any], exact: Iterable[str] = ()) -> list[str]:
        """`--set` items for a trial: the fixed values, then the sampled ones (tidied, but
        for the keys in ``exact``)."""
        tidied = {**self.tidy(values), **{k: values[k] for k in exact if k in values}}
        return [f"{k}={format_value(v)}" for k, v in {**self.fixed, **tidied}.items()]

    def tidy(self, values: dict[str, Any]) -> dict[str, Any]:
        """A trial's sampled values as the trial gets them (``Param.tidy``); the one way a
        value leaves the space: its config, its log line, the report."""
        return {k: self.params[k].tidy(v) if k in self.params else v for k, v in values.items()}

    def to_json(self) -> dict[str, Any]:
        return {"params": {k: p.to_json() for k, p in self.params.items()}, "fixed": self.fixed}

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Space":
        params = {}
        for name, p in d["params"].items():
            p = dict(p)
            p["choices"] = tuple(p.get("choices", ()))
            params[name] = Param(name=name, **p)
        return cls(params, dict(d.get("fixed", {})))


def _decimals(x: float | None) -> int:
    """The decimals a number is written with (0.05: 2, 1e-4: 4, 20.0: 0), from its shortest
    repr, which is how the space file gave it."""
    from decimal import Decimal
    if x is None or not math.isfinite(x):
        return 0
    return max(0, -int(Decimal(repr(float(x))).normalize().as_tuple().exponent))


def format_value(v: Any) -> str:
    """A value as `--set` text that coerces back to the same value (repr keeps floats exact)."""
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, float) else str(v)


def _kind_of(name: str) -> type | None:
    section, _, key = name.partition(".")
    cls = SECTIONS.get(section)
    known = {f.name: f for f in fields(cls)} if cls else {}
    return type(known[key].default) if key in known else None


def _parse_param(name: str, spec: dict[str, Any]) -> Param:
    """One table of the space file -> a Param; _Bad for the first problem in it."""
    kind = _kind_of(name)
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        if extra:
            _bad(f"a categorical takes only choices = [...], not {', '.join(sorted(extra))}")
        choices = spec["choices"]
        if isinstance(choices, list) and len(choices) >= 2 and (
                twice := _repeated([format_value(c) for c in choices])):
            # 64 and "64" are the same --set value: one trial drawn twice as often
            _bad(f"choices repeat {twice} (as --set reads them): list each value once")
        if not isinstance(choices, list) or len(set(map(repr, choices))) < 2:
            _bad("a categorical needs at least two different choices, e.g. choices = [32, 64]; "
                 f"for one value write it as a fixed value: {name.partition('.')[2]} = VALUE "
                 f"under [{name.partition('.')[0]}]")
        return Param(name, "categorical", choices=tuple(choices))
    unknown = set(spec) - RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        _bad(f"a range takes low, high and optionally log, step (got {', '.join(sorted(spec))}); "
             "a categorical takes choices = [...]")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        _bad(f"low and high must be numbers (got {low!r}, {high!r})")
    if kind in (bool, str):
        _bad(f"{name} is a {kind.__name__}: search it with choices = [...], not a range")
    if low > high:
        _bad(f"low ({low}) > high ({high}): swap them")
    if low == high:
        _bad(f"empty range (low = high = {low}): widen it, or fix the value with "
             f"{name.partition('.')[2]} = {low} under [{name.partition('.')[0]}]")
    log = spec.get("log", False)
    if not isinstance(log, bool):  # bool("false") is True
        _bad(f"log must be true or false, unquoted (got {log!r})")
    if log and low <= 0:
        _bad(f"log = true needs low > 0 (got {low}): raise low or drop log")
    step = spec.get("step")
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool)):
        _bad(f"step must be a number (got {step!r})")
    if step is not None and (log or not step > 0):
        _bad("step must be > 0 and cannot be combined with log = true")
    is_int = kind is int
    if is_int and not all(float(v).is_integer() for v in (low, high, step or 1)):
        _bad(f"{name} is an integer: give whole numbers for low, high and step")
    if step is not None:
        _check_step(low, high, step)
    cast = int if is_int else float
    return Param(name, "int" if is_int else "float", cast(low), cast(high), log,
                 None if step is None else cast(step))


def _repeated(items: list[str]) -> str | None:
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _check_step(low: float, high: float, step: float) -> None:
    """A grid Optuna would silently shrink: a step past the range leaves only ``low`` (Optuna
    warns for floats, says nothing for ints), a range not a multiple of it loses its top."""
    from decimal import Decimal
    span, d = Decimal(str(high)) - Decimal(str(low)), Decimal(str(step))
    if d > span:
        _bad(f"step ({step}) is larger than the range {low} to {high}: every trial would take "
             f"low = {low}; make step at most {span} or widen the range")
    if span % d:
        top = Decimal(str(low)) + (span // d) * d
        _bad(f"the range {low} to {high} is not a multiple of step ({step}): trials would never "
             f"reach {high}; set high = {top} or pick a step that divides {span}")


MAX_GRID = 64       # an int range with more values is checked at its ends only
MAX_COMBOS = 4096   # all params' values together, each one load_config (~0.15 ms)


def _reachable(p: Param) -> list[Any]:
    """The values a trial can take, where they are few (a float range: its ends)."""
    if p.kind == "categorical":
        return list(p.choices)
    if p.kind == "int":
        step = int(p.step or 1)
        if (int(p.high) - int(p.low)) // step < MAX_GRID:
            return list(range(int(p.low), int(p.high) + 1, step))
    return [p.low, p.high]


def _refused(base: str, items: list[str], seen: dict | None = None) -> str | None:
    """Why load_config (the `--set` check, with its cross-key rules) refuses ``items``.
    ``seen``: the answers so far, by the set of items (each key is set once, so their order
    does not matter): every param's check and the check together resolve the same full
    combinations, each one load_config; near MAX_COMBOS they were resolved once per param
    and once more together (16,385 calls, 4.5 s for three params of 16 values)."""
    key = (base, frozenset(items))
    if seen is not None and key in seen:
        return seen[key]
    try:
        load_config(base, items)
        why = None
    except UserError as exc:
        why = _flat(exc)
    if seen is not None:
        seen[key] = why
    return why


def _check_fixed(space: Space, base: str, text: str) -> list[str]:
    """The fixed values, each named with its line (together only if each passes alone)."""
    fixed = space.overrides({})
    if (together := _refused(base, fixed)) is None:
        return []
    alone = [_problem(text, name, f"{name} = {value!r}", why)
             for (name, value), item in zip(space.fixed.items(), fixed)
             if (why := _refused(base, [item]))]
    return alone or [f"the fixed values together: {together}"]


def _contexts(space: Space, name: str) -> list[list[str]]:
    """The other params' values in every combination, as --set items (few enough; else one
    empty context: the base config's values stand for them)."""
    import itertools
    others = [[f"{n}={format_value(v)}" for v in _reachable(p)] for n, p in space.params.items()
              if n != name]
    if not others or math.prod(map(len, others)) * len(_reachable(space.params[name])) > MAX_COMBOS:
        return [[]]
    return [list(c) for c in itertools.product(*others)]


def _check_param(name: str, p: Param, base: str, fixed: list[str], text: str,
                 contexts: list[list[str]], seen: dict) -> str | None:
    """Every value of ``p`` a trial can reach, with the fixed values: the ends of a range
    may pass while values between them fail (num_heads 3 of 2..8 with hidden_size 32). A
    value is refused where no combination of the other params' values takes it (hidden_size
    searched beside num_heads: checked against the base's hidden_size, 3 and 6 heads were
    refused where 48 and 96 took them; a review)."""
    values = _reachable(p)
    refused: dict[str, list[Any]] = {}
    for value in values:
        item = f"{name}={format_value(value)}"
        whys = [_refused(base, fixed + ctx + [item], seen) for ctx in contexts]
        if all(whys):
            refused.setdefault(whys[0], []).append(value)
    if not refused:
        return None
    why, bad = next(iter(refused.items()))  # one problem per table: the others mostly repeat it
    if len(bad) == 1 and (p.kind != "int" or bad[0] in (p.low, p.high)):
        return _problem(text, name, f"{name} = {bad[0]!r}", why)
    good = [v for v in values if not any(v in b for b in refused.values())]
    fix = f"; search only the others: choices = {good}" if len(good) >= 2 else ""
    return _problem(text, name, f"{name}: {', '.join(map(repr, bad))} of the values trials would "
                    f"take are refused", why) + fix


def _check_together(space: Space, base: str, fixed: list[str], seen: dict) -> str | None:
    """The params' values in every combination (few enough): two keys valid alone may not
    be together (hidden_size and num_heads both searched)."""
    import itertools
    grids = [[(n, v) for v in _reachable(p)] for n, p in space.params.items()]
    if len(grids) < 2 or math.prod(map(len, grids)) > MAX_COMBOS:
        return None
    for combo in itertools.product(*grids):
        if why := _refused(base, fixed + [f"{n}={format_value(v)}" for n, v in combo], seen):
            values = ", ".join(f"{n} = {v!r}" for n, v in combo)
            return (f"these values trials would take are refused together ({values}): {why}; "
                    "narrow the ranges or choices so that every combination is valid")
    return None


def _check_with_config(space: Space, base: str, text: str) -> list[str]:
    """The fixed values, every reachable value of each param and (where few) their
    combinations through load_config, so no trial is spent on a config train refuses."""
    problems = _check_fixed(space, base, text)
    if problems:
        return problems  # every probe below would repeat it
    fixed, seen = space.overrides({}), {}  # seen: each combination resolved once (_refused)
    problems = [m for n, p in space.params.items()
                if (m := _check_param(n, p, base, fixed, text, _contexts(space, n), seen))]
    return problems or [m for m in [_check_together(space, base, fixed, seen)] if m]


WARMUP = "train.warmup_steps"  # the lr warm-up (config.py has no warm-up fraction)


def warmup_warning(space: Space, base_warmup: int, steps: int, steps_from: str = "--steps") -> str | None:
    """Where trials can draw (or are fixed to) an lr warm-up of ``steps`` or more: their lr
    never leaves it, and such trials end alike (three of a sweep over warmup_steps 0..200 at
    --steps 60 ended at the same value; the only word was each trial's train.log). A
    warning, not a refusal; None where every trial leaves its warm-up."""
    p = space.params.get(WARMUP)
    what = f"{steps_from} {steps}: {{}} never leave the lr warm-up; {{}} or raise {steps_from}"
    if p is None:
        value, whose = (space.fixed[WARMUP], "the space's") if WARMUP in space.fixed else (
            base_warmup, "the base config's")
        if _number(value) is None or _number(value) < steps:
            return None
        return f"{WARMUP} = {value} ({whose}) >= " + what.format("all trials", "lower it")
    values = [v for v in map(_number, p.choices if p.kind == "categorical" else (p.low, p.high))
              if v is not None]
    if not values or max(values) < steps:
        return None
    shown = (f"choices {list(p.choices)}" if p.kind == "categorical" else f"{p.low:g} to {p.high:g}")
    if min(values) >= steps:
        return f"{WARMUP} ({shown}) is all >= " + what.format("all trials", "lower the range")
    fix = "drop the choices" if p.kind == "categorical" else "lower its high"
    return (f"{WARMUP} ({shown}) reaches {max(values):g} >= "
            + what.format(f"trials drawing {steps} or more", f"{fix} below {steps}"))


def _number(v: Any) -> float | None:
    try:
        return None if isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def _flat(exc: UserError) -> str:
    return "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)


class _Bad(Exception):
    """A problem in one table of the space file: the next table is still checked."""


def _bad(msg: str) -> NoReturn:
    raise _Bad(msg)


def _problem(text: str, name: str, subject: str, msg: str) -> str:
    """'line N: subject: msg', the key named once (config.py's messages start with it)."""
    if msg.startswith(name):
        msg = msg[len(name):].lstrip(" :")
    return f"line {line_of(text, name)}: {subject}: {msg}"


def _check_key(name: str, base: str) -> None:
    """An unknown key: the message `--set` gives (via load_config) and the closest key."""
    if _kind_of(name) is not None:
        return
    try:
        load_config(base, [f"{name}=0"])
    except UserError as exc:  # its message names the closest key (config.closest)
        _bad(_flat(exc))


def _tables(raw: dict[str, Any], text: str, base: str, problems: list[str]):
    """The space file's params and fixed values; a problem of one table is added to
    ``problems`` and the others are still read, so all are told at once (as `--set`)."""
    params, fixed = {}, {}
    for section, values in raw.items():
        if section not in SECTIONS or not isinstance(values, dict):
            problems.append(f"line {line_of(text, section)}: [{section}] is not a config section; "
                            f"use {', '.join(SECTIONS)}{closest(section, SECTIONS)}")
            continue
        for key, spec in values.items():
            name = f"{section}.{key}"
            try:
                _check_key(name, base)
                if isinstance(spec, dict):
                    params[name] = _parse_param(name, spec)
                else:
                    fixed[name] = spec
            except _Bad as exc:
                problems.append(_problem(text, name, name, str(exc)))
    return params, fixed


def parse_space(path: str | Path, base: str = "tiny") -> Space:
    """Read and check a space file against the base config (preset or TOML)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search space {path} not found; give a TOML file like examples/sweep_space.toml")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML ({exc}); fix that line, or see "
                        "examples/sweep_space.toml for the format") from None
    problems: list[str] = []
    params, fixed = _tables(raw, text, base, problems)
    space = Space(params, fixed, str(path))
    problems += _check_with_config(space, base, text)
    if len(problems) == 1:
        raise UserError(f"{path}: {problems[0]}")
    if problems:
        raise UserError(f"{path}: {len(problems)} problems:\n  - " + "\n  - ".join(problems))
    if not params:
        raise UserError(f"{path} searches nothing: add a range ([train.lr] low = ..., high = ...) "
                        "or a categorical (choices = [...])")
    return space
