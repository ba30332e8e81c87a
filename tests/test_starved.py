"""`status` says when a running run is starved of CPU (synthetic histories, no timing)."""

import json
import os
import socket

from zhbert.cli import main as cli_main
from zhbert.runlock import WriterLock, lock_path
from zhbert.runstate import Competition, collect, length_phase_end, starvation

BUSY = Competition(load=4.0, cores=2, other_trainings=1)
QUIET = Competition(load=1.9, cores=2, other_trainings=0)
HEADER = {"type": "header", "total_steps": 1000, "precision": "bf16",
          "machine": "AMD EPYC (avx512; avx512_bf16) · 4 threads · torch 2.13.0",
          "config": {"data": {"warmup_len": 16, "warmup_len_fraction": 0.2},
                     "train": {"steps": 1000}}}


def _train(speeds, start=10, every=10):
    return [{"type": "train", "step": start + i * every, "elapsed": float(i + 1),
             "tokens_per_s": v, "loss": 3.0, "mlm_acc": 0.2, "lr": 1e-3}
            for i, v in enumerate(speeds)]


def test_recent_speed_far_below_its_best_while_others_compete_is_starved():
    recs = _train([8000.0] * 10 + [3000.0] * 5, start=210)
    s = starvation(recs, HEADER, BUSY)
    assert s is not None and s.recent_tokens_per_s == 3000.0 and s.best_tokens_per_s == 8000.0
    advice = s.advice()
    assert advice.startswith("starved: 3,000 tokens/s, 38% of its best 8,000; ")
    assert "1 other zhbert training runs on the 2 cores" in advice
    assert "other work keeps the load at 4.0 on 2 cores" in advice
    assert "--resume --threads 1" in advice


def test_the_advice_names_only_the_competition_there_is():
    recs = _train([8000.0] * 10 + [3000.0] * 5, start=210)
    sharing = starvation(recs, HEADER, Competition(load=2.0, cores=2, other_trainings=2)).advice()
    assert "2 other zhbert trainings run on the 2 cores" in sharing
    assert "--threads" not in sharing.split("(")[0] and "other work" not in sharing
    eight = {**HEADER, "machine": "AMD EPYC (avx512; avx512_bf16) · 8 threads · torch 2.13.0"}
    loaded = starvation(recs, eight, Competition(load=6.5, cores=4, other_trainings=0)).advice()
    assert "zhbert training" not in loaded
    assert "load at 6.5 on 4 cores" in loaded and "--resume --threads 4" in loaded
    # its 4 threads are its share already: fewer threads would not help it
    as_is = starvation(recs, HEADER, Competition(load=6.5, cores=4, other_trainings=0)).advice()
    assert "--threads" not in as_is and "once the load is gone" in as_is


def test_not_starved_when_nothing_competes_or_the_drop_is_small():
    slow = _train([8000.0] * 10 + [3000.0] * 5, start=210)
    assert starvation(slow, HEADER, QUIET) is None  # slower for some other reason
    assert starvation(_train([8000.0] * 10 + [6000.0] * 5, start=210), HEADER, BUSY) is None
    # half its best is the line (dips to ~60% happen to a run alone on a shared machine)
    assert starvation(_train([8000.0] * 10 + [4100.0] * 5, start=210), HEADER, BUSY) is None
    assert starvation(_train([8000.0] * 10 + [3900.0] * 5, start=210), HEADER, BUSY) is not None
    assert starvation(_train([8000.0] * 6 + [3000.0] * 3, start=210), HEADER, BUSY) is None  # too few
    # the load alone (no other zhbert training) is competition when it exceeds the cores
    assert starvation(slow, HEADER, Competition(2.5, 2, 0)) is not None


def test_speeds_are_compared_at_the_same_sequence_length():
    """The length warm-up's short sequences run at another speed: leaving it is no
    starvation, and its fast records are not the long phase's best."""
    assert length_phase_end(HEADER) == 200
    assert length_phase_end({"config": {"data": {"warmup_len": 0}, "train": {"steps": 9}}}) == 0
    recs = _train([20000.0] * 20 + [8000.0] * 6, start=10)  # steps 10..200 short, then long
    assert recs[19]["step"] == 200
    assert starvation(recs, HEADER, BUSY) is None
    recs = _train([20000.0] * 20 + [8000.0] * 10 + [3000.0] * 5, start=10)
    assert starvation(recs, HEADER, BUSY).best_tokens_per_s == 8000.0


def _running_run(tmp_path, speeds):
    run = tmp_path / "run"
    run.mkdir()
    recs = [HEADER, *_train(speeds, start=210)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "running.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    # a running run's trainer holds its lock (this process, for the rest of the session)
    _HELD.append(WriterLock(lock_path(run / "train"), "zhbert train").acquire())
    return run


_HELD: list = []


def test_status_shows_the_starved_line_for_a_running_run(tmp_path, monkeypatch, capsys):
    run = _running_run(tmp_path, [8000.0] * 10 + [3000.0] * 5)
    monkeypatch.setenv("ZHBERT_TRAINERS_DIR", str(tmp_path / "registry"))
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    s = collect(run)
    assert s["state"] == "running" and s["starved"]["recent_tokens_per_s"] == 3000.0
    assert cli_main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "cpu        starved: 3,000 tokens/s" in out and "the load at 5.0 on" in out
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert collect(run)["starved"] is None
    assert cli_main(["status", str(run)]) == 0
    assert "cpu        " not in capsys.readouterr().out


def test_other_trainings_are_counted_but_not_the_run_itself(tmp_path, monkeypatch):
    from zhbert.threads import ThreadShare

    run = _running_run(tmp_path, [8000.0] * 10 + [3000.0] * 5)
    registry = tmp_path / "registry"
    monkeypatch.setenv("ZHBERT_TRAINERS_DIR", str(registry))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # fixed: registering leaves torch's count
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    with ThreadShare(None, run=run):  # the run's own trainer
        assert collect(run)["starved"] is None
        with ThreadShare(None, run=tmp_path / "other"):
            assert collect(run)["starved"]["competition"]["other_trainings"] == 1


def test_a_stopped_run_is_never_starved(tmp_path, monkeypatch):
    run = _running_run(tmp_path, [8000.0] * 10 + [3000.0] * 5)
    (run / "running.json").unlink()
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    s = collect(run)
    assert s["state"].startswith("stopped") and s["starved"] is None
