"""Two CPU ranks (gloo) against one process: the multi-rank paths of `zhbert train`, run
for real. One run goes through torchrun, as users start it; the others are ranks
forked from a multiprocessing forkserver that has imported torch, zhbert and what the
trainer imports on first use (torch._dynamo, scipy.stats), each rank running the CLI
with torchrun's environment. Those imports are ~3 s of CPU per process, most of what
a short run costs: forked, a two-rank run takes well under a second. A forked rank
ends with os._exit (multiprocessing's way): the torchrun run is the one that also
checks a normal interpreter exit with a gloo group open."""

import json
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zhbert.history import iter_records

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="torchrun/gloo tests on Linux")

SETS = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=128", "model.hidden_dropout=0", "model.attention_dropout=0",
        "data.max_len=64", "data.eval_sequences=16", "train.precision=fp32", "train.steps=8",
        "train.log_every=1", "train.eval_every=100", "train.checkpoint_every=4",
        "train.lr=1e-3", "train.warmup_steps=2"]
GLOBAL_8 = ("train.batch_size=2", "train.grad_accum=2")  # x 2 ranks: the global batch of 8
TIMEOUT = 240  # seconds for one run: generous, the machine is shared


def _argv(data, run, *extra, resume=False):
    sets = sum((["--set", s] for s in SETS + list(extra)), [])
    return (["train", "--data", str(data), "--out", str(run), "--no-progress", "--threads", "1"]
            + sets + (["--resume"] if resume else []))


def _records(run, kind):
    return [r for r in iter_records(Path(run) / "history.jsonl") if r["type"] == kind]


def _losses(run):
    return [r["loss"] for r in _records(run, "train")]


def _train_records_seen(run) -> int:
    """While a run writes: its history may not exist yet."""
    return len(_records(run, "train")) if (Path(run) / "history.jsonl").exists() else 0


def _checkpoints(run):
    return sorted(p.name for p in (Path(run) / "checkpoints").glob("step_*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- forked ranks

STARTED: list = []  # every forked rank, to stop those a failed test leaves running


@pytest.fixture(scope="module")
def forks():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["zhbert.cli", "zhbert.train", "zhbert.evaluate", "torch._dynamo",
                                "torch.distributed", "torch.nn.parallel", __name__])
    yield ctx
    for p in STARTED:
        if p.is_alive():
            p.kill()
            p.join()
    # the server holds ~360 MB of imports: give them back to the rest of the suite
    # (a private method, meant for tests; a later forkserver user starts a new server)
    stop = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def _rank(env: dict, argv: list, log: str, fault: str | None) -> None:
    """A forked rank: torchrun's environment, output to ``log``, an optional fault
    (a function of this module, given the rank), then `zhbert train`."""
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if fault:
        globals()[fault](int(env.get("RANK", "0")))
    from zhbert.cli import main
    sys.exit(main(argv))


class Ranks:
    """``zhbert train`` on one forked rank per argv (one argv: a single process)."""

    def __init__(self, forks, tmp: Path, argvs: list[list[str]], fault: str | None = None):
        port, world = _free_port(), len(argvs)
        self.logs = [tmp / f"rank{r}-{time.monotonic_ns()}.log" for r in range(world)]
        self.procs = []
        for r, argv in enumerate(argvs):
            env = {"ZHBERT_CACHE_DIR": str(tmp / "instance-cache")}
            if world > 1:
                env.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                           LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            self.procs.append(forks.Process(target=_rank, args=(env, argv, str(self.logs[r]), fault),
                                            daemon=True))
            STARTED.append(self.procs[-1])
            self.procs[-1].start()

    def log(self, rank: int) -> str:
        return self.logs[rank].read_text(errors="replace") if self.logs[rank].exists() else ""

    def wait(self) -> list[int]:
        end = time.monotonic() + TIMEOUT
        for p in self.procs:
            p.join(max(1.0, end - time.monotonic()))
        if any(p.is_alive() for p in self.procs):
            for p in self.procs:
                p.kill()
            pytest.fail("ranks still running after %d s:\n%s" % (TIMEOUT, self.log(0)[-3000:]))
        return [p.exitcode for p in self.procs]

    def ok(self) -> None:
        codes = self.wait()
        assert codes == [0] * len(codes), "\n".join(self.log(r)[-2000:] for r in range(len(codes)))


def _train(forks, tmp, data, run, *extra, world=2, resume=False, fault=None) -> Ranks:
    return Ranks(forks, tmp, [_argv(data, run, *extra, resume=resume)] * world, fault)


# ----------------------------------------------------------------------------- reference runs

@pytest.fixture(scope="module")
def one(forks, synthetic_data, tmp_path_factory):
    """One process, batch 8, fp32: 8 steps, checkpoints at 4 and 8."""
    tmp = tmp_path_factory.mktemp("one")
    _train(forks, tmp, synthetic_data, tmp / "run", "train.batch_size=8", world=1).ok()
    return tmp / "run"


@pytest.fixture(scope="module")
def two(synthetic_data, tmp_path_factory):
    """The same global batch on two ranks started by torchrun: 2 sequences x 2
    micro-batches each (no_sync on the first), as `python -m zhbert` in new processes."""
    tmp = tmp_path_factory.mktemp("two")
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZHBERT_CACHE_DIR": str(tmp / "instance-cache")}
    r = subprocess.run(torchrun + ["-m", "zhbert"] + _argv(synthetic_data, tmp / "run", *GLOBAL_8),
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run"


def _assert_same_training(one, two, first, rest):
    """Same samples, same initial weights, no dropout. What differs: DDP averages the
    ranks' mean losses, one process averages over all masked tokens at once, so the
    gradients differ slightly where the ranks' masked counts differ."""
    a, b = _records(one, "train"), _records(two, "train")
    assert len(a) == len(b) == 8
    loss, norm = ([r[k] for r in a] for k in ("loss", "grad_norm"))
    assert loss[0] == pytest.approx(b[0]["loss"], rel=first)  # before any update: the same batch
    assert norm[0] == pytest.approx(b[0]["grad_norm"], rel=10 * first)
    assert loss == pytest.approx([r["loss"] for r in b], rel=rest)
    # the gradients are the global batch's: ranks that stepped on their own half (no
    # all-reduce) log the same losses within 1% but gradient norms ~30% larger
    assert norm == pytest.approx([r["grad_norm"] for r in b], rel=0.05)
    assert sum(loss[4:]) < sum(loss[:4]) - 0.1  # it trained (a run that never updated would match too)


# Measured on the CPU (AVX512-BF16 EPYC), fp32 and bf16: losses at most 3e-5 apart at step 1
# and 7e-4 after; gradient norms 6e-4 at step 1 and 1.7% after. With the batch-wide masking
# draws (other tokens masked, the same counts) the step-1 losses came 1.0e-4 apart, gradient
# norms 3e-4: how far the mean of the micro-batches' means is from the mean over all
# tokens depends on which tokens are masked. The tolerances leave room for that and for
# other CPUs' kernels.

def test_two_ranks_accumulating_match_one_process(one, two):
    _assert_same_training(one, two, first=3e-4, rest=3e-3)
    assert _records(two, "header")[0]["world_size"] == 2
    # the same sequences, so the same real tokens: every rank's, summed (sequences of
    # 8-40-token sentences pad differently on each rank; rank 0's count x 2 was off)
    for kind in ("train", "eval"):
        assert [r["tokens"] for r in _records(two, kind)] == [r["tokens"] for r in _records(one, kind)]


def test_two_ranks_accumulating_in_bf16_match_one_process(forks, synthetic_data, tmp_path):
    """bf16: the fp32 masters accumulate the micro-batches and are all-reduced in fp32
    (no DDP on the bf16 copy)."""
    bf16 = "train.precision=bf16"
    _train(forks, tmp_path, synthetic_data, tmp_path / "one", "train.batch_size=8", bf16, world=1).ok()
    _train(forks, tmp_path, synthetic_data, tmp_path / "two", *GLOBAL_8, bf16).ok()
    _assert_same_training(tmp_path / "one", tmp_path / "two", first=1e-3, rest=1e-2)


# ----------------------------------------------------------------------------- kills, signals

def _sigkill_rank1_at_step_6(rank: int) -> None:
    """Rank 1 dies by SIGKILL as step 6 starts: after checkpoint 4 and after rank 0 has
    logged step 5 (rank 1 leaves each collective write only once rank 0 has written)."""
    if rank != 1:
        return
    import zhbert.trainloop as T
    real = T.train_step

    def step(tr, n):
        if n == 6:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(tr, n)

    T.train_step = step


def test_kill9_of_one_rank_and_resume_equals_uninterrupted(forks, synthetic_data, tmp_path, two):
    run = tmp_path / "run"
    killed = _train(forks, tmp_path, synthetic_data, run, *GLOBAL_8, fault="_sigkill_rank1_at_step_6")
    codes = killed.wait()
    assert codes[1] == -signal.SIGKILL
    assert codes[0] != 0, killed.log(0)[-2000:]  # rank 0 stops on the broken collective, no hang
    # in one line that points at the other rank's log and the resume, not gloo's traceback
    assert "another process of this run stopped" in killed.log(0) and "Traceback" not in killed.log(0)
    assert [r["step"] for r in _records(run, "train")] == [1, 2, 3, 4, 5]
    assert _checkpoints(run) == ["step_00000004"]
    resumed = _train(forks, tmp_path, synthetic_data, run, *GLOBAL_8, resume=True)
    resumed.ok()
    assert "resuming from step 4 (step_00000004); 1 history records after it dropped" in resumed.log(0)
    # bit for bit on the CPU with the same thread count, torchrun or not
    assert _losses(run) == _losses(two) and len(_losses(run)) == 8
    assert [r["tokens"] for r in _records(run, "train")] == [r["tokens"] for r in _records(two, "train")]


def test_ranks_with_different_out_contents_fail_loudly(forks, synthetic_data, tmp_path, one):
    """Node-local --out: rank 0's holds the run's checkpoints, rank 1's none. Resuming must
    stop both with one message, not start rank 1 from step 0 and drift."""
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    shutil.copytree(one, node0)
    argvs = [_argv(synthetic_data, out, "train.batch_size=8", resume=True) for out in (node0, node1)]
    ranks = Ranks(forks, tmp_path, argvs)
    assert ranks.wait() == [2, 2], ranks.log(0)[-2000:]
    for r in range(2):
        assert "rank 0: step 8, rank 1: none" in ranks.log(r) and "shared file system" in ranks.log(r)
    assert _checkpoints(node0) == ["step_00000004", "step_00000008"] and _checkpoints(node1) == []


def test_sigterm_to_one_rank_stops_both_at_one_step_with_one_checkpoint(forks, synthetic_data, tmp_path):
    run = tmp_path / "run"
    ranks = _train(forks, tmp_path, synthetic_data, run, "train.batch_size=4", "train.steps=100000",
                   "train.checkpoint_every=100000")
    end = time.monotonic() + TIMEOUT
    while _train_records_seen(run) < 2:
        assert all(p.is_alive() for p in ranks.procs), ranks.log(0)[-3000:]
        assert time.monotonic() < end, "no training records"
        time.sleep(0.02)
    os.kill(ranks.procs[1].pid, signal.SIGTERM)  # rank 1 only (torchrun forwards nothing)
    ranks.ok()
    stop = [e for e in _records(run, "event") if e["kind"] == "stop"]
    assert len(stop) == 1 and _checkpoints(run) == [f"step_{stop[0]['step']:08d}"]
    assert [r["step"] for r in _records(run, "train")] == list(range(1, stop[0]["step"] + 1))
    assert "s after the signal (torchrun allows 30 s)" in stop[0]["message"]


# ----------------------------------------------------------------------------- rank-0 failures

def _disk_full_on_rank0_from_step_2(rank: int) -> None:
    if rank != 0:
        return
    from zhbert.history import HistoryWriter
    real = HistoryWriter.write

    def write(self, rec):
        if rec.get("type") == "train" and rec["step"] >= 2:
            raise OSError(28, "No space left on device")
        return real(self, rec)

    HistoryWriter.write = write


def test_a_rank0_write_failure_stops_both_ranks_with_its_message(forks, synthetic_data, tmp_path):
    ranks = _train(forks, tmp_path, synthetic_data, tmp_path / "run", "train.batch_size=4",
                   fault="_disk_full_on_rank0_from_step_2")
    assert ranks.wait() == [1, 2]  # rank 0: its own exception (a traceback); rank 1: a user error
    assert "OSError: [Errno 28] No space left on device" in ranks.log(0)
    assert "zhbert: error: rank 0 failed: OSError: [Errno 28] No space left on device" in ranks.log(1)


def test_rank0s_held_out_set_failing_stops_both_ranks(forks, tmp_path):
    from synthetic import make_data_dir
    data = make_data_dir(tmp_path / "data", n_docs=(200, 1, 20))  # one held-out document
    ranks = _train(forks, tmp_path, data, tmp_path / "run", "train.batch_size=4")
    assert ranks.wait() == [2, 2]
    assert "at least 2 documents per split" in ranks.log(0)
    assert "rank 0 failed" in ranks.log(1) and "at least 2 documents per split" in ranks.log(1)


# ----------------------------------------------------------------------------- --minutes

def _rank1_steps_twice_as_slow(rank: int) -> None:
    """``train --minutes`` timing: rank 1's steps cost 0.2 s, rank 0's 0.1 s."""
    import zhbert.budget as B
    B.step_seconds = lambda step, first=1: [step(i) for i in (1, 2)] and (0.2 if rank else 0.1)


def test_minutes_under_torchrun_take_the_slowest_ranks_steps(forks, synthetic_data, tmp_path):
    """Every rank times its own steps; they must agree on one count (a rank stopping early
    would hang the others in a collective), and the slowest rank's is the one that fits."""
    run = tmp_path / "run"
    argv = _argv(synthetic_data, run, *GLOBAL_8)
    at = argv.index("train.steps=8")
    argv = argv[:at - 1] + argv[at + 1:] + ["--minutes", "0.2", "--set", "train.eval_every=10"]
    ranks = Ranks(forks, tmp_path, [argv, argv], fault="_rank1_steps_twice_as_slow")
    ranks.ok()
    steps = json.loads((run / "config.json").read_text())["config"]["train"]["steps"]
    # 12 s at 0.2 s a step, less rank 0's evaluations: at most 60, far below rank 0's 120
    assert 20 < steps <= 60, steps
    assert f"train.steps = {steps}" in ranks.log(0)
    assert _records(run, "train")[-1]["step"] == steps


# ----------------------------------------------------------------------------- a non-finite loss

def _inf_loss_on_rank1_at_step_3(rank: int) -> None:
    """Rank 1's loss reads inf at step 3 while the gradients stay finite (a cross-entropy
    whose label logit is -inf has a finite gradient): rank 0's loss is finite."""
    if rank != 1:
        return
    import zhbert.trainloop as T
    real_step, real_stats = T.train_step, T._step_stats
    at = {"step": 0}

    def step(tr, n):
        at["step"] = n
        return real_step(tr, n)

    def stats(out):
        s = real_stats(out)
        if at["step"] == 3:
            s[0] = float("inf")
        return s

    T.train_step, T._step_stats = step, stats


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(forks, synthetic_data, tmp_path):
    """Every rank must take or skip a step alike: a rank that skips alone waits in a
    collective the others never join (they went on to the next step's)."""
    run = tmp_path / "run"
    ranks = _train(forks, tmp_path, synthetic_data, run, *GLOBAL_8, fault="_inf_loss_on_rank1_at_step_3")
    ranks.ok()
    skipped = [r["step"] for r in _records(run, "event") if r["kind"] == "nonfinite_loss"]
    assert skipped == [3]
    assert [r["step"] for r in _records(run, "train")] == [1, 2, 4, 5, 6, 7, 8]
