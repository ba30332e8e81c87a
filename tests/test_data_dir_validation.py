"""A damaged data directory is refused on load with one line naming the file and the fix:
token ids outside the vocabulary (they crashed training's first step with an IndexError from
torch.embedding, after the run directory was made), a manifest that is not a zhbert manifest
or has values of the wrong type (an AttributeError), a vocab.txt that is a folder, empty or
binary, offsets that go back.

PERFORMANCE of the id check (datadir._check_token_ids, one pass of min/max in 4M-id chunks,
once per file per process), measured on an AMD EPYC (2 vCPUs, `grep -m1 'model name'
/proc/cpuinfo`): the built-in corpus's train split (2.67M ids) 0.3 ms, validation and test
(~90k) under 0.1 ms; 100M uint16 ids in an np.memmap 5-9 ms in the page cache, 70-80 ms
after posix_fadvise(DONTNEED) dropped the file from it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import refused

from zhbert import datadir
from zhbert.datadir import open_data_dir
from zhbert.errors import UserError

TRAIN = ["--set", "model.hidden_size=32", "--set", "model.num_layers=1", "--set", "model.num_heads=2",
         "--set", "model.intermediate_size=64", "--set", "data.max_len=32", "--set",
         "data.eval_sequences=16", "--set", "train.batch_size=4", "--set", "train.steps=2",
         "--set", "train.warmup_steps=1", "--set", "train.precision=fp32", "--set",
         "data.warmup_len=0", "--no-progress", "--threads", "1"]


@pytest.fixture
def data(synthetic_data, tmp_path):
    shutil.copytree(synthetic_data, tmp_path / "data")
    return tmp_path / "data"


def _poke(path, at, value):
    a = np.load(path, mmap_mode="r+")
    a[at] = value
    a.flush()
    del a


def _edit_manifest(data, edit):
    m = json.loads((data / "manifest.json").read_text())
    edit(m)
    (data / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_token_ids_outside_the_vocabulary_are_refused_before_the_run_exists(data, tmp_path, capsys,
                                                                           split):
    size = len(open_data_dir(data).vocab)
    _poke(data / f"{split}.tokens.npy", slice(7, 50), 65000)
    run = tmp_path / "run"
    err = refused(["train", "--data", str(data), "--out", str(run), *TRAIN], capsys)
    assert f"{data / f'{split}.tokens.npy'} holds token id 65000 at position 7, outside the " \
           f"vocabulary's {size} ids (0 to {size - 1})" in err and "re-run zhbert prepare" in err
    assert not run.exists()  # no half-made run to call "stopped (continue with --resume)"


def test_the_id_just_past_the_vocabulary_and_the_data_report(data, capsys):
    size = len(open_data_dir(data).vocab)
    n = len(np.load(data / "test.tokens.npy", mmap_mode="r"))
    _poke(data / "test.tokens.npy", n - 1, size)
    err = refused(["data", "report", str(data)], capsys)
    assert f"test.tokens.npy holds token id {size} at position {n - 1:,}" in err
    _poke(data / "test.tokens.npy", n - 1, size - 1)  # the last id in the vocabulary is fine
    open_data_dir(data).check_arrays()


def test_a_resume_onto_damaged_tokens_is_refused_and_leaves_the_run(data, tmp_path, capsys):
    from zhbert.cli import main
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TRAIN]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _poke(data / "train.tokens.npy", 3, 60000)
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(run), *TRAIN, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("zhbert: error: ")
    assert "train.tokens.npy holds token id 60000 at position 3" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_signed_or_float_token_array_is_checked_too(data):
    tokens = np.load(data / "train.tokens.npy")
    np.save(data / "train.tokens.npy", tokens.astype(np.int32) * np.where(np.arange(len(tokens)) == 9, -1, 1))
    with pytest.raises(UserError, match="holds token id -[0-9]+ at position 9,"):
        open_data_dir(data).check_arrays()
    np.save(data / "train.tokens.npy", tokens.astype(np.float32))
    with pytest.raises(UserError, match="holds float32 values, not token ids"):
        open_data_dir(data).check_arrays()


def test_sentence_offsets_that_go_back_are_refused(data, capsys):
    """One overwritten offset (10**9) trained in silence: a segment cut at the tokens' end."""
    _poke(data / "train.sentences.npy", 10, 10**9)
    assert "split 'train' in" in refused(["data", "report", str(data)], capsys)


def test_a_manifest_that_is_a_list_or_a_folder(data, capsys):
    (data / "manifest.json").write_text("[1, 2, 3]\n")
    err = refused(["data", "report", str(data)], capsys)
    assert err == (f"zhbert: error: {data / 'manifest.json'} is not a zhbert manifest (a JSON "
                   "object; it holds an array): re-run zhbert prepare\n")
    assert "not a zhbert manifest" in refused(["train", "--data", str(data), "--out",
                                               str(data.parent / "run"), *TRAIN], capsys)
    (data / "manifest.json").unlink()
    (data / "manifest.json").mkdir()
    assert "manifest.json is a folder, not a file" in refused(["data", "report", str(data)], capsys)


@pytest.mark.parametrize("edit, says", [
    (lambda m: m.pop("splits"), "has no 'splits'"),
    (lambda m: m.update(splits="train"), "has 'splits' as a string, not an object"),
    (lambda m: m["splits"].update(train=[1]), "has split 'train' as an array, not an object"),
    (lambda m: m["splits"]["train"].update(tokens="12"), "has train tokens '12', not a count"),
    (lambda m: m["splits"]["test"].update(documents=-1), "has test documents -1, not a count"),
    (lambda m: m["splits"].update({"../x": {}}), "names an unknown split '../x'"),
    (lambda m: m.update(vocab=None), "has 'vocab' as null, not an object"),
    (lambda m: m["vocab"].pop("sha256"), "has no vocab sha256"),
    (lambda m: m["vocab"].update(size="5"), "has vocab size '5', not a number"),
    (lambda m: m["vocab"].update(size=9), "says the vocabulary has 9 tokens"),
    (lambda m: m.update(format_version="1"), "has format_version '1', not a whole number"),
    (lambda m: m.update(format_version=True), "has format_version True, not a whole number"),
    (lambda m: m.update(word_boundaries="false"), "has word_boundaries 'false', not true or false"),
    (lambda m: m.update(language=["zh"]), "has language ['zh'], not a string"),
    (lambda m: m.update(tokenizer=3), 'has tokenizer 3, not "char" or "wordpiece"'),
    (lambda m: m.update(config="x" * 99), "has config '" + "x" * 36 + "..., not an object"),
    (lambda m: m.update(config={"clean": 5}), "has config.clean 5, not an object"),
    (lambda m: m.update(sources=5), "has sources 5, not a list"),
])
def test_manifest_values_of_the_wrong_type_name_the_file(data, capsys, edit, says):
    _edit_manifest(data, edit)
    err = refused(["data", "report", str(data)], capsys)
    assert f"{data / 'manifest.json'} " in err and says in err and "re-run zhbert prepare" in err


def test_a_vocab_that_is_a_folder_empty_or_binary(data, capsys):
    vocab = data / "vocab.txt"
    vocab.unlink()
    vocab.mkdir()
    assert f"{vocab} is a folder, not a file" in refused(["data", "report", str(data)], capsys)
    vocab.rmdir()
    vocab.write_bytes(b"")
    assert f"{vocab} is empty" in refused(["data", "report", str(data)], capsys)
    vocab.write_bytes(bytes(range(256)) * 8)
    assert "is not UTF-8" in refused(["data", "report", str(data)], capsys)
    vocab.write_bytes(b"\x00" * 100)
    assert "is not a zhbert vocabulary" in refused(["data", "report", str(data)], capsys)


def test_the_id_check_finds_the_last_id_of_a_big_array(tmp_path):
    """A 20M-id array (40 MB) is checked in chunks to its last id (timed in the closing note,
    not here: 100M ids took 5-9 ms from the page cache on the AMD EPYC)."""
    path = tmp_path / "big.tokens.npy"
    a = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(20_000_000,))
    a[:] = 5
    a[-1] = 21127
    a.flush()
    tokens = np.load(path, mmap_mode="r")
    datadir._check_token_ids(tokens, 21128, path)
    with pytest.raises(UserError, match="at position 19,999,999"):
        datadir._check_token_ids(tokens, 21127, path)  # another vocabulary size: checked again


def test_a_report_json_that_is_a_list_or_a_folder(data, capsys):
    (data / "report.json").write_text("[1]\n")
    assert "report.json is not a zhbert dataset report (a JSON object; it holds an array)" in \
        refused(["data", "report", str(data)], capsys)
    with pytest.raises(UserError, match="not a zhbert dataset report"):
        open_data_dir(data).characters_per_token()  # compare --x characters
    (data / "report.json").unlink()
    (data / "report.json").mkdir()
    assert "report.json is a folder, not a file" in refused(["data", "report", str(data)], capsys)


def test_a_loaders_workers_do_not_read_the_token_ids_again(data, monkeypatch):
    """The range check ran again in each DataLoader worker opening its split: its cache
    reaches workers only when they are forked (not under forkserver, Python 3.14's default,
    or spawn), so each re-read every token array. The loader's own process checks once."""
    from zhbert.data import DataConfig
    from zhbert.loader import PretrainingLoader, _BatchStream
    passes = []
    real = datadir._check_token_ids
    monkeypatch.setattr(datadir, "_check_token_ids", lambda *a: passes.append(a[2]) or real(*a))
    loader = PretrainingLoader(data, "train", DataConfig(max_len=32), batch_size=2)
    assert len(passes) == 1
    _BatchStream(*loader._spec).arrays()  # what a worker does first
    assert len(passes) == 1
