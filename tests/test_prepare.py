import hashlib
import json

import numpy as np
import pytest

from zhbert.cli import main
from zhbert.corpus import prepare as prep
from zhbert.datadir import SPLITS, open_data_dir

ARTICLE = ("今天天气很好，我们去公园散步。公园里有很多人在锻炼身体。"
           "孩子们在草地上放风筝，老人们在树下下棋。")


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _split_texts(data):
    """Each split's documents as tuples of decoded sentences."""
    out = {}
    for name in SPLITS:
        a = data.split(name)
        out[name] = [tuple(data.vocab.decode(a.sentence(i).tolist()) for i in a.document_sentences(j))
                     for j in range(a.num_documents)]
    return out


@pytest.fixture(scope="module")
def builtin_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "data"
    assert main(["prepare", "builtin", "--out", str(out), "--limit-docs", "400", "--workers", "1"]) == 0
    return out


def test_builtin_slice_loads_and_is_consistent(builtin_dir):
    data = open_data_dir(builtin_dir)
    m = data.manifest
    assert m["word_boundaries"] is True and m["config"]["limit_docs"] == 400
    texts = _split_texts(data)
    total = 0
    for name in SPLITS:
        a = data.split(name)
        assert m["splits"][name] == {"documents": a.num_documents, "sentences": a.num_sentences,
                                     "tokens": len(a.tokens)}
        total += a.num_documents
        starts = a.sentences[:-1][np.diff(a.sentences) > 0]
        assert set(np.unique(a.word_starts)) <= {0, 1} and a.word_starts[starts].all()
        assert a.tokens.dtype == np.uint16 and int(a.tokens.max()) < len(data.vocab)
    assert total == 400
    assert m["splits"]["validation"]["documents"] == 40  # min 500, capped at a tenth
    # splits are disjoint (documents are deduplicated, so equal text = the same document)
    train, val, test = (set(texts[n]) for n in SPLITS)
    assert not (train & val) and not (train & test) and not (val & test)
    report = json.loads((builtin_dir / "report.json").read_text())
    assert report["totals"]["documents"] == 400 and report["vocab"]["size"] == len(data.vocab)
    assert 0.99 < report["vocab"]["train_coverage"] <= 1.0
    assert (builtin_dir / "downstream" / "sentiment.jsonl").stat().st_size > 0
    assert not list(builtin_dir.parent.glob(".*partial"))


def test_ids_are_the_vocab_encoding_of_the_cleaned_text(builtin_dir):
    data = open_data_dir(builtin_dir)
    a = data.split("train")
    for i in range(0, a.num_sentences, 97):
        ids = a.sentence(i).tolist()
        assert data.vocab.encode(data.vocab.decode(ids)) == ids


def test_data_text_round_trips(builtin_dir, capsys):
    rc, out, _ = _run(capsys, "data", "text", str(builtin_dir), "--split", "validation", "--limit", "5")
    assert rc == 0
    data = open_data_dir(builtin_dir)
    a = data.split("validation")
    docs = out.split("\n\n")
    assert len(docs) == 6 and docs[-1] == ""
    for j, doc in enumerate(docs[:5]):
        lines = doc.split("\n")
        want = [a.sentence(i).tolist() for i in a.document_sentences(j)]
        assert [data.vocab.encode(line) for line in lines] == want


def test_assign_splits_is_exact_and_order_free():
    hashes = [prep.split_hash(f"doc{i}", 42) for i in range(1000)]
    cfg = prep.SplitConfig(validation=0.05, test=0.02, min_docs=10)
    codes = prep.assign_splits(hashes, cfg)
    assert np.bincount(codes, minlength=3).tolist() == [930, 50, 20]
    perm = np.random.default_rng(0).permutation(1000)
    assert (prep.assign_splits([hashes[k] for k in perm], cfg) == codes[perm]).all()
    assert prep.SplitConfig(validation=0.01, min_docs=500).sizes(17000) == (500, 500)
    assert prep.SplitConfig(validation=0.0).sizes(100)[0] == 0


def _digest(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def _text_corpus(tmp_path):
    src = tmp_path / "corpus"
    src.mkdir()
    blocks = [ARTICLE] * 6 + [ARTICLE.replace("公园", "广场") + "这是一个不同的句子。"]
    blocks += [f"第{i}篇文章讲述了城市第{i}条河流的历史，居民们常常在河边散步聊天。" for i in range(30)]
    (src / "dups.txt").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    (src / "more.jsonl").write_text("\n".join(json.dumps({"text": f"这是第{i}条记录，内容和别的记录都不一样{i * 7}。", "tags": ["x"]},
                                                          ensure_ascii=False) for i in range(20)) + "\n",
                                    encoding="utf-8")
    return src


def test_duplicate_heavy_text_dir_and_workers_agree(tmp_path, capsys):
    src = _text_corpus(tmp_path)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"data{workers}"
        rc, _, _ = _run(capsys, "prepare", str(src), "--out", str(out), "--workers", str(workers))
        assert rc == 0
        outs.append(out)
    report = json.loads((outs[0] / "report.json").read_text())
    assert report["duplicates"]["exact_documents"] == 5
    assert report["totals"]["documents"] == 57 - 5 - report["duplicates"]["near_documents"]
    assert report["top_tags"] == [["x", 20]]
    assert not (outs[0] / "downstream").exists()
    a, b = _digest(outs[0]), _digest(outs[1])
    a.pop("manifest.json"), b.pop("manifest.json"), a.pop("report.json"), b.pop("report.json")
    assert a == b  # arrays and vocab do not depend on --workers


def test_failed_prepare_leaves_existing_dir_intact(tmp_path, capsys, monkeypatch):
    src = _text_corpus(tmp_path)
    out = tmp_path / "data"
    assert _run(capsys, "prepare", str(src), "--out", str(out), "--workers", "1")[0] == 0
    before = _digest(out)

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(prep, "_encode_pass", boom)
    with pytest.raises(RuntimeError, match="killed"):
        main(["prepare", str(src), "--out", str(out), "--force", "--workers", "1", "--min-freq", "2"])
    assert _digest(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("make, args, message", [
    (lambda d: None, ["{d}/missing.txt"], "missing.txt"),
    (lambda d: (d / "bin.txt").write_bytes(b"\x00\x01\x02\x03" * 100), ["{d}/bin.txt"], "bin.txt"),
    (lambda d: (d / "en.txt").write_text("only english text here.\n\nand more of it.\n"),
     ["{d}/en.txt"], "nothing is left"),
    (lambda d: (d / "ok.txt").write_text(ARTICLE), ["{d}/ok.txt", "--validation", "0.7"], "--validation"),
    (lambda d: (d / "ok.txt").write_text(ARTICLE), ["{d}/ok.txt", "--max-vocab", "3"], "--max-vocab"),
    (lambda d: (d / "ok.txt").write_text(ARTICLE), ["{d}/ok.txt", "--min-sentence-chars", "0"],
     "min_sentence_chars"),
])
def test_bad_inputs_exit_2_with_a_readable_message(tmp_path, capsys, make, args, message):
    make(tmp_path)
    argv = ["prepare"] + [a.format(d=tmp_path) for a in args] + ["--out", str(tmp_path / "out"), "--workers", "1"]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and message in err and "zhbert: error:" in err
    assert not (tmp_path / "out").exists()


def test_existing_or_unwritable_out_exit_2(tmp_path, capsys):
    (tmp_path / "ok.txt").write_text(ARTICLE)
    (tmp_path / "out").mkdir()
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "out"))
    assert rc == 2 and "--force" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "file" / "out"),
                      "--workers", "1")
    assert rc == 2 and "file" in err
