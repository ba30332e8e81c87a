"""`zhbert monitor RUN_DIR [RUN_DIR...]`: a live local dashboard for training runs.

A small read-only JSON API (Starlette) plus one static page (uPlot charts). The server
follows each run's history with a ``zhbert.history.HistoryReader``: every poll parses
only the bytes appended since the last one (a file that shrank or was replaced, as a
resume does, is read again from the start) and keeps the records in memory, from which
it answers the run table, the page's byte-offset history requests and the study
(monitor/study.py: zhbert.analysis on those records, cached per history change).

Safety: runs are addressed by an id the server hands out (never by a path from the
client), so nothing outside the given directories can be read, and nothing is written.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import sys
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.fileio import json_safe, read_json
from zhbert.history import HistoryReader, bad_lines_warning, read_history, warn_stderr
from zhbert.metrics import metric_info
from zhbert.monitor.queries import checked, history_query, query_params, study_query
from zhbert.monitor.study import study
from zhbert.run import RUN_SEARCH_DEPTH as MAX_DEPTH, find_runs

STATIC = Path(__file__).parent / "static"
STALL_SECONDS = 300.0     # "running" but no new history for this long -> stalled
MAX_CHUNK = 8 << 20       # bytes of history per response; the page asks again for the rest


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or folders of runs (searched up to "
                        f"{MAX_DEPTH} levels down)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    p.add_argument("--port", type=int, default=8008, help="port, 1-65535, or 0 for any free one, "
                   "printed at start (default 8008)")
    p.add_argument("--stall-after", type=argtypes.positive, default=STALL_SECONDS,
                   help="seconds without new history before a running run shows as stalled")


# ----------------------------------------------------------------------------- runs

class RunHistory:
    """One run's history.jsonl, followed: ``refresh()`` reads what was appended since the
    last call and keeps every record, the byte offset its line starts at, and the last
    record of each type (for the run table). ``gen`` counts restarts from byte 0."""

    def __init__(self, path: Path):
        self.reader = HistoryReader(path, warn=lambda message: None)  # one summary per refresh
        self.records: list[dict] = []
        self.starts: list[int] = []
        self.latest: dict[str, dict] = {}
        self.bad_lines: list[int] = []
        self.why: dict[int, str] = {}  # the reader's reason for each bad line that was JSON
        self.gen, self.size = 0, 0
        self.lock = threading.Lock()  # endpoints run in a thread pool

    def refresh(self) -> "RunHistory":
        """Read the new lines; FileNotFoundError when the history is gone."""
        from zhbert.runstate import latest
        with self.lock:
            seen = len(self.bad_lines)
            while True:
                chunk = self.reader.read(MAX_CHUNK)
                if chunk.reset:
                    self.records, self.starts, self.latest, self.bad_lines = [], [], {}, []
                    self.gen, seen, self.why = self.gen + 1, 0, {}
                self.records += chunk.records
                self.starts += chunk.starts
                self.bad_lines += chunk.bad_lines
                self.why.update(chunk.why)
                latest(chunk.records, self.latest)
                self.size = chunk.size
                if not chunk.more:
                    if len(self.bad_lines) > seen:
                        warn_stderr(bad_lines_warning(self.reader.path, self.bad_lines[seen:], self.why))
                    return self

    def since(self, offset: int, gen: int | None = None) -> dict[str, Any]:
        """The records from byte ``offset`` on (at most MAX_CHUNK bytes' worth; ``more``
        says there are others), as the page asks for them. An offset past what was read,
        or from an earlier ``gen``, means the file was rewritten: start again at 0."""
        with self.lock:
            end_all = self.reader.offset
            reset = offset < 0 or offset > end_all or (gen is not None and gen != self.gen)
            offset = 0 if reset else offset
            i = bisect_left(self.starts, offset)
            j = max(bisect_left(self.starts, offset + MAX_CHUNK), min(i + 1, len(self.starts)))
            end = self.starts[j] if j < len(self.starts) else end_all
            return {"offset": end, "size": self.size, "reset": reset, "gen": self.gen,
                    "records": self.records[i:j], "bad_lines": list(self.bad_lines),
                    "more": j < len(self.starts)}


@dataclass(frozen=True)
class RunRef:
    id: str
    path: Path
    history: RunHistory = field(compare=False, repr=False)


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
        self.runs[rid] = known[path] = RunRef(rid, path, RunHistory(path / "history.jsonl"))

    def get(self, rid: str) -> RunRef:
        ref = self.runs.get(rid) or self.scan().get(rid)
        if ref is None:
            raise KeyError(rid)
        return ref


def check_roots(paths: list[str]) -> None:
    """A mistyped path is an error up front, not a server that watches nothing."""
    for p in paths:
        if not p or not Path(p).exists():  # '' (an unset variable) is not "." by accident
            raise UserError(f"{p or repr(p)} does not exist; give a run directory or a folder of runs, "
                            "e.g. zhbert monitor runs/")
        if not Path(p).is_dir():
            raise UserError(f"{p} is a file, not a folder; give a run directory (the folder "
                            "holding history.jsonl) or a folder of runs, e.g. zhbert monitor runs/")


def run_summary(ref: RunRef, stall_after: float) -> dict[str, Any]:
    """zhbert status for one run, plus 'stalled' and 'missing'; never raises for bad runs.
    Reads only what the history gained since the last poll."""
    from zhbert.runstate import summarize
    hist = ref.path / "history.jsonl"
    out: dict[str, Any] = {"id": ref.id, "path": str(ref.path)}
    try:
        mtime = hist.stat().st_mtime
        read = ref.history.refresh()
        s = summarize(ref.path, read.latest, bad_lines=len(read.bad_lines))
    except FileNotFoundError:
        return out | {"state": "missing", "error": f"{hist} was deleted or moved"}
    except Exception as exc:  # noqa: BLE001 - one unreadable run must not fail the whole list
        # (a bad record is skipped by the reader; this is what no rule foresaw): said in
        # that run's row and once on the server's stderr, the other runs still listed
        why = f"cannot read this run ({type(exc).__name__}: {exc})"
        warn_stderr(f"{ref.path}: {why}")
        return out | {"state": "error", "error": why}  # the page skips its history
    age = time.time() - mtime
    if s["state"].startswith("running") and age > stall_after:
        since = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min"  # not "0 min" (--stall-after 3)
        s["state"] = f"stalled (no new history for {since})"
    return out | s | {"history_age_s": age, "bad_lines": list(ref.history.bad_lines)}


def _sweep_dir(path: Path) -> Path | None:
    """The sweep whose trial ``path`` is (SWEEP_DIR/trials/NNNN), else None."""
    from zhbert.sweep.study import SPEC_FILE
    if path.parent.name != "trials" or not (path.parent.parent / SPEC_FILE).is_file():
        return None
    return path.parent.parent


def _objective_metric(sweep: Path) -> str:
    """The history metric a sweep optimises, from its spec (read once a poll per sweep)."""
    from zhbert.sweep.study import OBJECTIVES, SPEC_FILE
    try:
        objective = read_json(sweep / SPEC_FILE, "sweep spec").get("objective", "acc")
    except (UserError, OSError, AttributeError):  # a sweep being written: its default objective
        objective = "acc"
    return OBJECTIVES.get(objective, OBJECTIVES["acc"])[0]


_STATES: dict[Path, tuple[Any, Any]] = {}  # sweep -> (its journal's stat, _trial_states)


def _trial_states(sweep: Path) -> dict[str, str] | str | None:
    """The sweep's trial states as the sweep itself counts them (study.trial_states), why
    they cannot be read, or None where there is no study to read (no zhbert spec, no
    journal yet); the journal is read again only when it changed (pages poll)."""
    from zhbert.sweep.study import JOURNAL, read_spec, trial_states
    try:
        st = (sweep / JOURNAL).stat()
        key = (st.st_mtime_ns, st.st_size)
    except OSError:  # no journal (a database, or none yet): read each poll
        key = None
    if key is not None and sweep in _STATES and _STATES[sweep][0] == key:
        return _STATES[sweep][1]
    try:
        spec = read_spec(sweep)
    except UserError:  # a sweep.json being written, or not zhbert's
        spec = None
    try:
        states = trial_states(sweep, spec) if spec else None
    except UserError as exc:  # a damaged journal: said in the group, no best named
        states = str(exc)
    _STATES[sweep] = (key, states)
    return states


def sweep_groups(refs, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials of each sweep among the runs, grouped, with the best one so far (by the
    sweep's objective on a complete trial's final held-out eval) and the pruned ones. Each listed
    run of a sweep gains ``sweep`` (its group) and ``pruned`` (its state says why: runstate).
    Complete is Optuna's state, read where the sweep reads it: a trial that failed (its
    trainer exited 1 after its last eval) is not complete however far its history got."""
    from zhbert.runstate import pruned
    groups: dict[Path, dict[str, Any]] = {}
    for ref, s in zip(refs, listed):
        where = _sweep_dir(ref.path)
        if where is None:
            continue
        if where not in groups:
            states = _trial_states(where)
            groups[where] = {"sweep": where.name, "path": str(where), "metric": _objective_metric(where),
                             "trials": [], "pruned": [], "best": None, "best_value": None,
                             "error": states if isinstance(states, str) else None,
                             "states": {} if isinstance(states, str) else states}  # None: no study
        g, metric = groups[where], groups[where]["metric"]
        state = None if g["states"] is None else g["states"].get(f"trials/{ref.path.name}")
        s["sweep"], s["pruned"] = where.name, pruned(ref.path) is not None or state == "PRUNED"
        s["trial_state"] = state
        g["trials"].append(ref.id)
        if s["pruned"]:
            g["pruned"].append(ref.id)
        last = s.get("eval") or {}
        value, better = last.get(metric), metric_info(metric).direction
        # the sweep's best: a complete trial's final eval (a running trial's latest is not)
        at_end = bool(s.get("total_steps")) and last.get("step") == s["total_steps"]
        complete = at_end and (not s["pruned"] if g["states"] is None else state == "COMPLETE")
        if complete and isinstance(value, (int, float)) and math.isfinite(value) and (
                g["best_value"] is None or (value - g["best_value"]) * better > 0):
            g["best"], g["best_value"] = ref.id, float(value)
    for g in groups.values():
        del g["states"]  # each run carries its own trial_state
    return list(groups.values())


# ----------------------------------------------------------------------------- study

def _num(v: Any) -> Any:
    """JSON the browser's JSON.parse accepts, written the one zhbert way (fileio.json_safe):
    NaN -> null, an infinity -> "inf" (the page draws only numbers: anything else is a gap)."""
    return json_safe(v)


def checkpoints(run_dir: Path) -> dict[str, Any]:
    """Checkpoints on disk, and their held-out figures from checkpoint_eval.jsonl."""
    from zhbert.checkpoint import list_checkpoints
    from zhbert.run import EVAL_RESULTS, evals_by_step
    ce = run_dir / EVAL_RESULTS
    evals = evals_by_step(read_history(ce).records) if ce.exists() else {}
    on_disk = {c.step for c in list_checkpoints(run_dir)}
    steps = sorted(on_disk | set(evals))
    return _num({"checkpoints": [{"step": s, "on_disk": s in on_disk, "eval": evals.get(s)}
                                 for s in steps]})


# ----------------------------------------------------------------------------- app

def _error(status: int, message: str):
    from starlette.responses import JSONResponse
    return JSONResponse({"error": message}, status_code=status)


def _gone(ref: RunRef):
    return _error(410, f"{ref.path}/history.jsonl was deleted or moved")


def _api_study(request, ref: RunRef):
    from starlette.responses import JSONResponse
    metric, x, target = study_query(request.query_params)
    if not (ref.path / "history.jsonl").exists():
        return _gone(ref)
    try:
        return JSONResponse(study(ref, metric, x, target))
    except UserError as exc:
        return _error(422, str(exc))
    except FileNotFoundError:
        return _gone(ref)


def create_app(roots: list[str | Path], stall_after: float = STALL_SECONDS):
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    runs = RunSet(roots)

    def per_run(handler):
        """A route of one run: ``handler(request, ref)`` for the run the path names; 404 for
        an id that /api/runs did not hand out."""
        def route(request):
            try:
                ref = runs.get(request.path_params["rid"])
            except KeyError:
                return _error(404, "no such run; ids come from /api/runs")
            return handler(request, ref)
        return checked(route)

    def api_runs(request):
        query_params(request.query_params, ())
        runs.scan()
        listed = [run_summary(r, stall_after) for r in runs.runs.values()]
        return JSONResponse(_num({"runs": listed, "sweeps": sweep_groups(runs.runs.values(), listed),
                                  "problems": runs.problems}))

    def api_history(request, ref: RunRef):
        offset, gen = history_query(request.query_params)
        try:
            return JSONResponse(_num(ref.history.refresh().since(offset, gen)))
        except FileNotFoundError:
            return _gone(ref)

    def api_checkpoints(request, ref: RunRef):
        query_params(request.query_params, ())
        return JSONResponse(checkpoints(ref.path))

    # {rid:path}: ids of nested runs hold "/" ("w/run1"). Safe, as an id is only looked
    # up among those the server handed out, so "../x" is just an unknown id (404).
    routes = [Route("/", lambda r: FileResponse(STATIC / "index.html")),
              Route("/api/runs", checked(api_runs)),
              Route("/api/runs/{rid:path}/history", per_run(api_history)),
              Route("/api/runs/{rid:path}/study", per_run(_api_study)),
              Route("/api/runs/{rid:path}/checkpoints", per_run(api_checkpoints)),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """Bind first, so a busy port or an impossible one is a clear one-line error instead
    of a uvicorn traceback."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0-65535 (0: any free port, printed at start), "
                        f"got {port}")
    if not host.strip():  # bind(("", port)) listens on every interface: say so, not by accident
        raise UserError("--host is empty, which would listen on every network interface; "
                        "leave it out for 127.0.0.1, or pass --host 0.0.0.0 to mean that")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); the port is in use "
                        f"or the address is wrong: pass --port N (or --host)") from None
    sock.listen(128)
    if not ipaddress.ip_address(sock.getsockname()[0].split("%")[0]).is_loopback:
        print(f"zhbert: warning: --host {host} serves the runs below the given folders to anyone who "
              "can reach this machine, with no login; leave --host out to keep them to this machine", file=sys.stderr)
    return sock


def run(args) -> int:
    import uvicorn
    check_roots(args.run_dirs)
    app = create_app(args.run_dirs, args.stall_after)
    sock = bind(args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL
    print(f"zhbert monitor: http://{host}:{sock.getsockname()[1]}/  (Ctrl-C to stop)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
