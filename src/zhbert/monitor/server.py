"""`zhbert monitor RUN_DIR [RUN_DIR...]`: a live local dashboard for training runs.

A small read-only JSON API (Starlette) plus one static page (uPlot charts). The page
polls each run's history with a byte offset, so a refresh only moves the new lines.
The study (correlation, curve fit, prediction, anomalies) is zhbert.analysis, cached
per history size so a 1,000-point run is fitted once per change, not once per poll.

Safety: runs are addressed by an id the server hands out (never by a path from the
client), so nothing outside the given directories can be read, and nothing is written.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from zhbert.errors import UserError
from zhbert.metrics import metric_info

STATIC = Path(__file__).parent / "static"
STALL_SECONDS = 300.0     # "running" but no new history for this long -> stalled
MAX_CHUNK = 8 << 20       # bytes of history per response; the page asks again for the rest
N_BOOT = 200              # bootstrap curves for the fit band and the prediction interval
MAX_DEPTH = 3             # runs/group/sweep/run: deep enough for sweeps, cheap to rescan each poll


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or folders of runs (searched up to "
                        f"{MAX_DEPTH} levels down)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    p.add_argument("--port", type=int, default=8008, help="port (default 8008)")
    p.add_argument("--stall-after", type=float, default=STALL_SECONDS,
                   help="seconds without new history before a running run shows as stalled")


# ----------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class RunRef:
    id: str
    path: Path


class RunSet:
    """The runs under the given roots; parents are re-scanned so new runs appear."""

    def __init__(self, roots: list[str | Path]):
        self.roots = [Path(r).resolve() for r in roots]
        self.runs: dict[str, RunRef] = {}
        self.problems: list[str] = []
        self.lock = threading.Lock()  # endpoints run in a thread pool
        self.scan()

    def scan(self) -> dict[str, RunRef]:
        with self.lock:
            return self._scan()

    def _scan(self) -> dict[str, RunRef]:
        problems, known = [], {r.path: r for r in self.runs.values()}
        for root in self.roots:
            if (root / "history.jsonl").is_file() or root in known:
                self._add(root, known)  # a run, or one we watched that has since vanished
            elif root.is_dir():
                subs = find_runs(root)
                for p in subs:
                    self._add(p, known, root)
                if not subs:
                    problems.append(f"{root}: no runs yet (no history.jsonl up to {MAX_DEPTH} "
                                    "levels down); watching for new ones")
            else:
                problems.append(f"{root}: not found")
        self.problems = problems
        return self.runs

    def _add(self, path: Path, known: dict[Path, RunRef], root: Path | None = None) -> None:
        if path in known:
            return
        # The id is the path below the root ("w/run1"), so same-named runs in different
        # folders stay apart; it is only ever a dict key, never joined to a path.
        parts = path.relative_to(root).parts if root else (path.name,)
        base = "/".join("".join(c if c.isalnum() or c in "-_." else "_" for c in part)
                        for part in parts) or "run"
        n = 1
        rid = base
        while rid in self.runs:
            n += 1
            rid = f"{base}-{n}"
        self.runs[rid] = known[path] = RunRef(rid, path)

    def get(self, rid: str) -> RunRef:
        ref = self.runs.get(rid) or self.scan().get(rid)
        if ref is None:
            raise KeyError(rid)
        return ref


def find_runs(folder: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Folders up to ``depth`` levels below ``folder`` that hold a history.jsonl. Hidden
    folders, checkpoint folders and the inside of a run (its checkpoints, analysis) are
    not searched: they hold no runs, and skipping them keeps the rescan on each poll cheap."""
    try:
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p.name != "checkpoints")
    except OSError:  # unreadable, or removed while we looked: no runs there
        return []
    found = []
    for p in subs:
        if (p / "history.jsonl").is_file():
            found.append(p)
        elif depth > 1:
            found += find_runs(p, depth - 1)
    return found


def check_roots(paths: list[str]) -> None:
    """A mistyped path is an error up front, not a server that watches nothing."""
    for p in paths:
        if not Path(p).exists():
            raise UserError(f"{p} does not exist; give a run directory or a folder of runs, "
                            "e.g. zhbert monitor runs/")
        if not Path(p).is_dir():
            raise UserError(f"{p} is a file, not a folder; give a run directory (the folder "
                            "holding history.jsonl) or a folder of runs, e.g. zhbert monitor runs/")


def run_summary(ref: RunRef, stall_after: float) -> dict[str, Any]:
    """zhbert status for one run, plus 'stalled' and 'missing'; never raises for bad runs."""
    from zhbert.status import collect
    hist = ref.path / "history.jsonl"
    out: dict[str, Any] = {"id": ref.id, "path": str(ref.path)}
    try:
        mtime = hist.stat().st_mtime
        s = collect(ref.path)
    except FileNotFoundError:
        return out | {"state": "missing", "error": f"{hist} was deleted or moved"}
    except UserError as exc:
        return out | {"state": "error", "error": str(exc)}
    age = time.time() - mtime
    if s["state"].startswith("running") and age > stall_after:
        s["state"] = f"stalled (no new history for {age / 60:.0f} min)"
    return out | s | {"history_age_s": age}


def read_new(path: Path, offset: int) -> dict[str, Any]:
    """Complete lines of a JSONL file from byte ``offset``. A partial last line is left
    for the next call; a file shorter than ``offset`` was rewritten (resume), so restart."""
    reset = False
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset > size or offset < 0:
            offset, reset = 0, True
        f.seek(offset)
        data = f.read(min(size - offset, MAX_CHUNK))
    end = data.rfind(b"\n") + 1  # 0 when there is no complete line yet
    records, bad = [], 0
    for raw in data[:end].split(b"\n"):
        if raw.strip():
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                bad += 1  # a corrupt line: skip it, say so, keep the rest
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return {"offset": offset + end, "size": size, "reset": reset, "records": records,
            "bad_lines": bad, "more": offset + end < size and end > 0}


# ----------------------------------------------------------------------------- study

def _num(v: Any) -> Any:
    """JSON-safe number: NaN/inf become None (the browser's JSON.parse rejects them)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _num(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_num(x) for x in v]
    return v


def _stamp(run_dir: Path) -> tuple:
    """Changes whenever the history or the checkpoint evals change: the cache key."""
    out = []
    for name in ("history.jsonl", "checkpoint_eval.jsonl"):
        try:
            st = (run_dir / name).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _guard(fn) -> dict[str, Any]:
    try:
        return fn()
    except UserError as exc:
        return {"error": str(exc)}


@lru_cache(maxsize=64)
def study(run_dir: Path, stamp: tuple, metric: str | None, x: str,
          target: float | None) -> dict[str, Any]:
    """Correlation, best curve fit with extrapolation and band, prediction, anomalies."""
    import numpy as np
    from zhbert.analysis import correlate, detect, fit_curve, load_history, predict_steps

    h = load_history(run_dir, metric)
    s, dropped = h.metric().finite()
    out: dict[str, Any] = {"metric": s.name, "metrics": sorted(h.series), "x": x,
                           "info": {m: metric_info(m).to_json() for m in sorted(h.series)},
                           "notes": list(h.notes), "dropped": dropped,
                           "anomalies": [a.to_json() for a in detect(h)]}
    out["correlation"] = _guard(lambda: correlate(s.step, s.y, n_boot=1000).to_json())

    def fit() -> dict[str, Any]:
        xs = s.x(x)
        fits = fit_curve(xs, s.y, n_boot=N_BOOT, metric=s.name)
        best = fits[0]
        if not best.ok:
            raise UserError("no learning-curve model could be fitted: " + best.error)
        grid = np.linspace(float(xs.min()), 3.0 * float(xs.max()), 150)  # 3x: the extrapolation
        lo, hi = best.band(grid)
        return {"best": best.to_json(), "others": [f.to_json() for f in fits[1:]],
                "grid": grid.tolist(), "y": best.predict(grid).tolist(), "lo": lo.tolist(),
                "hi": hi.tolist(), "last_x": float(xs.max())}
    out["fit"] = _guard(fit)
    if target is not None:
        out["prediction"] = _guard(lambda: predict_steps(h, target, metric=s.name, x=x,
                                                         n_boot=N_BOOT).to_json())
    return _num(out)


def checkpoints(run_dir: Path) -> dict[str, Any]:
    """Checkpoints on disk, and their held-out figures from checkpoint_eval.jsonl."""
    from zhbert.checkpoint import list_checkpoints
    evals: dict[int, dict] = {}
    ce = run_dir / "checkpoint_eval.jsonl"
    if ce.exists():
        for rec in read_new(ce, 0)["records"]:
            if "step" in rec:
                evals[int(rec["step"])] = rec
    steps = sorted({c.step for c in list_checkpoints(run_dir)} | set(evals))
    on_disk = {c.step for c in list_checkpoints(run_dir)}
    return _num({"checkpoints": [{"step": s, "on_disk": s in on_disk, "eval": evals.get(s)}
                                 for s in steps]})


# ----------------------------------------------------------------------------- app

def create_app(roots: list[str | Path], stall_after: float = STALL_SECONDS):
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    runs = RunSet(roots)

    def err(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def lookup(request) -> RunRef | JSONResponse:
        try:
            return runs.get(request.path_params["rid"])
        except KeyError:
            return err(404, "no such run; ids come from /api/runs")

    def api_runs(request):
        runs.scan()
        return JSONResponse(_num({"runs": [run_summary(r, stall_after) for r in runs.runs.values()],
                                  "problems": runs.problems}))

    def api_history(request):
        ref = lookup(request)
        if isinstance(ref, JSONResponse):
            return ref
        try:
            offset = int(request.query_params.get("offset", "0"))
            return JSONResponse(_num(read_new(ref.path / "history.jsonl", offset)))
        except ValueError:
            return err(400, "offset must be an integer byte offset")
        except FileNotFoundError:
            return err(410, f"{ref.path}/history.jsonl was deleted or moved")

    def api_study(request):
        ref = lookup(request)
        if isinstance(ref, JSONResponse):
            return ref
        q = request.query_params
        try:
            target = float(q["target"]) if q.get("target") else None
        except ValueError:
            return err(400, f"target must be a number, got {q['target']!r}")
        if not (ref.path / "history.jsonl").exists():
            return err(410, f"{ref.path}/history.jsonl was deleted or moved")
        try:
            return JSONResponse(study(ref.path, _stamp(ref.path), q.get("metric") or None,
                                      q.get("x", "step"), target))
        except UserError as exc:
            return err(422, str(exc))

    def api_checkpoints(request):
        ref = lookup(request)
        return ref if isinstance(ref, JSONResponse) else JSONResponse(checkpoints(ref.path))

    # {rid:path}: ids of nested runs hold "/" ("w/run1"). Safe, as an id is only looked
    # up among those the server handed out, so "../x" is just an unknown id (404).
    routes = [Route("/", lambda r: FileResponse(STATIC / "index.html")),
              Route("/api/runs", api_runs),
              Route("/api/runs/{rid:path}/history", api_history),
              Route("/api/runs/{rid:path}/study", api_study),
              Route("/api/runs/{rid:path}/checkpoints", api_checkpoints),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """Bind first, so a busy port is a clear one-line error instead of a uvicorn traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); the port is in use "
                        f"or the address is wrong: pass --port N (or --host)") from None
    sock.listen(128)
    return sock


def run(args) -> int:
    import uvicorn
    check_roots(args.run_dirs)
    app = create_app(args.run_dirs, args.stall_after)
    sock = bind(args.host, args.port)
    print(f"zhbert monitor: http://{args.host}:{sock.getsockname()[1]}/  (Ctrl-C to stop)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
