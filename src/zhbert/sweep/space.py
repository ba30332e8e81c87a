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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

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

    def overrides(self, values: dict[str, Any]) -> list[str]:
        """`--set` items for a trial: the fixed values, then the sampled ones."""
        return [f"{k}={format_value(v)}" for k, v in {**self.fixed, **values}.items()]

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
    cast = int if is_int else float
    return Param(name, "int" if is_int else "float", cast(low), cast(high), log,
                 None if step is None else cast(step))


def _probe_values(p: Param) -> list[Any]:
    return list(p.choices) if p.kind == "categorical" else [p.low, p.high]


def _check_with_config(space: Space, base: str, text: str) -> list[str]:
    """Each fixed value and each range end / choice through load_config (the `--set` check)."""
    fixed = space.overrides({})
    try:
        load_config(base, fixed)
    except UserError as exc:
        return [f"fixed values: {_flat(exc)}"]  # every probe below would repeat it
    problems = []
    for name, p in space.params.items():
        for value in _probe_values(p):
            try:
                load_config(base, fixed + [f"{name}={format_value(value)}"])
            except UserError as exc:
                problems.append(_problem(text, name, f"{name} = {value!r}", _flat(exc)))
                break  # one problem per table: its other values mostly repeat it
    return problems


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
