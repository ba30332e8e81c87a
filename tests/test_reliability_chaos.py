"""Chaos: a 300-step `tiny` run killed with SIGKILL at 5 random moments (some while a
checkpoint is being written) and resumed each time ends with the history of a run
that never stopped: every train and eval record, none lost, none doubled.

Slow (about 10 minutes on 2 cores, two full runs): ``pytest -m slow
tests/test_reliability_chaos.py``; ``python tests/test_reliability_chaos.py`` prints
the figures as JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zhbert.history import iter_records

STEPS, KILLS, SEED = 300, 5, 18
SETS = [f"train.steps={STEPS}", "train.checkpoint_every=25", "train.keep_last=3",
        "train.eval_every=50", "train.log_every=5"]
TIMING = {"elapsed", "tokens_per_s", "data_wait"}  # wall-clock figures: never equal between two runs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def _cmd(data: Path, run: Path) -> list[str]:
    cmd = [sys.executable, "-m", "zhbert", "train", "--data", str(data), "--out", str(run),
           "--config", "tiny", "--no-progress", "--threads", "1"]
    for s in SETS:
        cmd += ["--set", s]
    return cmd


def _records(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in iter_records(run / "history.jsonl") if r["type"] in ("train", "eval")]


def _partial(run: Path) -> bool:
    return any((run / "checkpoints").glob(".step_*.partial"))


def _progress(run: Path) -> tuple[int, int]:
    """(headers, last logged step) of the history: a start or resume adds a header."""
    try:
        records = list(iter_records(run / "history.jsonl"))
    except Exception:  # not there yet
        return 0, 0
    return (sum(r["type"] == "header" for r in records),
            max((r["step"] for r in records if r["type"] == "train"), default=0))


def _kill_once(cmd: list[str], run: Path, target: int, during_save: bool, rng: random.Random,
               log) -> dict:
    """Start (or resume) the run, SIGKILL it once it has logged step ``target``: at once,
    a random moment later, or inside the next checkpoint save; what happened."""
    headers = _progress(run)[0]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=log)
    started = time.time()
    try:  # this process's header first: until then the steps logged are the last one's
        while _progress(run)[0] == headers or _progress(run)[1] < target:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        if during_save:
            while not _partial(run):
                assert proc.poll() is None, "the run ended before a save could be hit"
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            time.sleep(rng.uniform(0.0, 2.0))
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # a save's unfinished directory exists from its first byte to its rename: still
    # there after the kill means the kill hit a save
    return {"after_step": target, "during_save": _partial(run),
            "seconds": round(time.time() - started, 1)}


def chaos(root: Path) -> dict:
    from synthetic import make_data_dir

    data = make_data_dir(root / "data")
    ref, run = root / "ref", root / "run"
    rng = random.Random(SEED)
    with open(root / "ref.log", "wb") as log:
        subprocess.run(_cmd(data, ref), env=ENV, stderr=log, check=True)
    kills = []
    with open(root / "run.log", "wb") as log:
        # kill moments spread over the run (so that it gets on between them), each a
        # logged step chosen at random; every other kill aims at a checkpoint save
        targets = sorted(rng.sample(range(5, STEPS - 40, 5), KILLS))
        for i, target in enumerate(targets):
            cmd = _cmd(data, run) + (["--resume"] if i else [])
            kills.append(_kill_once(cmd, run, target, i % 2 == 1, rng, log))
        subprocess.run(_cmd(data, run) + ["--resume"], env=ENV, stderr=log, check=True)
    stderr = (root / "run.log").read_text(errors="replace")
    want, got = _records(ref), _records(run)
    return {"kills": kills, "kills_during_save": sum(k["during_save"] for k in kills),
            "records": len(want), "lost": sum(r not in got for r in want),
            "extra": len(got) - len(want), "identical": got == want,
            "partial_removed": stderr.count("unfinished checkpoint"),
            "resumes": stderr.count("resuming from step")}


@pytest.mark.slow
def test_chaos_kills_lose_nothing(tmp_path):
    figures = chaos(tmp_path)
    print(json.dumps(figures))
    assert len(figures["kills"]) == KILLS and figures["resumes"] == KILLS
    assert figures["kills_during_save"] >= 1
    assert figures["lost"] == 0 and figures["extra"] == 0 and figures["identical"]


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(chaos(Path(tmp)), indent=2))
