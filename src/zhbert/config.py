"""Training configuration: frozen dataclasses, TOML presets, `--set` overrides.

A config is resolved in three layers: the dataclass defaults, a preset or TOML
file (`--config tiny|seed|base|PATH`), then `--set section.key=value`
overrides. Validation collects *every* problem and reports them together, so a
user fixes a config in one round instead of one error at a time. The resolved
config is written into the run directory (config.json) and its hash guards
resume against a run started with a different config.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from zhbert.errors import UserError
from zhbert.schedule import DEFAULT_DECAY_FRACTION, SCHEDULES, schedule_name

PRESETS = ("tiny", "seed", "base")  # configs/NAME.toml: the one home of each preset's shape
# the pretraining objectives -> the sentence-pair task of their second head (None: MLM only);
# the model, the data pipeline, training's and evaluation's records all read it here
OBJECTIVES: dict[str, str | None] = {"mlm+nsp": "nsp", "mlm+sop": "sop", "mlm": None}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# where each layer's LayerNorms sit: "post" = BERT's (and transformers' BertModel's), after each
# residual sum; "pre" = before each sublayer, with one more LayerNorm after the last layer
# (Xiong et al. 2020; cramming). Only post-LN exports to transformers (see model.Layer).
NORMS = ("post", "pre")
# the most steps a run (train.steps) or a forecast (predict --steps) can have: BERT-base
# trained 10^6, and 10^9 steps are a year at 30 steps a second; 10^20 trained on as if
# meant, with its length warm-up's share (2 x 10^19 steps at length 16) never reached
MAX_STEPS = 10 ** 9


@dataclass(frozen=True)
class ModelSection:
    """The model settings a config chooses; model.ModelConfig adds what the vocabulary
    and the data fix (vocab_size, max_predictions) and the constants of BERT."""
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    objective: str = "mlm+nsp"
    norm: str = "post"


@dataclass(frozen=True)
class DataSection:
    max_len: int = 128
    mask_prob: float = 0.15
    short_seq_prob: float = 0.1
    whole_word: bool = False
    num_workers: int = -1         # -1: auto (workers on CUDA, none on the CPU: data.loader_workers)
    eval_sequences: int = 1024  # fixed held-out sequences evaluated at every eval
    # sequence-length warm-up: the first warmup_len_fraction of train.steps train on
    # sequences of warmup_len tokens (max_len / warmup_len times as many per batch, the
    # same positions per step); warmup_len 0 = off. See loader.LengthWarmupLoader for why.
    warmup_len: int = 0
    warmup_len_fraction: float = 0.0


@dataclass(frozen=True)
class TrainSection:
    steps: int = 1000
    batch_size: int = 32          # per process, per micro-step
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-6
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0     # cosine/linear/wsd decay down to lr * min_lr_ratio
    decay_fraction: float = DEFAULT_DECAY_FRACTION  # wsd: share of post-warm-up steps that decay
    clip_norm: float = 1.0
    eval_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 2000
    keep_last: int = 3            # retention: the newest K checkpoints ...
    keep_every: int = 0           # ... plus every M-th step (0: none) for dynamics studies
    seed: int = 42
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"          # auto | cpu | cuda
    max_nonfinite: int = 3        # consecutive non-finite (skipped) steps before the run stops


@dataclass(frozen=True)
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    preset: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Hash of what defines the run's trajectory (not logging/retention cadence)."""
        return hashlib.sha256(json.dumps(self._trajectory(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: "Config") -> dict[str, tuple[Any, Any]]:
        """The settings of the trajectory (those ``hash`` covers) that differ:
        {"section.key": (this value, other value)}, in key order."""
        a, b = self._trajectory(), other._trajectory()
        keys = sorted({(sec, k) for d in (a, b) for sec in d if isinstance(d[sec], dict) for k in d[sec]})
        # the values themselves, also where one side's hash leaves a default out (model.norm);
        # a key left out of one side's hash with the same value (train.decay_fraction beside
        # another schedule) is not a difference: the key that left it out is
        full_a, full_b = self.to_dict(), other.to_dict()
        return {f"{sec}.{k}": (full_a[sec].get(k), full_b[sec].get(k)) for sec, k in keys
                if a.get(sec, {}).get(k) != b.get(sec, {}).get(k)
                and full_a[sec].get(k) != full_b[sec].get(k)}

    def _trajectory(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in ("eval_every", "log_every", "checkpoint_every", "keep_last", "keep_every"):
            d["train"].pop(k)
        d["data"].pop("num_workers")
        if not d["data"]["warmup_len"]:  # off: the hash of runs made before the option existed
            del d["data"]["warmup_len"], d["data"]["warmup_len_fraction"]
        if d["model"]["norm"] == "post":  # BERT's: the hash of runs made before the option existed
            del d["model"]["norm"]
        if d["train"]["schedule"] != "wsd":  # only wsd reads it: older runs keep their hash
            del d["train"]["decay_fraction"]
        return d

    @property
    def global_batch_per_process(self) -> int:
        return self.train.batch_size * self.train.grad_accum


SECTIONS = {"model": ModelSection, "data": DataSection, "train": TrainSection}


def _preset_text(name: str) -> str:
    return resources.files("zhbert").joinpath(f"configs/{name}.toml").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _preset_sections(name: str) -> dict[str, Any]:
    """A preset's parsed TOML, read once: a sweep's space check resolves thousands of
    configs on one preset, and reading and parsing it was three quarters of each."""
    return tomllib.loads(_preset_text(name))


class ConfigError(UserError):
    """Every problem of a configuration at once (``problems``, each "section.key: why"),
    in a message that names where the settings came from (``source``)."""

    def __init__(self, source: str, problems: list[str], lines: dict[int, int] | None = None):
        # the lines (of problems[i], in the source's TOML) stay out of ``problems``: a sweep's
        # space check quotes the problems of its base config against its own file
        self.source, self.problems, self.lines = source, problems, lines or {}
        told = [p + (f" (line {self.lines[i]})" if i in self.lines else "")
                for i, p in enumerate(problems)]
        listed = " " + told[0] if len(told) == 1 else "\n  - " + "\n  - ".join(told)
        super().__init__(f"invalid configuration in {source}:{listed}")


def line_of(text: str, name: str) -> int:
    """The line of a TOML text that defines ``section.key`` (a config's ``key =`` in its
    ``[section]`` table, a sweep space's ``[section.key]`` table), or ``[section]``; 1 if it
    cannot be told."""
    section, _, key = name.partition(".")
    s, k = re.escape(section), re.escape(key)
    lines = text.splitlines()
    if key:  # a bare "key =" only inside its own table (two tables may share a key: steps)
        table = None
        for i, line in enumerate(lines, start=1):
            if re.match(r"^\s*\[", line):
                table = re.match(rf"^\s*\[\s*{s}\s*\]", line) is not None
            elif table and re.match(rf"^\s*{k}\s*=", line):
                return i
    patterns = ((rf"^\s*\[\s*{s}\s*\.\s*{k}\s*\]", rf"^\s*{s}\s*\.\s*{k}\s*=")
                if key else (rf"^\s*\[\s*{s}\b", rf"^\s*{s}\s*[.=]"))
    for pattern in patterns:
        for i, line in enumerate(lines, start=1):
            if re.match(pattern, line):
                return i
    return 1


def closest(word: str, options, fmt: str = "{}") -> str:
    """"; did you mean OPTION?" for the option closest to ``word`` (difflib), written
    through ``fmt``; "" when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""


def _read_toml(spec: str) -> tuple[dict[str, Any], str, str | None]:
    """(sections, name, TOML text or None) of a preset, a TOML file or a run's config.json."""
    if spec in PRESETS:  # a copy: the caller's changes stay out of the next one's
        return copy.deepcopy(_preset_sections(spec)), spec, None
    path = Path(spec)
    if path.is_dir() and (path / "config.json").is_file():  # a run directory
        path = path / "config.json"
    if path.suffix == ".json" and path.is_file():
        return (*run_config_sections(path), None)
    if not path.is_file():
        looks = path.suffix in (".toml", ".json") or len(path.parts) > 1
        what = ("no such file" if looks and not path.exists() else
                "neither a preset, a TOML file nor a run (its directory or config.json)")
        raise UserError(f"config {spec!r}: {what}; the presets are {', '.join(PRESETS)}"
                        + closest(spec, PRESETS))
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), path.stem, text
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None


def _coerce(value: Any, default: Any, name: str, errors: list[str]) -> Any:
    """Convert a TOML or --set value to the type of the field's default."""
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return text.lower() in ("true", "1", "yes")
            if kind is int and "e" in text.lower():  # 1e5 steps; not 1.5e0 (read as 1) or 1e400
                number = float(text)
                if not (number.is_integer() and abs(number) < 2 ** 63):
                    raise ValueError
                return int(number)
            return kind(text)
        except ValueError:
            errors.append(f"{name}: {value!r} is not a valid {kind.__name__}")
            return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        errors.append(f"{name}: expected {kind.__name__}, got {value!r}")
        return default
    return value


def _parse_overrides(overrides: list[str], errors: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            errors.append(f"--set {item!r}: expected section.key=value (e.g. train.lr=5e-4)")
            continue
        out.setdefault(section, {})[name] = value
    return out


# values read in one spelling whatever their case, as their command-line option reads them
# (--schedule WSD): a file's "Cosine" was refused. Normalised before the Config exists, so a
# run's hash and config.json hold the one spelling: "Cosine" and "cosine" are the same run.
_SPELLINGS = {"train.schedule": schedule_name}


def _build_section(cls: type, values: dict[str, Any], section: str, errors: list[str],
                   where: dict[str, int] | None = None, lines: dict[int, int] | None = None) -> Any:
    """``where``: the line of each "section.key" a TOML file set; ``lines`` gets the line
    of each error (by its index in ``errors``)."""
    where = where or {}
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key, said = f"{section}.{name}", len(errors)
        if name not in known:
            # matched on the key alone: the shared "train." would make every train key close
            errors.append(f"{key}: unknown key" + (closest(name, known, section + ".{}")
                                                   or f" (known: {', '.join(known)})"))
        else:
            kwargs[name] = _coerce(value, known[name].default, key, errors)
            if key in _SPELLINGS and isinstance(kwargs[name], str):
                kwargs[name] = _SPELLINGS[key](kwargs[name])
        if len(errors) > said and key in where and lines is not None:
            lines[len(errors) - 1] = where[key]
    return cls(**kwargs)


def load_config(spec: str = "tiny", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve preset/file + overrides into a validated Config (all errors at once)."""
    errors: list[str] = []
    lines: dict[int, int] = {}  # error index -> its line in the TOML file
    raw, name, text = _read_toml(spec)
    merged: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        if section not in SECTIONS or not isinstance(values, dict):
            if text:
                lines[len(errors)] = line_of(text, section)
            errors.append(f"[{section}]: unknown section" + (closest(section, SECTIONS, "[{}]") or
                                                              f" (known: {', '.join(SECTIONS)})"))
            continue
        merged[section] = dict(values)
    where = {f"{s}.{k}": line_of(text, f"{s}.{k}")
             for s, values in merged.items() for k in values} if text else {}
    for section, values in _parse_overrides(list(overrides), errors).items():
        if section not in SECTIONS:
            errors.append(f"--set {section}.*: unknown section (known: {', '.join(SECTIONS)})")
            continue
        merged.setdefault(section, {}).update(values)
        for k in values:  # a --set value replaces the file's: its errors are the --set's
            where.pop(f"{section}.{k}", None)
    built = {s: _build_section(cls, merged.get(s, {}), s, errors, where, lines)
             for s, cls in SECTIONS.items()}
    config = Config(preset=name, **built)
    errors += validate(config)
    if errors:
        source = (f"config file {spec}" if text else f"preset {spec}" if spec in PRESETS
                  else f"run config {spec}")
        raise ConfigError(source + (" with --set" if overrides else ""), errors, lines)
    return config


def describe_differences(diffs: dict[str, tuple[Any, Any]], most: int = 6) -> str:
    """``Config.differences`` as one clause: "train.lr: 0.002 -> 0.0001; ..." (``most`` named)."""
    items = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in diffs.items()]
    return "; ".join(items[:most]) + (f"; and {len(items) - most} more" if len(items) > most else "")


def run_config_sections(path: Path) -> tuple[dict[str, Any], str]:
    """The settings a run's config.json holds (what `zhbert train` wrote), as a preset's
    sections: ``--config RUN`` repeats a run's settings."""
    from zhbert.fileio import read_json

    d = read_json(path, "run config")
    cfg = d.get("config") if isinstance(d, dict) else None
    # a data directory's manifest.json also has a "config" (prepare's settings, with its
    # "splits" beside it), which read as four "unknown section" lines
    manifest = isinstance(d, dict) and "splits" in d
    if not isinstance(cfg, dict) or manifest:
        data = " (a data directory's manifest: pass its directory as --data)" if manifest else ""
        raise UserError(f"{path} is not a zhbert run's config.json{data}; give --config a preset, "
                        "a TOML file or a run directory")
    return {k: v for k, v in cfg.items() if isinstance(v, dict)}, str(cfg.get("preset", path.parent.name))


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config written by `to_dict` (a run's config.json)."""
    errors: list[str] = []
    built = {s: _build_section(cls, d.get(s, {}), s, errors) for s, cls in SECTIONS.items()}
    if errors:
        raise ConfigError("a run's config.json", errors)
    return Config(preset=d.get("preset", "custom"), **built)


def validate(c: Config) -> list[str]:
    m, d, t = c.model, c.data, c.train
    checks = [
        (m.objective in OBJECTIVES, f"model.objective must be one of {', '.join(OBJECTIVES)}"),
        (m.norm in NORMS, f"model.norm must be one of {', '.join(NORMS)}"),
        (m.hidden_size > 0 and m.num_heads > 0 and m.hidden_size % m.num_heads == 0,
         "model.hidden_size must be a positive multiple of model.num_heads"),
        (m.num_layers > 0 and m.intermediate_size > 0, "model.num_layers and intermediate_size must be > 0"),
        (0 <= m.hidden_dropout < 1 and 0 <= m.attention_dropout < 1, "dropouts must be in [0, 1)"),
        (8 <= d.max_len <= m.max_position_embeddings,
         "data.max_len must be in [8, model.max_position_embeddings]"),
        (0 < d.mask_prob < 1, "data.mask_prob must be in (0, 1)"),
        (0 <= d.short_seq_prob <= 1, "data.short_seq_prob must be in [0, 1]"),
        (d.num_workers >= -1 and d.eval_sequences > 0, "data.num_workers >= -1 (auto), data.eval_sequences > 0"),
        (d.warmup_len == 0 or (8 <= d.warmup_len < d.max_len and d.max_len % d.warmup_len == 0),
         "data.warmup_len must be 0 (off) or at least 8, below data.max_len and dividing it"),
        (d.warmup_len == 0 or 0 < d.warmup_len_fraction < 1,
         "data.warmup_len_fraction (the share of train.steps at data.warmup_len) must be in (0, 1)"),
        (0 < t.steps <= MAX_STEPS, f"train.steps must be in [1, {MAX_STEPS:,}]"),
        (t.batch_size > 0 and t.grad_accum > 0, "train.batch_size and train.grad_accum must be > 0"),
        (t.lr > 0, "train.lr must be > 0"),
        (t.weight_decay >= 0 and 0 <= t.min_lr_ratio <= 1, "train.weight_decay >= 0, min_lr_ratio in [0, 1]"),
        # an eps of 1 or more swamps a gradient's typical root mean square (1e-4 to 1e-2): no
        # update (eps=1e30 trained to 0%)
        (0 <= t.beta1 < 1 and 0 <= t.beta2 < 1 and 0 < t.eps < 1, "train.beta1/beta2 in [0, 1), eps in (0, 1)"),
        (t.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (t.schedule in SCHEDULES, f"train.schedule must be one of {', '.join(SCHEDULES)}"),
        (0 < t.decay_fraction <= 1, "train.decay_fraction (wsd's decaying share) must be in (0, 1]"),
        (t.clip_norm >= 0, "train.clip_norm must be >= 0 (0 disables clipping)"),
        (t.eval_every > 0 and t.log_every > 0 and t.checkpoint_every > 0,
         "train.eval_every, log_every and checkpoint_every must be > 0"),
        (t.keep_last >= 1 and t.keep_every >= 0, "train.keep_last >= 1, train.keep_every >= 0"),
        (t.precision in PRECISIONS, f"train.precision must be one of {', '.join(PRECISIONS)}"),
        (t.device in ("auto", "cpu", "cuda"), "train.device must be auto, cpu or cuda"),
        (t.max_nonfinite >= 1, "train.max_nonfinite must be >= 1"),
        # numpy's SeedSequence takes no negative seed, torch.manual_seed none of 2^64 or more
        (0 <= t.seed < 2 ** 64, "train.seed must be in [0, 2^64)"),
    ]
    # inf passes comparisons it should not (weight_decay >= 0, eps > 0); clip_norm = inf
    # means no clipping, as 0 does
    values = {f"{name}.{f.name}": getattr(sec, f.name) for name, sec in (("model", m), ("data", d),
              ("train", t)) for f in dataclasses.fields(sec)}
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)
           and not (k == "train.clip_norm" and v == math.inf)]
    return ([f"{k} must be a finite number (got {values[k]})" for k in bad]
            + [msg for ok, msg in checks if not ok and not msg.startswith(tuple(bad))])
