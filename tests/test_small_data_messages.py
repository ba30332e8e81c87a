"""What a newcomer with a damaged or tiny data directory is told: `zhbert data report`
checks the arrays the way train does; a corpus too small to hold documents out, and a
batch bigger than the corpus during the length warm-up, name the cause and the fix."""

import shutil

import pytest

from zhbert.cli import main
from zhbert.errors import UserError

SENTENCE = "城市里的居民每天早上都会去河边散步，然后一起喝茶聊天。"
RELAXED = ["--min-sentences", "1", "--min-vocab", "1", "--avg-len", "1,1000", "--max-dup-rate", "1"]


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small prepared corpus (12 documents: every split has some)."""
    root = tmp_path_factory.mktemp("small")
    text = "\n\n".join(f"第{i}篇：{SENTENCE}天气好的时候还会去爬山{i}次。" for i in range(12))
    (root / "a.txt").write_text(text, encoding="utf-8")
    assert main(["prepare", str(root / "a.txt"), "--out", str(root / "data"), "--workers", "1",
                 "--no-near-dedup", "--no-word-boundaries"]) == 0
    return root / "data"


def _damage(path, how):
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - 8)
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("name,how", [("validation.tokens.npy", "missing"),
                                      ("train.tokens.npy", "truncated"),
                                      ("test.sentences.npy", "empty")])
def test_data_report_fails_on_the_arrays_train_refuses(prepared, tmp_path, capsys, name, how):
    """report.json is cached at prepare time: report PASSed (exit 0) a directory whose
    arrays train refuses. Now it exits 2 with train's own message (DataDir.split)."""
    from zhbert.datadir import open_data_dir
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    assert _run(capsys, "data", "report", str(data), *RELAXED)[0] == 0
    _damage(data / name, how)
    with pytest.raises(UserError) as train_says:  # what training reads the split with
        open_data_dir(data).split(name.split(".")[0])
    rc, out, err = _run(capsys, "data", "report", str(data), *RELAXED)
    assert rc == 2 and "PASS" not in out
    assert str(train_says.value) in err and str(data / name) in err


def test_one_document_corpus_says_more_documents_not_a_larger_share(tmp_path, capsys):
    """Splits are made of whole documents: with one document, raising --validation cannot
    help. prepare says so, and train's refusal names the fix."""
    text = "".join(f"第{i}天，{SENTENCE}" for i in range(40))  # a whole text on one line
    (tmp_path / "one.txt").write_text(text, encoding="utf-8")
    data = tmp_path / "data"
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "one.txt"), "--out", str(data),
                      "--workers", "1", "--no-near-dedup", "--no-word-boundaries")
    assert rc == 0
    assert "the validation split is empty" in err and "only 1 document " in err
    assert "raising --validation cannot help" in err and "blank line between documents" in err
    assert "raise the share held out" not in err
    run = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress",
           "--set", "model.objective=mlm", "--set", "train.batch_size=2", "--set", "data.warmup_len=0",
           "--set", "train.steps=1"]
    rc, _, err = _run(capsys, *run)
    assert rc == 2
    assert "split 'validation' of" in err and "gives no sequences for evaluation: it has no documents" in err
    # as prepare said (it said "or a larger --validation share" after prepare said that cannot help)
    assert "more documents" in err and "too few for any --validation share" in err
    assert "larger --validation share" not in err


def test_empty_split_advice_follows_the_split_rule():
    """Enough documents for a held-out one: the share was 0, so raise it; fewer than
    SplitConfig.sizes needs: more documents."""
    from zhbert.corpus.report import empty_split_warnings, fewest_documents_to_hold_out
    from zhbert.corpus.splits import SplitConfig
    fewest = fewest_documents_to_hold_out()
    assert SplitConfig().sizes(fewest)[0] == 1 and SplitConfig(validation=0.49).sizes(fewest - 1)[0] == 0

    def report(docs):
        return {"totals": {"documents": docs},
                "splits": {"train": {"documents": docs}, "validation": {"documents": 0}}}
    [enough] = empty_split_warnings(report(fewest))
    assert "raise the share held out (zhbert prepare --validation" in enough
    [few] = empty_split_warnings(report(fewest - 1))
    assert f"only {fewest - 1} documents" in few and "cannot help" in few


def test_nsp_on_a_one_document_held_out_split_names_it(tmp_path):
    from synthetic import make_data_dir

    from zhbert.data import DataConfig, build_eval_set
    data = make_data_dir(tmp_path / "data", n_docs=(4, 1, 1))
    with pytest.raises(UserError, match=r"at least 2 documents .*split 'validation' of .* has 1"):
        build_eval_set(data, "validation", DataConfig(objective="mlm+nsp", max_len=64))


def test_too_few_sequences_explains_the_warmup_batch(tmp_path):
    """tiny's train.batch_size 64 reads as 256 during the length warm-up (4 sequences of 16
    tokens per one of 64): the message says so, and how to turn the warm-up off."""
    from synthetic import make_data_dir

    from zhbert.config import load_config
    from zhbert.trainparts import build_loader
    data = make_data_dir(tmp_path / "data", n_docs=(3, 2, 2))
    cfg = load_config("tiny", ["data.max_len=64", "data.warmup_len=16", "data.warmup_len_fraction=0.2",
                               "train.batch_size=64"])
    with pytest.raises(UserError) as exc:
        build_loader(cfg, data).check()
    message = str(exc.value)
    assert ("fewer than one global batch (256: train.batch_size 64 x 4 short sequences per full "
            "one during the length warm-up (data.warmup_len 16 of data.max_len 64))") in message
    assert "a smaller train.batch_size, or --set data.warmup_len=0 to turn the warm-up off" in message
    off = load_config("tiny", ["data.max_len=64", "data.warmup_len=0", "train.batch_size=64"])
    with pytest.raises(UserError, match=r"fewer than one global batch \(64\); use a larger corpus "
                                        r"or a smaller train.batch_size$"):
        build_loader(off, data).check()


def test_the_batches_own_check_explains_the_warmup_batch_too(tmp_path):
    """The loader checks each epoch again as it reaches it (epochs differ slightly in size):
    that check explains the warm-up's global batch as the one before training does."""
    from synthetic import make_data_dir

    from zhbert.config import load_config
    from zhbert.trainparts import build_loader
    data = make_data_dir(tmp_path / "data", n_docs=(3, 2, 2))
    cfg = load_config("tiny", ["data.max_len=64", "data.warmup_len=16", "data.warmup_len_fraction=0.2",
                               "train.batch_size=64"])
    with pytest.raises(UserError, match=r"\(256: train.batch_size 64 x 4 short sequences per full one "
                                        r"during the length warm-up"):
        next(build_loader(cfg, data))  # no check() first: the batches' own check


def test_a_workers_error_reads_as_the_error_itself(tmp_path):
    """With loader workers (CUDA's default) the per-epoch check's error came wrapped in the
    worker's "Caught UserError in DataLoader worker process 0. Original Traceback ..."."""
    from synthetic import make_data_dir

    from zhbert.config import load_config
    from zhbert.trainparts import build_loader
    data = make_data_dir(tmp_path / "data", n_docs=(3, 2, 2))
    cfg = load_config("tiny", ["data.max_len=64", "data.warmup_len=16", "data.warmup_len_fraction=0.2",
                               "train.batch_size=64", "data.num_workers=1"])
    with pytest.raises(UserError) as exc:
        next(build_loader(cfg, data))
    message = str(exc.value)
    assert "Traceback" not in message and "\n" not in message
    assert message.startswith("split 'train' of ") and "during the length warm-up" in message
