"""The learning-curve families curves.py fits (power, exp, log-linear and linear for an
accuracy; power and exp towards a floor for a loss): each one's formula, starting points,
bounds and the closed form of the step at which it reaches a target."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from zhbert.errors import UserError

ACCURACY_MODELS = ("power", "exp", "loglinear", "linear")
LOSS_MODELS = ("loss_power", "loss_exp", "loglinear", "linear")


@dataclass(frozen=True)
class Model:
    name: str
    formula: str
    f: Callable[..., np.ndarray]                       # f(u, *params)
    params: tuple[str, ...]
    starts: Callable[[np.ndarray, np.ndarray, float], list[list[float]]]  # (u, y, cap) -> p0s
    bounds: Callable[[np.ndarray, np.ndarray, float], tuple[list, list]]
    solve: Callable[[np.ndarray, float], np.ndarray]   # (params (B, k), target) -> u, inf if never
    asymptote: int | None = None                       # index of the ceiling/floor parameter
    direction: int = 1                                 # +1 rises to a target, -1 falls to it


def _safe(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def wrapped(*args: Any) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(*args)
    return wrapped


def accuracy_cap(y: np.ndarray) -> float:
    """Upper bound for an accuracy ceiling: 1 for fractions, 100 for percent."""
    top = float(np.max(y))
    return 1.0 if top <= 1.0 else 100.0 if top <= 100.0 else math.inf


def _tail(y: np.ndarray) -> float:
    return float(np.mean(y[-max(3, len(y) // 10):]))


def _head(y: np.ndarray) -> float:
    return float(np.mean(y[: max(3, len(y) // 10)]))


def _rising_starts(u, y, cap):
    end, lo = _tail(y), float(np.min(y))
    gap = max(end - _head(y), 1e-3)
    aa = [min(end + k * gap, cap if math.isfinite(cap) else end + k * gap) for k in (0.05, 0.3, 1.0)]
    return [[a, max(a - end, 1e-3), s] for a in aa for s in (0.3, 1.0)] + [[max(lo, end), 1e-3, 0.5]]


def _rising_bounds(u, y, cap):
    return [float(np.min(y)) - 1e-9, 0.0, 1e-3], [cap, np.inf, 10.0]


def _falling_starts(u, y, cap):
    end, lo = _tail(y), float(np.min(y))
    return [[fl, max(end - fl, 1e-3), s] for fl in (0.0, 0.5 * lo, 0.9 * lo) for s in (0.3, 1.0)]


def _falling_bounds(u, y, cap):
    return [0.0 if np.min(y) >= 0 else -np.inf, 0.0, 1e-3], [float(np.min(y)) + 1e-9, np.inf, 10.0]


def _line_starts(g):
    def starts(u, y, cap):
        b, a = np.polyfit(g(u), y, 1)
        return [[float(a), float(b)]]
    return starts


def _free(u, y, cap):
    return [-np.inf, -np.inf], [np.inf, np.inf]


def _solve_line(g_inv):
    def solve(p, t):
        a, b = p[:, 0], p[:, 1]
        return np.where(b > 0, np.maximum(g_inv((t - a) / np.where(b > 0, b, 1)), 0.0), np.inf)
    return _safe(solve)


def _solve_line_falling(g_inv):
    # for loss-like metrics (direction -1) a straight line reaches a lower target if b < 0
    def solve(p, t):
        a, b = p[:, 0], p[:, 1]
        return np.where(b < 0, np.maximum(g_inv((t - a) / np.where(b < 0, b, -1)), 0.0), np.inf)
    return _safe(solve)


def _solve_power(p, t):
    a, b, c = p.T
    return np.where(a > t, (np.maximum(b, 0) / np.where(a > t, a - t, 1)) ** (1 / c), np.inf)


def _solve_exp(p, t):
    a, b, tau = p.T
    ratio = np.where(a > t, (a - t) / np.where(b > 0, b, 1), 1.0)
    return np.where(a > t, np.where(b > 0, np.maximum(-tau * np.log(ratio), 0.0), 0.0), np.inf)


def _solve_loss_power(p, t):
    fl, amp, alpha = p.T
    return np.where(fl < t, (np.maximum(amp, 0) / np.where(fl < t, t - fl, 1)) ** (1 / alpha), np.inf)


def _solve_loss_exp(p, t):
    fl, amp, tau = p.T
    ratio = np.where(fl < t, (t - fl) / np.where(amp > 0, amp, 1), 1.0)
    return np.where(fl < t, np.where(amp > 0, np.maximum(-tau * np.log(ratio), 0.0), 0.0), np.inf)


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("power", "a - b*u^(-c)", _safe(lambda u, a, b, c: a - b * u ** (-c)), ("a", "b", "c"),
          _rising_starts, _rising_bounds, _safe(_solve_power), asymptote=0),
    Model("exp", "a - b*exp(-u/tau)", _safe(lambda u, a, b, tau: a - b * np.exp(-u / tau)),
          ("a", "b", "tau"), _rising_starts, _rising_bounds, _safe(_solve_exp), asymptote=0),
    Model("loglinear", "a + b*log(u)", _safe(lambda u, a, b: a + b * np.log(u)), ("a", "b"),
          _line_starts(np.log), _free, _solve_line(np.exp)),
    Model("linear", "a + b*u", lambda u, a, b: a + b * u, ("a", "b"),
          _line_starts(lambda u: u), _free, _solve_line(lambda v: v)),
    Model("loss_power", "L + A*u^(-alpha)", _safe(lambda u, fl, amp, al: fl + amp * u ** (-al)),
          ("L", "A", "alpha"), _falling_starts, _falling_bounds, _safe(_solve_loss_power),
          asymptote=0, direction=-1),
    Model("loss_exp", "L + A*exp(-u/tau)", _safe(lambda u, fl, amp, tau: fl + amp * np.exp(-u / tau)),
          ("L", "A", "tau"), _falling_starts, _falling_bounds, _safe(_solve_loss_exp),
          asymptote=0, direction=-1),
)}


def solve_for(model: Model, params: np.ndarray, target: float, direction: int) -> np.ndarray:
    """u at which each parameter row reaches ``target``; lines follow ``direction``."""
    params = np.atleast_2d(params)
    if model.name == "linear" and direction < 0:
        return _solve_line_falling(lambda v: v)(params, target)
    if model.name == "loglinear" and direction < 0:
        return _solve_line_falling(np.exp)(params, target)
    if model.direction != direction and model.asymptote is not None:
        raise UserError(f"model {model.name} describes a metric that "
                        f"{'rises' if model.direction > 0 else 'falls'}; it cannot predict this target")
    return model.solve(params, target)
