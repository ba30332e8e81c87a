"""Bad values for data report, data text, prepare, eval, probe and fill-mask: one line and
exit 2, nothing written; and probe's results reused only where every setting matches."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from cli_helpers import HUGE, parse, refused
from zhbert.cli import main
from zhbert.threads import available_cores

DOCS = ("今天天气很好，我们一起去公园散步吧。", "明天可能会下雨，记得带上雨伞出门。",
        "这本书写得非常精彩，值得一读再读。", "他每天早上六点起床去跑步锻炼身体。")


FIRST = {("data", "report"): ["DATA"], ("data", "text"): ["DATA"], ("prepare",): ["--out", "X"],
         ("eval",): ["RUN"], ("probe",): ["RUN", "--task", "sentiment"],
         ("fill-mask",): ["MODEL", "北京[MASK]"]}


@pytest.mark.parametrize("command, argv", [
    # checks that always passed: a share of 5, a nan or infinite length
    (("data", "report"), ["--max-dup-rate", "5"]), (("data", "report"), ["--max-dup-rate", "nan"]),
    (("data", "report"), ["--avg-len", "nan,nan"]), (("data", "report"), ["--avg-len", "0,inf"]),
    (("data", "report"), ["--min-sentences=-1"]), (("data", "report"), ["--min-vocab=-1"]),
    (("data", "text"), ["--limit=-1"]),
    # 0 silently became the default (a truthiness `or`)
    (("prepare",), ["--vocab-size", "0"]), (("prepare",), ["--max-sentence-chars", "0"]),
    (("prepare",), ["--vocab-size", HUGE]),  # an OverflowError in the WordPiece trainer
    (("prepare",), ["--workers", "0"]), (("prepare",), ["--workers", "1000000"]),
    (("prepare",), ["--workers", str(available_cores() + 1)]),
    (("prepare",), ["--validation", "0.5"]), (("prepare",), ["--test", "nan"]),
    (("prepare",), ["--dedup-threshold", "0"]), (("prepare",), ["--dedup-ngram", "65"]),
    (("prepare",), ["--min-script-ratio", "1.5"]), (("prepare",), ["--min-sentence-chars", "0"]),
    (("prepare",), ["--min-split-docs=-1"]), (("prepare",), ["--min-freq", "0"]),
    (("prepare",), ["--limit-docs", "0"]),
    (("eval",), ["--max-sequences", "0"]),
    (("probe",), ["--epochs", "0"]), (("probe",), ["--epochs", HUGE]), (("probe",), ["--max-train", "0"]),
    (("probe",), ["--lr", "nan"]), (("probe",), ["--lr", "inf"]), (("probe",), ["--lr", "0"]),
    (("fill-mask",), ["--top-k", "0"]), (("fill-mask",), ["--batch-size", "0"]),
])
def test_option_values_out_of_range_are_refused_by_the_parser(command, argv):
    with pytest.raises(SystemExit) as exc:
        parse(command, [*FIRST[command], *argv])
    assert exc.value.code == 2


@pytest.mark.parametrize("command, argv", [
    (("data", "report"), ["--max-dup-rate", "0"]), (("data", "report"), ["--max-dup-rate", "1"]),
    (("data", "report"), ["--avg-len", "0,0"]), (("data", "report"), ["--min-sentences", "0"]),
    (("data", "text"), ["--limit", "1e2"]), (("prepare",), ["--workers", str(available_cores())]),
    (("prepare",), ["--validation", "0"]), (("prepare",), ["--dedup-threshold", "1"]),
    (("prepare",), ["--vocab-size", "6"]), (("eval",), ["--max-sequences", HUGE]),
    (("fill-mask",), ["--top-k", HUGE]),  # more than the vocabulary: all of it, with a warning
])
def test_the_ends_of_the_ranges_are_taken(command, argv):
    """A refusal is argparse's SystemExit, which fails this test."""
    assert parse(command, [*FIRST[command], *argv]) is not None


# ----------------------------------------------------------------------------- prepare

def _article(d: Path) -> Path:
    f = d / "four.txt"
    f.write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")  # four documents
    return f


@pytest.mark.parametrize("option", ["--vocab-size", "--max-sentence-chars"])
def test_prepare_zero_is_refused_not_the_default(tmp_path, capsys, option):
    err = refused(["prepare", str(_article(tmp_path)), "--out", str(tmp_path / "out"),
                   "--workers", "1", option, "0"], capsys)
    assert option in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    # the default maximum is 256: the error named CleanConfig's fields, not the options
    (["--min-sentence-chars", "300"], "--min-sentence-chars 300 exceeds --max-sentence-chars 256 "
                                      "(the default for Chinese)"),
    (["--min-sentence-chars", "20", "--max-sentence-chars", "10"], "lower the one or raise the other"),
    # 4 documents, two shares just under one half: all held out, an empty train split written
    (["--validation", "0.49", "--test", "0.49", "--min-split-docs", "0"], "leaving none to train on"),
    # a --min-freq above every count: a vocabulary of the 5 specials, every token [UNK]
    (["--min-freq", "1000000"], "--min-freq 1,000,000 leaves the vocabulary empty"),
])
def test_prepare_settings_that_leave_nothing_are_refused(tmp_path, capsys, extra, message):
    argv = ["prepare", str(_article(tmp_path)), "--out", str(tmp_path / "out"), "--workers", "1"]
    try:
        rc = main(argv + extra)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_prepare_empty_source_and_out_name_themselves(tmp_path, capsys, monkeypatch):
    """A SOURCE '' was the working directory (in a checkout: the .venv too); --out '' was
    named as '.'."""
    monkeypatch.chdir(tmp_path)
    _article(tmp_path)
    err = refused(["prepare", "", "--out", str(tmp_path / "out"), "--workers", "1"], capsys)
    assert "SOURCE ''" in err and not (tmp_path / "out").exists()
    err = refused(["prepare", "four.txt", "--out", "", "--workers", "1"], capsys)
    assert "--out: '' names no folder" in err


# ----------------------------------------------------------------------------- probe

@pytest.fixture()
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _task(path: Path, n: int = 60, flip: bool = False) -> Path:
    rows = [{"text": f"{'好' if i % 2 else '坏'}的东西{i}", "label": str((i % 2) ^ flip)} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "probe.jsonl").read_text().splitlines()]


def test_probe_reuses_a_result_only_with_the_same_settings(run, tmp_path, capsys):
    """Keyed by (step, task, mode), a rerun with another --max-train, --seed or --lr, or an
    edited task file of the same name, reprinted the old accuracy as if new."""
    task = _task(tmp_path / "t.jsonl")
    base = ["probe", str(run), "--checkpoint", "30", "--task-file", str(task)]
    linear = [*base, "--linear", "--max-train", "20"]
    assert main(linear) == 0
    assert main(linear) == 0 and len(_records(run)) == 1  # the same settings: reused
    assert "with these settings" in capsys.readouterr().err
    assert main([*linear, "--lr", "1e-3", "--epochs", "5"]) == 0  # no epochs or lr in a linear probe
    assert len(_records(run)) == 1
    assert main([*base, "--linear", "--max-train", "30"]) == 0
    assert main([*linear, "--seed", "1"]) == 0
    _task(task, flip=True)
    assert main(linear) == 0
    finetune = [*base, "--max-train", "16", "--epochs", "1"]
    assert main(finetune) == 0 and main([*finetune, "--lr", "1e-3"]) == 0
    recs = _records(run)
    assert [(r["mode"], r["n_train"], r["seed"], r["lr"]) for r in recs] == [
        ("linear", 20, 0, None), ("linear", 30, 0, None), ("linear", 20, 1, None),
        ("linear", 20, 0, None), ("finetune", 16, 0, 1e-4), ("finetune", 16, 0, 1e-3)]
    assert recs[0]["task_sha256"] != recs[3]["task_sha256"]  # the edited file
    # each setting's study in its own file (probe_vs_mlm.json is the default sentiment study's)
    studies = [json.loads(p.read_text()) for p in (run / "probe").glob("probe_vs_mlm-*.json")]
    assert ("finetune", 1e-3, 1) in [(s["mode"], s["lr"], s["n"]) for s in studies]
    assert not (run / "probe" / "probe_vs_mlm.json").exists()


def test_a_probe_result_from_before_the_settings_were_kept_is_reused_at_the_defaults(run, tmp_path):
    """Records written before the settings were kept (task, mode, n_train, epochs alone)
    matched nothing: the next probe re-fine-tuned every checkpoint without a word (a review)."""
    task = _task(tmp_path / "t.jsonl")
    linear = ["probe", str(run), "--checkpoint", "30", "--task-file", str(task), "--linear", "--max-train", "20"]
    assert main(linear) == 0
    rec = _records(run)[0]
    old = {k: v for k, v in rec.items() if k not in ("task_sha256", "seed", "batch_size", "lr")}
    (run / "probe.jsonl").write_text(json.dumps(old) + "\n", encoding="utf-8")
    assert main(linear) == 0 and len(_records(run)) == 1  # reused at the default settings
    assert main([*linear, "--seed", "1"]) == 0 and len(_records(run)) == 2  # not at others


@pytest.mark.parametrize("name, message", [
    ("", "--task-file '' names no file"),  # taken for no --task-file: a traceback
    ("dir", "is a directory, not a file"),
    ("/proc/self/mem", "/proc/self/mem cannot be read (Input/output error)"),
])
def test_probe_task_file_that_is_no_file(run, tmp_path, capsys, name, message):
    (tmp_path / "dir").mkdir()
    path = name if name in ("", "/proc/self/mem") else str(tmp_path / name)
    err = refused(["probe", str(run), "--task-file", path], capsys)
    assert message in err and "CSV/TSV/JSONL" in err and not (run / "probe.jsonl").exists()


# ----------------------------------------------------------------------------- fill-mask

def _input(tmp_path: Path, kind: str) -> str:
    files = {"empty": b"", "binary": bytes(range(256)) * 4, "latin1": "café [MASK]\n".encode("latin-1"),
             "bad-utf8": "中文[MASK]".encode() + b"\xc3\x28\n"}
    if kind in files:
        (tmp_path / kind).write_bytes(files[kind])
    elif kind == "dir":
        (tmp_path / kind).mkdir()
    return {"proc": "/proc/self/mem", "none": "", "device": "/dev/zero"}.get(kind, str(tmp_path / kind))


@pytest.mark.parametrize("kind, message", [
    ("proc", "cannot be read (Input/output error)"),  # was "cannot be decompressed as  ("
    ("dir", "is a directory, not a file; give a file of sentences"),
    ("none", "--input '' names no file"),  # was "give a sentence with [MASK]"
    ("device", "is not a regular file"),
    ("empty", "is empty"), ("binary", "is a binary file"), ("latin1", "re-encode it as UTF-8"),
    ("bad-utf8", "undecodable byte at offset 12"),
])
def test_fill_mask_input_that_is_no_text_file(trained_run, tmp_path, capsys, kind, message):
    path = _input(tmp_path, kind)
    err = refused(["fill-mask", str(trained_run), "--input", path], capsys)
    assert message in err and (path in err or not path), err


def test_fill_mask_input_from_a_pipe_is_named(trained_run):
    """/dev/stdin was read twice (sniffed, then decoded): the second read found it empty, and
    the error asked for a sentence that had been given."""
    p = subprocess.run([sys.executable, "-m", "zhbert", "fill-mask", str(trained_run),
                        "--input", "/dev/stdin"], input="北京是中国的[MASK]都。\n", text=True,
                       capture_output=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2 and "is not a regular file (a pipe or device)" in p.stderr, p.stderr


def test_fill_mask_empty_model_is_named(capsys):
    assert "MODEL '' names no directory" in refused(["fill-mask", "", "北京[MASK]"], capsys)


def test_fill_mask_top_k_past_the_vocabulary_says_what_it_shows(trained_run, tmp_path, capsys):
    """--top-k 10^20 showed the whole vocabulary and said "answers in the top 10^20"."""
    table = tmp_path / "t.csv"
    table.write_text("text,answer\n北京是中国的[MASK]都。,首\n", encoding="utf-8")
    assert main(["fill-mask", str(trained_run), "--input", str(table), "--top-k", HUGE]) == 0
    out, err = capsys.readouterr()
    shown = int(err.split("tokens this model")[0].split()[-1].replace(",", ""))
    assert f"--top-k {int(HUGE):,} is more than the {shown:,}" in err and 1000 < shown < 5000
    assert f"answers in the top {shown}:" in out
