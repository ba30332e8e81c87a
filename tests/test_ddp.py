"""Two CPU processes (gloo) against one: the multi-rank paths of `zhbert train`, run for
real with torchrun (or with torchrun's environment set by hand, where each rank needs
its own arguments). Everything but the first test is slow (several runs each)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zhbert.history import iter_records

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="torchrun/gloo tests on Linux")

NO_DROPOUT = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2",
              "model.intermediate_size=128", "model.hidden_dropout=0", "model.attention_dropout=0",
              "data.max_len=64", "data.eval_sequences=32", "train.precision=fp32",
              "train.steps=6", "train.log_every=1", "train.eval_every=6", "train.lr=1e-3",
              "train.warmup_steps=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _env(tmp_path):
    """The node's shared instance cache inside the test's folder, not the temp folder."""
    return {**ENV, "ZHBERT_CACHE_DIR": str(tmp_path / "instance-cache")}


TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2"]


def _cmd(prefix, data, run, batch, *extra):
    sets = sum((["--set", s] for s in NO_DROPOUT + [f"train.batch_size={batch}", *extra]), [])
    return prefix + ["-m", "zhbert", "train", "--data", str(data), "--out", str(run),
                     "--no-progress"] + sets


def _losses(run):
    return [r["loss"] for r in iter_records(Path(run) / "history.jsonl") if r["type"] == "train"]


def _events(run):
    return [r for r in iter_records(Path(run) / "history.jsonl") if r["type"] == "event"]


def _checkpoints(run):
    return sorted(p.name for p in (Path(run) / "checkpoints").glob("step_*"))


def _children(pid: int) -> list[int]:
    """The worker processes torchrun started (from /proc: no psutil here)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return sorted(kids)


def _wait_for(path: Path, proc, timeout=240):
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.05)


def _train_records_seen(run: Path) -> int:
    try:
        return sum(r["type"] == "train" for r in iter_records(run / "history.jsonl"))
    except (OSError, ValueError):
        return 0


def test_two_processes_match_one_with_the_same_global_batch(synthetic_data, tmp_path):
    subprocess.run(_cmd([sys.executable], synthetic_data, tmp_path / "one", 8), env=_env(tmp_path),
                   check=True, capture_output=True)
    r = subprocess.run(_cmd(TORCHRUN, synthetic_data, tmp_path / "two", 4), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    # Same samples, same initial weights, no dropout. The only difference: DDP averages
    # per-rank mean losses, one process averages over all masked tokens at once, so the
    # gradients differ slightly when the ranks' masked counts differ. Tolerance: 1%.
    assert one[0] == pytest.approx(two[0], rel=1e-4)
    for a, b in zip(one, two):
        assert a == pytest.approx(b, rel=1e-2)
    header = next(iter_records(tmp_path / "two" / "history.jsonl"))
    assert header["world_size"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_grad_accum_on_two_ranks_matches_one_process(synthetic_data, tmp_path, precision):
    """grad_accum=2 on 2 ranks (no_sync on the first micro-batch; in bf16 the fp32
    masters accumulate and are all-reduced) = 1 process with the whole global batch."""
    p = f"train.precision={precision}"
    subprocess.run(_cmd([sys.executable], synthetic_data, tmp_path / "one", 8, p), env=_env(tmp_path),
                   check=True, capture_output=True)
    r = subprocess.run(_cmd(TORCHRUN, synthetic_data, tmp_path / "two", 2, p, "train.grad_accum=2"),
                       env=_env(tmp_path), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    tol = 1e-2 if precision == "fp32" else 3e-2  # bf16: forward rounding differs by batch shape
    assert one[0] == pytest.approx(two[0], rel=tol / 10)
    for a, b in zip(one, two):
        assert a == pytest.approx(b, rel=tol)


@pytest.mark.slow
def test_kill9_of_one_rank_and_resume_equals_uninterrupted(synthetic_data, tmp_path):
    extra = ("train.steps=12", "train.checkpoint_every=4", "train.eval_every=100")
    ref, run = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run(_cmd(TORCHRUN, synthetic_data, ref, 4, *extra), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    proc = subprocess.Popen(_cmd(TORCHRUN, synthetic_data, run, 4, *extra), env=_env(tmp_path),
                            stderr=subprocess.PIPE, text=True)
    _wait_for(run / "checkpoints" / "step_00000004" / "meta.json", proc)
    os.kill(_children(proc.pid)[-1], signal.SIGKILL)
    assert proc.wait(timeout=120) != 0  # torchrun stops the job when a worker dies
    r = subprocess.run(_cmd(TORCHRUN, synthetic_data, run, 4, *extra) + ["--resume"], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from step" in r.stderr
    assert _losses(run) == pytest.approx(_losses(ref), rel=1e-6) and len(_losses(run)) == 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ranks_with_different_out_contents_fail_loudly(synthetic_data, tmp_path):
    """Node-local --out: rank 0's holds a checkpoint, rank 1's none. Resuming must stop
    both with one message, not start rank 1 from step 0 and drift."""
    extra = ("train.steps=8", "train.checkpoint_every=4")
    subprocess.run(_cmd([sys.executable], synthetic_data, tmp_path / "node0", 4, *extra),
                   env=_env(tmp_path), check=True, capture_output=True)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**_env(tmp_path), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(_cmd([sys.executable], synthetic_data, tmp_path / f"node{rank}",
                                           4, *extra) + ["--resume"],
                                      env=env, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, outs):
        # exit 2 (a user error); sometimes gloo then aborts the process at exit
        # ("terminate called without an active exception", -6): still a loud stop
        assert p.returncode in (2, -6), err[-2000:]
        assert "rank 0: step 8, rank 1: none" in err and "shared file system" in err
    assert _checkpoints(tmp_path / "node0") == ["step_00000004", "step_00000008"]


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_at_one_step_with_one_checkpoint(synthetic_data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(TORCHRUN, synthetic_data, run, 4, "train.steps=100000",
                                 "train.checkpoint_every=100000", "train.eval_every=100000"),
                            env=_env(tmp_path), stderr=subprocess.PIPE, text=True)
    _wait_for(run / "history.jsonl", proc)
    while _train_records_seen(run) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(_children(proc.pid)[-1], signal.SIGTERM)  # rank 1 only (torchrun forwards nothing)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    stop = [e for e in _events(run) if e["kind"] == "stop"]
    assert len(stop) == 1 and _checkpoints(run) == [f"step_{stop[0]['step']:08d}"]
    assert _losses(run)[-1] is not None and len(_losses(run)) == stop[0]["step"]
    assert "s after the signal (torchrun allows 30 s)" in stop[0]["message"]
