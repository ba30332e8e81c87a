"""benchmarks.shared_machine: each behaviour's command line, and what a sample reads."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmarks import shared_machine as sm


def test_each_behaviour_starts_training_as_it_says(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    data, run = Path("d"), Path("r")
    cmds = {b: sm.train_command(b, data, run, cores=2) for b in sm.BEHAVIOURS}
    for cmd, env in cmds.values():  # the caller's own settings never leak in
        assert "OMP_NUM_THREADS" not in env and cmd[cmd.index("--data") + 1] == "d"
    new, env = cmds["new"]
    assert new[:3] == [sys.executable, "-m", "zhbert"] and "--threads" not in new
    assert "OMP_WAIT_POLICY" not in env  # zhbert.train sets it
    old, env = cmds["old"]
    assert old[1] == "-c" and "import sys, torch" in old[2]  # libgomp loads before zhbert
    assert old[old.index("--threads") + 1] == "2" and "OMP_WAIT_POLICY" not in env
    spin, _ = cmds["share-spin"]
    assert spin[1] == "-c" and "--threads" not in spin
    passive, env = cmds["all-passive"]
    assert passive[passive.index("--threads") + 1] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_sample_reads_the_last_train_records_tokens_and_the_cpu_time(tmp_path):
    history = tmp_path / "history.jsonl"
    assert sm.sample(os.getpid(), history)[1] == 0  # not written yet
    recs = [{"type": "header"}, {"type": "train", "step": 1, "tokens": 100},
            {"type": "eval", "step": 1, "tokens": 100}, {"type": "train", "step": 2, "tokens": 250}]
    history.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"type": "train", "tok')
    now, tokens, cpu = sm.sample(os.getpid(), history)
    assert tokens == 250 and cpu > 0
