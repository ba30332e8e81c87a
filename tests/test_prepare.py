import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from zhbert.cli import main
from zhbert.corpus import prepare as prep
from zhbert.corpus import prepare_tasks as tasks
from zhbert.corpus import segment
from zhbert.corpus import splits
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
    hashes = [splits.split_hash(f"doc{i}", 42) for i in range(1000)]
    cfg = splits.SplitConfig(validation=0.05, test=0.02, min_docs=10)
    codes = splits.assign_splits(hashes, cfg)
    assert np.bincount(codes, minlength=3).tolist() == [930, 50, 20]
    perm = np.random.default_rng(0).permutation(1000)
    assert (splits.assign_splits([hashes[k] for k in perm], cfg) == codes[perm]).all()
    assert splits.SplitConfig(validation=0.01, min_docs=500).sizes(17000) == (500, 500)
    assert splits.SplitConfig(validation=0.0).sizes(100)[0] == 0


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
    assert report["top_tags"] == [["x", 20]] and report["top_tags_max_undercount"] == 0
    assert not (outs[0] / "downstream").exists()
    resources = json.loads((outs[1] / "report.json").read_text())["resources"]
    assert len(resources["worker_peak_rss_mb_each"]) == 2 and resources["worker_peak_rss_mb"] > 20
    assert resources["worker_cpu_seconds"] > 0 and resources["cpu_seconds"] > 0
    a, b = _digest(outs[0]), _digest(outs[1])
    a.pop("manifest.json"), b.pop("manifest.json"), a.pop("report.json"), b.pop("report.json")
    assert a == b  # arrays and vocab do not depend on --workers


def test_dedup_index_is_scratch_in_the_staging_dir(tmp_path, capsys, monkeypatch):
    from zhbert.corpus import dedup

    seen = []

    class Recording(dedup.Deduplicator):
        def close(self):
            seen.append((self.path, self.path.stat().st_size))
            super().close()

    monkeypatch.setattr(dedup, "Deduplicator", Recording)
    out = tmp_path / "data"
    assert _run(capsys, "prepare", str(_text_corpus(tmp_path)), "--out", str(out), "--workers", "1")[0] == 0
    ((path, size),) = seen
    assert size > 0 and not path.exists()
    assert path.parent.parent.parent == out.parent and path.parent.parent != out  # staging/tmp
    assert not [p for p in out.rglob("*") if "sqlite" in p.name or p.name == "tmp"]
    assert json.loads((out / "report.json").read_text())["resources"]["dedup_index_mb"] > 0


def test_sentence_hash_buckets_count_repeats_like_np_unique(tmp_path):
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 2**64, 3000, dtype=np.uint64, endpoint=False)
    batches = [pool[rng.integers(0, len(pool), n)] for n in (0, 1, 500, 2000, 1500)]
    hashes = splits.SentenceHashes(tmp_path)
    for batch in batches:
        hashes.add(batch)
    everything = np.concatenate(batches)
    assert hashes.count() == (len(everything), len(everything) - len(np.unique(everything)))
    assert len(everything) - len(np.unique(everything)) > 500  # repeats within and across batches
    assert not list(tmp_path.iterdir())


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
])
def test_bad_inputs_exit_2_with_a_readable_message(tmp_path, capsys, make, args, message):
    make(tmp_path)
    argv = ["prepare"] + [a.format(d=tmp_path) for a in args] + ["--out", str(tmp_path / "out"), "--workers", "1"]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and message in err and "zhbert: error:" in err
    assert not (tmp_path / "out").exists()


def test_existing_or_unwritable_out_exit_2(tmp_path, capsys):
    (tmp_path / "ok.txt").write_text(ARTICLE)
    (tmp_path / "out").mkdir()  # empty: taken (check_out's advice), then an earlier output
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "out"),
                      "--workers", "1")
    assert rc == 0, err
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "out"))
    assert rc == 2 and "--force" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "file" / "out"),
                      "--workers", "1")
    assert rc == 2 and "file" in err


# ---------------------------------------------------------------- pass 3: batch encoding

# Odd corners: latin/digit runs, "\r\n", full-width forms, characters outside
# jieba's Chinese range, zero-width characters inside words, literal special
# tokens, an over-long latin word, and characters no vocabulary holds.
EDGE_TEXTS = [
    "abc def\r\n12.5%的人", "iPhone14和Python3.11发布了", "a", "中", "　全角 空格", "ＡＢＣ１２３",
    "我们-他们_它们+你们#", "1998年12月31日，江泽民发表了新年讲话。", "[MASK]是[UNK]的[CLS] x[SEP]y[MA",
    "a\u200bb\u200b 中\u200b文", "x" * 150 + "中", "\r\r\n中文\r\n", "ab12cd34中文ef", "A.B.C-1_2",
    "\u9fd5\u9fd6\u3400𠀀一", "é中ü文ß", "",
]


@pytest.fixture(scope="module")
def sentences():
    """Cleaned sentences of the first People's Daily articles."""
    from zhbert.corpus.clean import CleanConfig, clean_document
    from zhbert.corpus.sources import iter_documents, resolve_sources

    info = next(i for i in resolve_sources(["builtin"]) if i.path.endswith("199801.txt"))
    out = []
    for doc in iter_documents(info):
        cdoc = clean_document(doc, CleanConfig())
        out += cdoc.sentences if cdoc else []
        if len(out) >= 600:
            return out


def _fuzz_texts(sentences, n=60, seed=0):
    import random

    rng = random.Random(seed)
    chars = list("".join(sentences))
    odd = list("abcXYZ019.%+#&_-\r\n \t，。、“”") + ["\u9fd6", "\u3400", "𠀁", "\u200b", "ａ", "１"]
    return ["".join(rng.choice(chars) if rng.random() < 0.8 else rng.choice(odd)
                    for _ in range(rng.randrange(1, 300))) for _ in range(n)]


def test_word_starts_of_a_joined_batch_are_per_sentence_jieba(sentences):
    """One jieba call per batch of "\n"-joined sentences cuts each sentence as alone."""
    jieba = segment.jieba()
    batch = sentences[:200] + EDGE_TEXTS
    text = "\n".join(batch)
    want = []
    for s in batch:
        flags = np.zeros(len(s) + 1, np.uint8)
        flags[[start for _, start, _ in jieba.tokenize(s)]] = 1
        flags[-1] = 1  # the "\n" after it: a word of its own
        want.append(flags)
    assert segment.word_start_flags("jieba", text).tolist() == np.concatenate(want)[:-1].tolist()


def test_batch_encoding_is_per_word_encoding(sentences):
    """Vocab.encode_with_offsets on long joined texts, odd characters and fuzz equals the
    plain per-word WordPiece encoding (the reference below)."""
    from zhbert.vocab import SPECIAL_TOKENS, bert_words, build_vocab, count_units

    def reference(vocab, text):
        ids, offsets = [], []
        for w, o in bert_words(text):
            pieces = [vocab.id(w)] if w in SPECIAL_TOKENS or len(w) == 1 else vocab._wordpiece(w)
            ids += pieces
            offsets += list(range(o, o + len(w))) if len(pieces) == len(w) > 1 else [o] * len(pieces)
        return ids, offsets

    vocab = build_vocab(count_units(sentences[::2]), min_freq=2)  # leaves some [UNK]s
    texts = ["\n".join(sentences), "\n".join(EDGE_TEXTS)] + EDGE_TEXTS + _fuzz_texts(sentences)
    for text in texts:
        ids, offsets = vocab.encode_with_offsets(text)
        assert (ids.tolist(), offsets.tolist()) == reference(vocab, text), text[:80]
        assert ids.tolist() == vocab.encode(text)


@pytest.mark.parametrize("limit", [1 << 16, 100])  # 100: each batch text is cut into many
def test_encode_task_equals_sentence_by_sentence(sentences, tmp_path, monkeypatch, limit):
    import functools

    from zhbert.corpus.clean import normalize_for_hash
    from zhbert.vocab import build_vocab, count_units

    monkeypatch.setattr(tasks, "_joined", functools.partial(tasks._joined, limit=limit))
    vocab = build_vocab(count_units(sentences, specials=False))  # as prepare counts a corpus
    vocab.save(tmp_path / "vocab.txt")
    edge = [t for t in EDGE_TEXTS if t]  # spooled sentences are never empty
    docs = [(i % 3, sentences[i * 7:(i + 1) * 7] + [edge[i % len(edge)]]) for i in range(40)]
    parts = tasks.encode_task((str(tmp_path / "vocab.txt"), "jieba", docs))
    jieba = segment.jieba()
    for code, (tokens, starts, lengths, doc_sizes, hashes, unk) in enumerate(parts):
        mine = [d for c, d in docs if c == code]
        flat = [s for d in mine for s in d]
        want_ids, want_starts = [], []
        for s in flat:  # what pass 3 did before, one sentence at a time
            ids, offsets = (a.tolist() for a in vocab.encode_with_offsets(s, specials=False))
            words = {st for _, st, _ in jieba.tokenize(s)}
            want_ids += ids
            want_starts += [1 if o in words else 0 for o in offsets]
        assert tokens.tolist() == want_ids and starts.tolist() == want_starts
        assert lengths.tolist() == [len(vocab.encode(s, specials=False)) for s in flat]
        assert doc_sizes.tolist() == [len(d) for d in mine]
        digests = [hashlib.blake2b(normalize_for_hash(s).encode(), digest_size=8).digest() for s in flat]
        assert hashes.tolist() == [int.from_bytes(d, "big") for d in digests]
        assert unk == want_ids.count(vocab.unk_id)


# ---------------------------------------------------------------- progress and resources

def test_progress_bars_count_documents(tmp_path, capsys, monkeypatch):
    bars = {}

    class Bar:
        def __init__(self, desc, unit="doc", total=None):
            self.total, self.n = total, 0
            bars[desc] = self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.n += n

        def set_postfix_str(self, *args, **kwargs):
            pass

    monkeypatch.setattr(prep, "progress", Bar)
    out = tmp_path / "data"
    assert _run(capsys, "prepare", str(_text_corpus(tmp_path)), "--out", str(out), "--workers", "1")[0] == 0
    kept = json.loads((out / "report.json").read_text())["totals"]["documents"]
    assert bars["clean"].n == 57  # documents read
    assert (bars["count"].n, bars["count"].total) == (kept, kept)  # not batches
    assert (bars["encode"].n, bars["encode"].total) == (kept, kept)


def test_peak_rss_is_this_process_not_its_parent(tmp_path):
    """getrusage's ru_maxrss survives exec: run from a 1.5 GB parent, prepare used to
    report the parent's peak as its own."""
    (tmp_path / "ok.txt").write_text(ARTICLE * 3, encoding="utf-8")
    out = tmp_path / "data"
    parent = (
        "import subprocess, sys\n"
        "x = bytearray(1536 << 20)\n"
        "for i in range(0, len(x), 4096): x[i] = 1\n"
        f"sys.exit(subprocess.run([sys.executable, '-m', 'zhbert', 'prepare', {str(tmp_path / 'ok.txt')!r},"
        f" '--out', {str(out)!r}, '--workers', '1', '--no-word-boundaries']).returncode)\n")
    subprocess.run([sys.executable, "-c", parent], check=True, capture_output=True)
    resources = json.loads((out / "report.json").read_text())["resources"]
    assert 20 < resources["peak_rss_mb"] < 1024


def test_generated_benchmark_dump_is_well_formed_wikitext(tmp_path):
    from benchmarks.prepare_throughput import make_dump
    from zhbert.corpus.sources import iter_documents, resolve_sources
    from zhbert.corpus.wiki import wikitext_to_text

    path = make_dump(tmp_path / "dump.xml.bz2", 0.2)
    assert path.read_bytes()[:3] == b"BZh"
    (info,) = resolve_sources([str(path)])
    docs = list(iter_documents(info))
    assert len(docs) > 20 and not info.warnings
    for doc in docs:
        text, categories = wikitext_to_text(doc.text)
        # links were "]]。...，[[链接N|..." when 。 came before ，: "链接N|" was left in the text
        assert not any(c in text for c in "[]|'") and "链接" not in text and categories


@pytest.mark.skipif(sys.platform != "linux", reason="reads the worker count from /proc")
@pytest.mark.parametrize("after", [0.3, 3.0])
def test_ctrl_c_with_workers_is_one_line_and_leaves_no_output(tmp_path, after):
    """A terminal's Ctrl-C reaches the whole process group: each pool worker printed a
    KeyboardInterrupt traceback before the parent's one line; and still did where it came
    while the workers started Python (0.3 s, or 3 s on a busy machine: importing torch then).
    Sent the moment the workers appear, it can fall in the milliseconds the parent ignores
    it while starting them (prepare._start_pool): not tested, it is lost there."""
    import os
    import signal
    import time

    out = tmp_path / "data"
    p = subprocess.Popen([sys.executable, "-m", "zhbert", "prepare", "builtin", "--out", str(out),
                          "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    children = f"/proc/{p.pid}/task/{p.pid}/children"
    # the pool's two workers started (and the resource tracker), then give them work
    while time.monotonic() < deadline and len(open(children).read().split()) < 3:
        time.sleep(0.1)
    time.sleep(after)
    os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().endswith("zhbert: interrupted")
    assert not out.exists()


def test_literal_special_tokens_in_a_corpus_are_text(tmp_path, capsys):
    """An article quoting "[MASK]" or "[SEP]" put the structural ids inside its sentences."""
    src = tmp_path / "bert.txt"
    rng = np.random.default_rng(0)
    chars = ARTICLE.replace("，", "").replace("。", "")
    words = lambda: "".join(rng.choice(list(chars), 20))  # noqa: E731  (no two documents near-duplicates)
    src.write_text("\n\n".join(f"{words()}，模型把字换成[MASK]再猜。{words()}，两句用[SEP]隔开，[CLS]在前。"
                                 f"{words()}，短的补上[PAD]和[UNK]。" for _ in range(40)) + "\n", encoding="utf-8")
    out = tmp_path / "data"
    rc, _, err = _run(capsys, "prepare", str(src), "--out", str(out), "--workers", "1")
    assert rc == 0, err
    data = open_data_dir(out)
    assert rc == 0 and "[" in data.vocab and "M" in data.vocab
    for name in SPLITS:
        a = data.split(name)
        assert a.num_documents and int(np.asarray(a.tokens).min()) >= len(data.vocab.tokens[:5])


def test_a_pool_worker_imports_no_torch():
    """A spawned worker imports the module of its initializer and tasks: the initializer in
    prepare imported torch there too (359 MB a worker, 179 MB without, and the seconds of
    the import in which a Ctrl-C printed tracebacks). Asked of a live worker of the pool."""
    pool = prep._start_pool(1)
    try:
        assert pool.apply(eval, ("'torch' in __import__('sys').modules",)) is False
        assert pool.apply(eval, ("'zhbert.corpus.prepare_tasks' in __import__('sys').modules",))
    finally:
        prep._stop_pool(pool)


def test_a_pool_whose_result_pipe_holds_half_a_message_stops(monkeypatch):
    """A worker killed while writing a result left half a message in the pipe, and
    Pool.terminate() waited forever for the rest (a Ctrl-C hung 1 time in ~20)."""
    import os
    import struct
    import time

    monkeypatch.setattr(prep, "STOP_WAIT_S", 1.0)
    pool = prep._start_pool(2)
    workers = list(pool._pool)
    pool.apply(len, ("ab",))  # the workers are up
    # the length of a 1,000-byte message, then 10 of its bytes: what a killed writer leaves
    os.write(pool._outqueue._writer.fileno(), struct.pack("!i", 1000) + b"x" * 10)
    started = time.monotonic()
    prep._stop_pool(pool)
    assert time.monotonic() - started < 10
    assert all(not w.is_alive() for w in workers)
