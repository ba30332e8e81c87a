"""Languages other than Chinese: the registry, sentence splitting, script filter, wiki
conventions, WordPiece, word starts, and `zhbert prepare --language en|ja` end to end."""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from zhbert.cli import main
from zhbert.corpus import languages, segment
from zhbert.corpus.clean import CleanConfig, clean_document
from zhbert.corpus.document import Document
from zhbert.corpus.sentences import split_english, split_japanese
from zhbert.corpus.wiki import wikitext_to_text
from zhbert.datadir import SPLITS, open_data_dir
from zhbert.errors import UserError
from zhbert.wordpiece import train_wordpiece

EN = ("Dr. Smith paid $3.50 at 5 p.m. on Jan. 2. He left early! Did the U.S. Army agree? "
      "Mrs. Jones, i.e. the owner, said no. The value of pi is 3.14159 and e is 2.718.")
EN_SENTENCES = ["Dr. Smith paid $3.50 at 5 p.m. on Jan. 2.", "He left early!",
                "Did the U.S. Army agree?", "Mrs. Jones, i.e. the owner, said no.",
                "The value of pi is 3.14159 and e is 2.718."]
JA = "彼は「行こう。すぐに。」と言った。雨が降る（たぶん。）明日は晴れる！本当に？「はい。」\n東京"


SHARED = Path(os.environ.get("ZHBERT_SHARED") or Path(__file__).resolve().parents[1] / "../shared")


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


# ---------------------------------------------------------------- registry and splitting

def test_registry_knows_three_languages_and_names_them_on_error():
    assert set(languages.LANGUAGES) == {"zh", "ja", "en"}
    with pytest.raises(UserError, match="zh, ja, en"):
        languages.get("fr")


def test_english_sentences_keep_abbreviations_and_decimals():
    assert split_english(EN) == EN_SENTENCES
    assert split_english('He said "Stop." Then he went (quietly.) Next one') == \
        ['He said "Stop."', "Then he went (quietly.)", "Next one"]
    assert split_english("J. R. R. Tolkien wrote it. etc. and more.\nNew line") == \
        ["J. R. R. Tolkien wrote it. etc. and more.", "New line"]  # lower case goes on
    assert split_english("See No. 5 and vol. 2. He said no. Then left.") == \
        ["See No. 5 and vol. 2.", "He said no.", "Then left."]


def test_japanese_sentences_keep_brackets_and_quotations():
    assert split_japanese(JA) == ["彼は「行こう。すぐに。」と言った。", "雨が降る（たぶん。）明日は晴れる！",
                                  "本当に？", "「はい。」", "東京"]
    assert split_japanese("記号「…」を意味する。次。") == ["記号「…」を意味する。", "次。"]


def test_script_ratio_per_language():
    assert languages.get("ja").script_ratio("ひらがなカタカナ漢字ab") == pytest.approx(10 / 12)
    assert languages.get("en").script_ratio("Café 12") == pytest.approx(4 / 6)
    assert languages.get("zh").script_ratio("中文ab") == 0.5


def test_clean_document_english_and_japanese():
    en_dropped, ja_dropped = Counter(), Counter()
    en = clean_document(Document("d", EN + "\n日本語だけの文です。", "t"), CleanConfig(language="en", script="keep"),
                        dropped_out=en_dropped)
    assert list(en.sentences) == EN_SENTENCES
    assert en_dropped == {"low_script": 1}
    ja = clean_document(Document("d", JA + "\nThis English line is dropped.", "t"),
                        CleanConfig(language="ja", script="keep"), dropped_out=ja_dropped)
    assert ja.sentences[0] == "彼は「行こう。すぐに。」と言った。"
    # 本当に？ and 東京 are too short; 「はい。」 and the English line have too little kana/kanji
    assert ja_dropped == {"low_script": 2, "too_short": 2}


def test_opencc_is_for_chinese_only():
    with pytest.raises(UserError, match="Chinese only"):
        CleanConfig(language="en", script="t2s")
    assert CleanConfig.from_json({"min_chinese_ratio": 0.3}).min_script_ratio == 0.3  # old manifests


# ---------------------------------------------------------------- wiki conventions

def test_japanese_and_english_wiki_conventions():
    text, cats = wikitext_to_text("小説「{{lang|en|[[Silas Marner]]}}」を{{仮リンク|ジェイコブ|en|Jacob}}が"
                                  "読んだ。{{要出典}}[[ファイル:a.png|thumb|説明]][[Category:英語]]"
                                  "[[カテゴリ:小説]]", "ja")
    assert text == "小説「Silas Marner」をジェイコブが読んだ。" and cats == ("英語", "小説")
    assert wikitext_to_text("'''あ'''は次を指す。{{aimai}}", "ja") is None
    text, cats = wikitext_to_text("'''Anarchism''' is {{lang|fr|{{small|a}} [[x|philosophy]]}} of "
                                  "{{convert|5|km}}.{{Citation needed}} [[File:x.png|thumb|c]]"
                                  "[[Category:Politics]]", "en")
    assert text == "Anarchism is a philosophy of 5 km." and cats == ("Politics",)
    assert wikitext_to_text("'''Mercury''' may refer to: {{disambiguation}}", "en") is None
    # Chinese keeps its own rules: {{lang}} is dropped there, as before
    assert wikitext_to_text("他说{{lang|en|hello}}你好。", "zh")[0] == "他说你好。"


# ---------------------------------------------------------------- WordPiece

ENGLISH_TEXTS = [
    "The quick brown fox jumps over the lazy dog.", "Jumping foxes are quicker than sleeping dogs!",
    "Unbelievable: the fox's jump was 3.5 metres (about 11.5 feet) high.",
    "Naïve café owners don't understand [MASK] tokens, or do they?",
    "日本語と English が混ざった文。中文也可以。",
] * 20


def test_wordpiece_ids_equal_bert_tokenizer_fast(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab = train_wordpiece(ENGLISH_TEXTS, 150)
    assert len(vocab) <= 150 and any(t.startswith("##") and len(t) > 3 for t in vocab.tokens)
    vocab.save(tmp_path / "vocab.txt")
    hf = transformers.BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=False)
    texts = ENGLISH_TEXTS[:5] + ["unseen wordings Zzyzx café 😀 x" * 3, "a" * 101, "fox" * 40]
    for text in texts:
        assert vocab.encode(text) == hf(text, add_special_tokens=False)["input_ids"], text


def test_wordpiece_too_small_names_the_minimum():
    with pytest.raises(UserError, match=r"use --vocab-size (\d+) or more") as info:
        train_wordpiece(ENGLISH_TEXTS, 20)
    minimum = int(info.value.args[0].rsplit("--vocab-size ", 1)[1].split()[0])
    assert len(train_wordpiece(ENGLISH_TEXTS, minimum)) == minimum


def test_wordpiece_offsets_and_word_starts():
    vocab = train_wordpiece(ENGLISH_TEXTS, 150)
    text = "Jumping foxes, unbelievable."
    ids, offsets = vocab.encode_with_offsets(text)
    pieces = [vocab.tokens[i] for i in ids]
    assert "".join(p[2:] if p.startswith("##") else p for p in pieces) == text.replace(" ", "")
    for p, o in zip(pieces, offsets):  # each piece's offset is where its own text starts
        assert text[o:o + len(p.removeprefix("##"))] == p.removeprefix("##") or p == "[UNK]"
    starts = segment.word_start_flags("wordpiece", text)[offsets]
    assert starts.tolist() == [0 if p.startswith("##") else 1 for p in pieces]


def test_fugashi_word_starts_follow_mecab_per_line():
    pytest.importorskip("fugashi")
    text = "日本語の文章です。\n東京 は晴れ"
    flags = segment.word_start_flags("fugashi", text)
    assert np.flatnonzero(flags).tolist() == [0, 2, 3, 4, 6, 8, 10, 13, 14]
    # 日本|語|の|文章|です|。 \n 東京| |は|晴れ


# ---------------------------------------------------------------- prepare end to end

def _english_corpus(path, n=60):
    docs = []
    for i in range(n):
        docs.append(f"Document number {i} talks about foxes and dogs. " + " ".join(ENGLISH_TEXTS[i % 4:i % 4 + 3])
                    + f" The reporter wrote {i * 7} words about it. Nobody expected the ending in chapter {i}.")
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def test_prepare_english_wordpiece_end_to_end(tmp_path, capsys):
    src = _english_corpus(tmp_path / "en.txt")
    out = tmp_path / "data"
    rc, stdout, err = _run(capsys, "prepare", str(src), "--language", "en", "--vocab-size", "200",
                           "--out", str(out), "--workers", "1", "--min-split-docs", "2")
    assert rc == 0, err
    data = open_data_dir(out)
    assert (data.language, data.tokenizer) == ("en", "wordpiece")
    assert data.manifest["config"]["segmenter"] == "wordpiece" and len(data.vocab) <= 200
    cont = np.array([t.startswith("##") for t in data.vocab.tokens])
    for name in SPLITS:
        a = data.split(name)
        assert (a.word_starts == ~cont[a.tokens]).all()  # whole-word masking = not a ## piece
    first = data.vocab.decode(data.split("train").sentence(0).tolist())
    assert data.vocab.encode(first) == data.split("train").sentence(0).tolist()
    rc, text, _ = _run(capsys, "data", "report", str(out), "--min-sentences", "10", "--min-vocab", "10")
    assert "average sentence length" in text and "wordpiece" not in err


def test_prepare_vocab_size_below_alphabet_exits_2(tmp_path, capsys):
    src = _english_corpus(tmp_path / "en.txt", n=10)
    rc, _, err = _run(capsys, "prepare", str(src), "--language", "en", "--vocab-size", "12",
                      "--out", str(tmp_path / "d"), "--workers", "1")
    assert rc == 2 and "use --vocab-size" in err and not (tmp_path / "d").exists()


def test_prepare_warns_when_the_text_is_another_language(tmp_path, capsys):
    src = tmp_path / "mixed.txt"
    src.write_text("\n\n".join(["日本語の文章をたくさん書きました。これも日本語の文です。"] * 5
                               + [f"An English sentence number {i} is here." for i in range(3)]),
                   encoding="utf-8")
    rc, _, err = _run(capsys, "prepare", str(src), "--language", "en", "--vocab-size", "200",
                      "--out", str(tmp_path / "d"), "--workers", "1", "--min-split-docs", "0")
    assert rc == 0
    # split_english sees no sentence end in the Japanese lines: one sentence per document
    assert "62% of the sentences read (5 of 8) were dropped for too few Latin letters" in err
    assert "--language en" in err
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["input"]["script_filtered_share"] == pytest.approx(5 / 8, abs=1e-6)


JA_DOC = ("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で"
          "ニャーニャー泣いていた事だけは記憶している。")


def test_prepare_japanese_char_vocab_with_fugashi_word_starts(tmp_path, capsys):
    pytest.importorskip("fugashi")
    src = tmp_path / "ja.txt"
    src.write_text("\n\n".join(f"第{i}章。{JA_DOC}" for i in range(30)), encoding="utf-8")
    out = tmp_path / "data"
    rc, _, err = _run(capsys, "prepare", str(src), "--language", "ja", "--out", str(out),
                      "--workers", "1", "--min-split-docs", "2", "--no-near-dedup")
    assert rc == 0, err
    assert "kana" not in err  # Japanese prose: no language warning
    data = open_data_dir(out)
    assert (data.language, data.tokenizer, data.manifest["config"]["clean"]["script"]) == ("ja", "char", "keep")
    a = data.split("train")
    sentence = a.sentence(int(a.documents[0]))  # 吾輩は猫である。 (第N章。 is too short)
    pieces = [data.vocab.tokens[i] for i in sentence]
    assert "".join(p.removeprefix("##") for p in pieces) == "吾輩は猫である。"
    assert a.word_starts[a.sentences[int(a.documents[0])]:][:len(pieces)].tolist() == \
        [1, 0, 1, 1, 1, 1, 0, 1]  # 吾輩|は|猫|で|ある|。 (MeCab's words)


def test_chinese_prepared_as_japanese_is_warned_about(tmp_path, capsys):
    """Hanzi pass the kanji-and-kana filter: `--language ja` on Chinese text went without the
    wrong-language warning the README promises."""
    pytest.importorskip("fugashi")
    src = tmp_path / "zh.txt"
    src.write_text("\n\n".join(f"第{i}段：城市里的居民每天早上都会去河边散步，然后一起喝茶聊天。" for i in range(30)),
                   encoding="utf-8")
    rc, _, err = _run(capsys, "prepare", str(src), "--language", "ja", "--out", str(tmp_path / "d"),
                      "--workers", "1", "--min-split-docs", "2", "--no-near-dedup")
    assert rc == 0, err
    assert "warning: 0.0% of the training text's characters are kana, which Japanese prose is full of" in err


# ---------------------------------------------------------------- Parquet and saved datasets

def _parquet(path, rows, column="text"):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({column: rows, "id": list(range(len(rows)))})
    pq.write_table(table, path, row_group_size=7)  # several row groups: read in batches
    return path


def test_prepare_reads_parquet_and_names_columns_when_missing(tmp_path, capsys):
    rows = [f"{ARTICLE_ZH}第{i}号文件。" for i in range(30)] + [None, ""]
    src = _parquet(tmp_path / "c.parquet", rows)
    rc, _, err = _run(capsys, "prepare", str(src), "--out", str(tmp_path / "d"), "--workers", "1",
                      "--min-split-docs", "2", "--no-near-dedup")
    assert rc == 0, err
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["input"]["documents_read"] == 30  # None and "" skipped
    rc, _, err = _run(capsys, "prepare", str(src), "--text-column", "body", "--out", str(tmp_path / "e"))
    assert rc == 2 and "has no column 'body' (its columns: text, id)" in err


def test_a_compressed_parquet_file_is_refused_with_how_to_decompress_it(tmp_path, capsys):
    import gzip
    import shutil

    src = _parquet(tmp_path / "c.parquet", [f"{ARTICLE_ZH}第{i}号文件。" for i in range(30)])
    (tmp_path / "in").mkdir()
    with open(src, "rb") as raw, gzip.open(tmp_path / "in" / "c.parquet.gz", "wb") as packed:
        shutil.copyfileobj(raw, packed)
    for given in (tmp_path / "in" / "c.parquet.gz", tmp_path / "in"):  # named, or in a directory
        rc, _, err = _run(capsys, "prepare", str(given), "--out", str(tmp_path / "d"))
        assert rc == 2 and "is a compressed Parquet file" in err and "gunzip -k" in err, err
        assert "Traceback" not in err and not (tmp_path / "d").exists()


ARTICLE_ZH = "今天天气很好，我们去公园散步。公园里有很多人在锻炼身体。"


def test_prepare_reads_a_saved_hugging_face_dataset(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = [f"{ARTICLE_ZH}这是第{i}号文件。" for i in range(24)]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"content": rows[:20]}),
                               "test": datasets.Dataset.from_dict({"content": rows[20:]})})
    dd.save_to_disk(str(tmp_path / "saved"))
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "saved"), "--text-column", "content",
                      "--out", str(tmp_path / "d"), "--workers", "1", "--min-split-docs", "2",
                      "--no-near-dedup")
    assert rc == 0, err
    m = open_data_dir(tmp_path / "d").manifest
    assert m["sources"][0]["kind"] == "hf-dataset" and sum(s["documents"] for s in m["splits"].values()) == 24
    rc, _, err = _run(capsys, "prepare", str(tmp_path / "saved"), "--out", str(tmp_path / "e"))
    assert rc == 2 and "no column 'text' (its columns: content)" in err


def test_a_saved_datasets_fingerprint_is_its_data_not_the_cache_files_beside_it(tmp_path):
    """datasets writes cache-*.arrow into a saved dataset's folder when a loaded copy is
    mapped: the same text must keep its fingerprint (the data's identity, which a resume
    compares); other text must not."""
    datasets = pytest.importorskip("datasets")
    from zhbert.corpus.columnar import dataset_fingerprint

    datasets.disable_progress_bars()
    rows = [f"{ARTICLE_ZH}这是第{i}号文件。" for i in range(6)]
    for name, saved in (("one", datasets.Dataset.from_dict({"text": rows})),
                        ("dict", datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": rows})}))):
        path = tmp_path / name
        saved.save_to_disk(str(path))
        before = dataset_fingerprint(path)
        loaded = datasets.load_from_disk(str(path))
        (loaded if name == "one" else loaded["train"]).map(lambda r: {"text": r["text"] + "。"})
        assert list(path.rglob("cache-*.arrow")), "datasets wrote no cache file: the test tests nothing"
        assert dataset_fingerprint(path) == before
    other = tmp_path / "other"
    datasets.Dataset.from_dict({"text": rows[:-1] + ["别的文字。"]}).save_to_disk(str(other))
    assert dataset_fingerprint(other)[1] != dataset_fingerprint(tmp_path / "one")[1]


# ---------------------------------------------------------------- built-in English, jawiki

def test_builtin_en_resolves_to_real_english_files():
    pytest.importorskip("gensim")
    from zhbert.corpus.sources import iter_documents, resolve_sources

    infos = resolve_sources(["builtin"], language="en")
    assert [i.kind for i in infos] == ["wiki", "builtin-en"] and all(i.bytes > 300_000 for i in infos)
    first = next(iter_documents(infos[1]))
    assert first.text.startswith("Hundreds of people have been forced to vacate their homes")
    with pytest.raises(UserError, match="no built-in corpus for --language ja"):
        resolve_sources(["builtin"], language="ja")


def test_jawiki_dump_first_pages_make_a_verified_data_dir(tmp_path, capsys):
    dump = SHARED / "reference" / "wiki" / "jawiki-truncated-100k.xml.xz"
    if not dump.is_file():
        pytest.skip("the shared jawiki dump is absent")
    pytest.importorskip("fugashi")
    out = tmp_path / "ja"
    rc, _, err = _run(capsys, "prepare", str(dump), "--language", "ja", "--limit-docs", "6",
                      "--out", str(out), "--workers", "1", "--min-split-docs", "1")
    assert rc == 0, err
    data = open_data_dir(out)
    text = " ".join(data.vocab.decode(data.split("train").sentence(i).tolist()) for i in range(50))
    assert "日本語" in text and "{{" not in text and "[[" not in text
    # six pages are not a corpus: the size checks are scaled down; length and duplicates as is
    rc, report, _ = _run(capsys, "data", "report", str(out), "--min-sentences", "100",
                         "--min-vocab", "1000")
    assert rc == 0 and "PASS  average sentence length" in report and "(target 20-100 chars)" in report


def test_spaced_decode_encodes_back_to_the_same_ids():
    vocab = train_wordpiece(ENGLISH_TEXTS, 150)
    for text in ENGLISH_TEXTS[:5] + ["A left-wing (radical) party's plan, i.e. 50% and/or $3.50!"]:
        ids = vocab.encode(text)
        spaced = vocab.decode(ids, spaced=True)
        assert vocab.encode(spaced) == ids
    assert vocab.decode(vocab.encode("The fox's jump (about 3.5 feet) was unbelievable."),
                        spaced=True) == "The fox's jump (about 3.5 feet) was unbelievable."


def test_builtin_en_alone_means_english_and_wordpiece(tmp_path):
    import argparse

    from zhbert.corpus.prepare_cli import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    opts = options_from_args(parser.parse_args(["builtin-en", "--out", str(tmp_path / "d")]))
    assert (opts.language, opts.tokenizer, opts.max_vocab, opts.clean.script) == ("en", "wordpiece", 30522, "keep")
    assert opts.clean.max_sentence_chars == 512 and opts.segmenter == "wordpiece"
    opts = options_from_args(parser.parse_args(["x.txt", "--out", str(tmp_path / "d")]))
    assert (opts.language, opts.tokenizer, opts.max_vocab, opts.clean.script) == ("zh", "char", 21128, "t2s")
    with pytest.raises(UserError, match="Chinese only"):
        options_from_args(parser.parse_args(["x.txt", "--language", "ja", "--script", "t2s",
                                             "--out", str(tmp_path / "d")]))
