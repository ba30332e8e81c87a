"""zhbert monitor: JSON API on run directories written here (no browser)."""

import json
import math
import re
import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from zhbert.analysis import load_history, predict_steps
from zhbert.errors import UserError
from zhbert.monitor.server import bind, create_app


def _line(rec):
    return json.dumps(rec) + "\n"


def write_run(run: Path, n: int = 40, every: int = 10, partial: str = "", total: int | None = None) -> Path:
    """A run half way through its ``total`` steps (default), whose held-out accuracy follows
    0.6 - 0.5*exp(-step/150)."""
    run.mkdir(parents=True, exist_ok=True)
    lines = [_line({"type": "header", "schema": "zhbert-history", "version": 1, "run": run.name,
                    "total_steps": total or n * every * 2, "tokens_per_step": 1000, "precision": "fp32"})]
    for i in range(1, n + 1):
        step = i * every
        acc = 0.6 - 0.5 * math.exp(-step / 150) + 0.003 * math.sin(7 * i)
        lines.append(_line({"type": "train", "step": step, "tokens": 1000 * step, "elapsed": 0.1 * step,
                            "lr": 1e-3, "loss": 5 - 4 * acc, "mlm_loss": 4 - 4 * acc, "mlm_acc": acc,
                            "nsp_loss": 0.6, "nsp_acc": 0.7, "sop_acc": None, "grad_norm": 1.0,
                            "tokens_per_s": 10000.0}))
        lines.append(_line({"type": "eval", "step": step, "tokens": 1000 * step, "elapsed": 0.1 * step,
                            "eval_mlm_acc": acc - 0.01, "eval_mlm_acc_ci95": [acc - 0.02, acc],
                            "eval_mlm_loss": 4 - 4 * acc, "eval_ppl": 10.0, "eval_nsp_acc": 0.7,
                            "eval_sop_acc": None, "eval_masked": 1000}))
    (run / "history.jsonl").write_text("".join(lines) + partial)
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "a")
    write_run(root / "b", n=20, partial='{"type": "train", "st')
    (root / "not_a_run").mkdir()
    return root


def test_runs_listing_and_new_runs_appear(runs, tmp_path):
    stray = tmp_path / "empty"
    stray.mkdir()
    c = TestClient(create_app([runs, stray]))
    body = c.get("/api/runs").json()
    assert [r["id"] for r in body["runs"]] == ["a", "b"]
    a = body["runs"][0]
    assert a["step"] == 400 and a["total_steps"] == 800 and a["percent"] == pytest.approx(50.0)
    assert a["tokens_per_s"] == 10000.0 and a["state"].startswith("stopped")
    assert any("empty" in p and "no runs" in p for p in body["problems"])
    write_run(runs / "c", n=3)  # a run started after the monitor
    assert [r["id"] for r in c.get("/api/runs").json()["runs"]] == ["a", "b", "c"]


def test_history_is_incremental_and_skips_partial_line(runs):
    c = TestClient(create_app([runs]))
    hist = runs / "b" / "history.jsonl"
    first = c.get("/api/runs/b/history?offset=0").json()
    assert len(first["records"]) == 1 + 2 * 20
    whole = hist.read_bytes()
    assert first["offset"] == whole.rfind(b"\n") + 1 < first["size"]  # partial line left
    assert c.get(f"/api/runs/b/history?offset={first['offset']}").json()["records"] == []
    # the trainer finishes the line and writes another: exactly those two arrive
    with open(hist, "a") as f:
        f.write('ep": 210}\n' + _line({"type": "event", "step": 210, "kind": "stop", "message": "x"}))
    nxt = c.get(f"/api/runs/b/history?offset={first['offset']}").json()
    assert [r.get("step") for r in nxt["records"]] == [210, 210]
    assert nxt["offset"] == hist.stat().st_size and not nxt["reset"]
    # a file rewritten shorter (resume truncation) restarts from 0
    write_run(runs / "b", n=2)
    again = c.get(f"/api/runs/b/history?offset={nxt['offset']}").json()
    assert again["reset"] and len(again["records"]) == 5


def test_history_corrupt_line_is_named_and_skipped(runs, capsys):
    hist = runs / "a" / "history.jsonl"
    lines = hist.read_text().splitlines(keepends=True)
    hist.write_text("".join(lines[:3]) + "not json\n" + "".join(lines[3:]))
    c = TestClient(create_app([runs]))
    body = c.get("/api/runs/a/history?offset=0").json()
    assert len(body["records"]) == len(lines) and body["bad_lines"] == [4]
    assert "history.jsonl, line 4: not a JSON record" in capsys.readouterr().err
    assert c.get("/api/runs").json()["runs"][0]["bad_lines"] == [4]  # the page shows it
    # the next polls read nothing new, so nothing is warned again
    assert c.get(f"/api/runs/a/history?offset={body['offset']}").json()["records"] == []
    assert "line 4" not in capsys.readouterr().err


def test_polls_read_only_what_was_appended(runs, monkeypatch):
    """The run table and the history requests parse each byte of a history once."""
    from zhbert import history
    parsed = []
    real = history.HistoryReader._parse
    monkeypatch.setattr(history.HistoryReader, "_parse",
                        lambda self, data: parsed.append(len(data)) or real(self, data))
    c = TestClient(create_app([runs / "a"]))
    for _ in range(3):
        assert c.get("/api/runs").json()["runs"][0]["step"] == 400
        first = c.get("/api/runs/a/history?offset=0").json()
    hist = runs / "a" / "history.jsonl"
    size = hist.stat().st_size
    assert sum(parsed) == size and len(first["records"]) == 81
    assert c.get("/api/runs/a/study").json()["metric"] == "eval_mlm_acc"  # from the records in memory
    assert sum(parsed) == size
    extra = _line({"type": "train", "step": 410, "tokens": 410000, "elapsed": 41.0, "loss": 2.0})
    with open(hist, "a") as f:
        f.write(extra)
    assert c.get("/api/runs").json()["runs"][0]["step"] == 410
    nxt = c.get(f"/api/runs/a/history?offset={first['offset']}&gen={first['gen']}").json()
    assert [r["step"] for r in nxt["records"]] == [410] and sum(parsed) == size + len(extra.encode())
    # a resume replaces the file (a new inode) with one that is no shorter: a new gen, from 0
    tmp = hist.with_name("new.jsonl")
    tmp.write_text(hist.read_text() + extra)
    tmp.replace(hist)
    again = c.get(f"/api/runs/a/history?offset={nxt['offset']}&gen={nxt['gen']}").json()
    assert again["reset"] and again["gen"] == nxt["gen"] + 1 and len(again["records"]) == 83


def test_study_reuses_analysis_and_predicts(runs):
    c = TestClient(create_app([runs]))
    s = c.get("/api/runs/a/study?target=0.5").json()
    assert s["metric"] == "eval_mlm_acc"
    assert s["correlation"]["pearson"]["statistic"] > 0.8
    fit = s["fit"]
    assert fit["best"]["model"] in ("exp", "power") and len(fit["grid"]) == len(fit["lo"]) == 150
    assert fit["grid"][-1] == pytest.approx(3 * 400)
    assert all(lo <= y + 1e-9 and y <= hi + 1e-9 for lo, y, hi in zip(fit["lo"], fit["y"], fit["hi"]))
    # the same answer as the library gives directly
    ref = predict_steps(load_history(runs / "a"), 0.5, n_boot=200)
    assert s["prediction"]["steps"] == pytest.approx(ref.steps.value)
    assert s["prediction"]["reachable"] and 250 < ref.steps.value < 500
    assert c.get("/api/runs/a/study?target=abc").status_code == 400
    bad = c.get("/api/runs/a/study?metric=nope")
    assert bad.status_code == 422 and "nope" in bad.json()["error"]
    assert "--metric" not in bad.json()["error"]  # the page has no command-line flags
    far = c.get("/api/runs/a/study?target=2").json()["prediction"]["error"]
    assert far.startswith("target 2: eval_mlm_acc is an accuracy") and far.count("target 2") == 1
    assert "--target" not in far


def test_anomalies_and_checkpoints(tmp_path):
    run = write_run(tmp_path / "r", n=60)
    with open(run / "history.jsonl", "a") as f:  # a loss spike the detector must find
        f.write(_line({"type": "train", "step": 610, "tokens": 610000, "elapsed": 61.0, "lr": 1e-3,
                       "loss": float("nan"), "mlm_loss": 4.0, "mlm_acc": 0.59, "nsp_loss": 0.6,
                       "nsp_acc": 0.7, "sop_acc": None, "grad_norm": 1.0, "tokens_per_s": 1e4}))
    (run / "checkpoints" / "step_00000200").mkdir(parents=True)
    (run / "checkpoint_eval.jsonl").write_text(
        _line({"step": 200, "tokens": 200000, "eval_mlm_acc": 0.4, "eval_mlm_acc_ci95": [0.39, 0.41],
               "eval_mlm_loss": 2.0, "eval_nsp_acc": 0.7}) +
        _line({"step": 100, "tokens": 100000, "eval_mlm_acc": 0.3, "eval_mlm_acc_ci95": [0.29, 0.31],
               "eval_mlm_loss": 2.5, "eval_nsp_acc": 0.6}))
    c = TestClient(create_app([run]))
    s = c.get("/api/runs/r/study").json()
    assert any(a["kind"] == "nonfinite" and a["metric"] == "loss" for a in s["anomalies"]), s["anomalies"]
    assert "prediction" not in s
    ck = c.get("/api/runs/r/checkpoints").json()["checkpoints"]
    assert [(k["step"], k["on_disk"], k["eval"]["eval_mlm_acc"]) for k in ck] == [(100, False, 0.3),
                                                                                  (200, True, 0.4)]


def test_traversal_and_unknown_runs_refused(runs):
    c = TestClient(create_app([runs / "a"]))
    for url in ["/api/..%2F..%2Fetc%2Fpasswd", "/api/runs/..%2Fb/history",
                "/api/runs/..%2F..%2F..%2Fetc%2Fpasswd/history", "/api/runs/b/history",
                "/static/..%2Fserver.py", "/static/%2E%2E/server.py", "/api/runs/a/..%2F..%2Fb"]:
        r = c.get(url)
        assert r.status_code == 404, url
        assert b"zhbert-history" not in r.content and b"import" not in r.content
    assert c.get("/static/app.js").status_code == 200
    assert b"uPlot" in c.get("/").content


def test_runs_in_sub_folders_are_found_with_path_ids(runs):
    # runs/w/run1 and runs/v/run1: two levels down, same leaf name
    write_run(runs / "w" / "run1", n=5)
    write_run(runs / "v" / "run1", n=7)
    write_run(runs / "g" / "s" / "r3", n=3)                # 3 levels: the limit
    write_run(runs / "d1" / "d2" / "d3" / "r4", n=3)       # 4 levels: too deep
    write_run(runs / ".trash" / "old", n=3)                # hidden
    write_run(runs / "x" / "checkpoints" / "r", n=3)       # a checkpoint folder
    write_run(runs / "a" / "copy", n=3)                    # inside a run
    c = TestClient(create_app([runs]))
    assert [r["id"] for r in c.get("/api/runs").json()["runs"]] == ["a", "b", "g/s/r3", "v/run1", "w/run1"]
    # the page asks with encodeURIComponent(id); each id reaches its own run
    for rid, n in [("w/run1", 5), ("v/run1", 7)]:
        for url in [f"/api/runs/{rid.replace('/', '%2F')}/history", f"/api/runs/{rid}/history"]:
            r = c.get(url)
            assert r.status_code == 200 and len(r.json()["records"]) == 1 + 2 * n, url
    for what in ["study", "checkpoints"]:
        assert c.get(f"/api/runs/w%2Frun1/{what}").status_code == 200, what
    for url in ["/api/runs/w%2F..%2Fa/history", "/api/runs/w%2F..%2F..%2F..%2Fetc%2Fpasswd/history",
                "/api/runs/d1%2Fd2%2Fd3%2Fr4/history", "/api/runs/.trash%2Fold/history"]:
        r = c.get(url)
        assert r.status_code == 404 and b"zhbert-history" not in r.content, url


def test_cli_missing_or_file_path_exits_2_without_serving(tmp_path, capsys, monkeypatch):
    from zhbert.cli import main
    from zhbert.monitor import server

    def no_server(*a, **k):
        raise AssertionError("a server was started for a path that is not a folder")
    monkeypatch.setattr(server, "bind", no_server)
    missing = tmp_path / "runs" / "nope"
    assert main(["monitor", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "does not exist" in err
    assert "zhbert monitor runs/" in err
    hist = write_run(tmp_path / "runs" / "a") / "history.jsonl"
    assert main(["monitor", str(tmp_path / "runs"), str(hist)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(hist) in err and "run directory" in err


def test_deleted_run_keeps_others_working(runs):
    c = TestClient(create_app([runs]))
    (runs / "b" / "history.jsonl").unlink()
    states = {r["id"]: r["state"] for r in c.get("/api/runs").json()["runs"]}
    assert states == {"a": states["a"], "b": "missing"} and states["a"].startswith("stopped")
    assert c.get("/api/runs/b/history").status_code == 410
    assert c.get("/api/runs/b/study").status_code == 410
    assert c.get("/api/runs/a/history").status_code == 200


def test_server_is_read_only(runs):
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*")}
    c = TestClient(create_app([runs]))
    for url in ["/api/runs", "/api/runs/a/history", "/api/runs/a/study?target=0.5",
                "/api/runs/a/checkpoints"]:
        assert c.get(url).status_code == 200
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*")} == before


def test_port_in_use_is_a_clear_user_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(UserError, match=f"127.0.0.1:{port}.*--port"):
            bind("127.0.0.1", port)
    finally:
        busy.close()


def test_cli_port_in_use_exits_2(runs, capsys):
    from zhbert.cli import COMMANDS, main
    if ("monitor",) not in COMMANDS:
        pytest.skip("monitor is not registered in cli.COMMANDS yet")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        assert main(["monitor", str(runs), "--port", str(busy.getsockname()[1])]) == 2
    finally:
        busy.close()
    assert "--port" in capsys.readouterr().err


def test_non_finite_values_are_json_the_browser_reads(tmp_path):
    """NaN and infinity in a history (the writer allows them) reach the page as null and
    "inf", zhbert's one way of writing them (fileio.json_safe), never as bare NaN/Infinity."""
    run = write_run(tmp_path / "r", n=3)
    with open(run / "history.jsonl", "a") as f:
        f.write('{"type": "train", "step": 40, "loss": NaN, "grad_norm": Infinity, "lr": -Infinity}\n')
    c = TestClient(create_app([run]))
    r = c.get("/api/runs/r/history")
    rec = json.loads(r.text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))["records"][-1]
    assert (rec["loss"], rec["grad_norm"], rec["lr"]) == (None, "inf", "-inf")


def test_a_sweep_shows_as_a_group_with_its_best_trial(tmp_path):
    sweep = tmp_path / "runs" / "sw"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"objective": "acc"}))
    # accuracy rises with steps: 0000 ends highest of the complete trials (0002 ends at step
    # 999); 0003, still running, is higher now but is no finished trial (the sweep's best)
    for name, n, total in (("0000", 40, 400), ("0001", 10, 400), ("0002", 20, 999), ("0003", 50, 1000)):
        write_run(sweep / "trials" / name, n=n, total=total)
    (sweep / "trials" / "0001" / "pruned.json").write_text(json.dumps({"why": "forecast"}))
    with open(sweep / "trials" / "0002" / "history.jsonl", "a") as f:  # lowest loss, not highest acc
        f.write(json.dumps({"type": "eval", "step": 999, "eval_mlm_acc": 0.01, "eval_mlm_loss": 0.1}) + "\n")
    write_run(tmp_path / "runs" / "plain")
    body = TestClient(create_app([tmp_path / "runs"])).get("/api/runs").json()
    (g,) = body["sweeps"]
    assert g["sweep"] == "sw" and g["metric"] == "eval_mlm_acc" and len(g["trials"]) == 4
    assert g["best"] == "sw/trials/0000" and g["pruned"] == ["sw/trials/0001"]
    by_id = {r["id"]: r for r in body["runs"]}
    assert by_id["sw/trials/0001"]["pruned"] and not by_id["sw/trials/0002"]["pruned"]
    assert "sweep" not in by_id["plain"]
    # a loss objective: the lowest is best
    (sweep / "sweep.json").write_text(json.dumps({"objective": "loss"}))
    (g,) = TestClient(create_app([tmp_path / "runs"])).get("/api/runs").json()["sweeps"]
    assert g["metric"] == "eval_mlm_loss" and g["best"] == "sw/trials/0002"


@pytest.mark.parametrize("age, words", [(45, r"no new history for 4[5-9] s"), (600, r"no new history for 1[01] min")])
def test_a_stalled_run_says_for_how_long(tmp_path, monkeypatch, age, words):
    """With --stall-after 3 a paused trainer read "stalled (no new history for 0 min)"."""
    import os
    import time

    import zhbert.runstate
    from zhbert.monitor import server
    run = write_run(tmp_path / "r")
    mtime = time.time() - age
    os.utime(run / "history.jsonl", (mtime, mtime))
    monkeypatch.setattr(zhbert.runstate, "run_state", lambda *a: "running")
    ref = server.RunSet([tmp_path]).runs
    summary = server.run_summary(next(iter(ref.values())), stall_after=3)
    assert re.fullmatch(rf"stalled \({words}\)", summary["state"]), summary["state"]  # a loaded machine adds seconds


def test_every_interface_is_served_with_a_warning(capsys):
    """`--host 0.0.0.0` put the runs on the network without a word (a newcomer's pass)."""
    bind("127.0.0.1", 0).close()
    assert "warning" not in capsys.readouterr().err
    bind("0.0.0.0", 0).close()
    assert "--host 0.0.0.0 serves the runs below the given folders to anyone" in capsys.readouterr().err


def test_an_empty_host_is_refused_not_every_interface():
    """`monitor --host ''` listened on every interface (bind's "" is INADDR_ANY) while the
    default is local-only (a bad-input pass)."""
    for host in ("", "  "):
        with pytest.raises(UserError, match="--host is empty, which would listen on every network interface"):
            bind(host, 0)
