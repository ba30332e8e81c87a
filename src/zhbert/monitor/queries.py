"""The monitor API's query strings, checked: a value the API cannot take is a 400 with a
message naming the parameter, the value and what it takes, the same for every parameter
(never a 200 with the error inside, never a value silently ignored)."""

from __future__ import annotations

import math


class BadQuery(ValueError):
    """A query string the API cannot take: answered 400 with this message."""


def checked(endpoint):
    """A Starlette endpoint whose BadQuery is answered 400 {"error": message}."""
    def answer(request):
        try:
            return endpoint(request)
        except BadQuery as exc:
            from starlette.responses import JSONResponse
            return JSONResponse({"error": str(exc)}, status_code=400)
    return answer


def query_params(q, known: tuple[str, ...]) -> dict[str, str]:
    """The endpoint's parameters that were given a value (an empty one is as if not given);
    a parameter the endpoint does not take is refused, not silently ignored (a typo)."""
    unknown = sorted(set(q.keys()) - set(known))
    if unknown:
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        raise BadQuery(f"unknown query parameter {unknown[0]!r}; {takes}")
    return {k: q[k] for k in known if q.get(k, "").strip()}


def history_query(q) -> tuple[int, int | None]:
    """(offset, gen) of a history request: integers from the previous answer."""
    p = query_params(q, ("offset", "gen"))
    got = {}
    for name in ("offset", "gen"):
        try:
            got[name] = int(p[name]) if name in p else None
        except ValueError:
            raise BadQuery(f"{name} must be an integer (from the previous answer's {name}), "
                           f"got {p[name]!r}") from None
    return got["offset"] or 0, got["gen"]


def study_query(q) -> tuple[str | None, str, float | None]:
    """(metric, x, target) of a study request. The metric is checked against the run
    (an unknown one is a 422 naming the run's metrics); x and target are checked here."""
    from zhbert.analysis.history import X_AXES
    p = query_params(q, ("metric", "x", "target"))
    x = p.get("x", "step")
    if x not in X_AXES:
        raise BadQuery(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    target = None
    if "target" in p:
        try:
            target = float(p["target"])
        except ValueError:
            target = math.nan
        if not math.isfinite(target):
            raise BadQuery(f"target must be a finite number (the metric value to reach, "
                           f"e.g. 0.5), got {p['target']!r}")
    return p.get("metric"), x, target
