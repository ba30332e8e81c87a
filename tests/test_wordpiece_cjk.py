"""`prepare --tokenizer wordpiece` on Chinese and on Japanese, end to end: prepare -> a few
training steps -> export; the exported tokenizer (BertTokenizerFast from the export
directory) gives zhbert's own ids, and fill-mask handles "##" pieces.

BERT's basic tokenizer makes every CJK ideograph a word of its own, so a Chinese
WordPiece vocabulary is characters plus pieces of the Latin and digit runs; kana runs
are words, so a Japanese one also has multi-kana pieces and "##" kana continuations.
"""

import json

import pytest

from trained_run import SMALL
from zhbert.cli import main as cli_main

# Japanese documents: kana runs (BERT words of several characters), kanji, digits, Latin
JA_SENTENCES = [
    "吾輩は猫である。", "名前はまだ無い。", "どこで生れたかとんと見当がつかぬ。",
    "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。",
    "東京タワーの高さは333メートルです。", "コンピューターでプログラムを書きました。",
    "きのうはとてもさむかったので、ストーブをつけました。", "インターネットのニュースを読みました。",
    "ありがとうございます、またよろしくおねがいします。", "このレストランのカレーライスはおいしい。",
    "Pythonというプログラミング言語はとてもべんりです。", "にほんごのべんきょうはたのしいですね。",
]


def _japanese_corpus(path, n=48):
    docs = []
    for i in range(n):  # distinct documents: each starts with its own number and order
        k = i % len(JA_SENTENCES)
        body = JA_SENTENCES[k:] + JA_SENTENCES[:k]
        docs.append(f"これは{i + 1}番目のぶんしょうです。" + "".join(body[: 6 + i % 5]))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def _build(root, language: str, prepare_args: list[str]):
    """prepare -> 6 training steps -> export; (data dir, run dir, export dir)."""
    from zhbert.config import load_config
    from zhbert.train import main as train_main

    data = root / "data"
    assert cli_main(["prepare", *prepare_args, "--language", language, "--tokenizer", "wordpiece",
                     "--out", str(data), "--workers", "1", "--min-split-docs", "3",
                     "--validation", "0.1", "--test", "0.1"]) == 0
    run = root / "run"
    train_main(load_config("tiny", SMALL + ["train.steps=6", "train.checkpoint_every=6",
                                            "train.eval_every=6", "train.log_every=3"]),
               data, run, progress=False)
    out = root / "model"
    assert cli_main(["export", str(run), "--out", str(out)]) == 0
    return data, run, out


@pytest.fixture(scope="module")
def zh_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("zh_wordpiece")
    return _build(root, "zh", ["builtin", "--limit-docs", "150", "--vocab-size", "8000"])


@pytest.fixture(scope="module")
def ja_run(tmp_path_factory):
    pytest.importorskip("fugashi")  # Japanese word boundaries
    root = tmp_path_factory.mktemp("ja_wordpiece")
    src = _japanese_corpus(root / "ja.txt")
    return _build(root, "ja", [str(src), "--vocab-size", "400", "--no-near-dedup"])


ZH_TEXTS = ["北京是中国的首都，2008年举办了奥运会。", "他在ABC公司工作了12年，iPhone卖得很好。",
            "今天天气很好！我们去公园散步吧？", "未知字符：𠀀、Ω、㐀。"]
JA_TEXTS = ["吾輩は猫である。名前はまだ無い。", "東京タワーの高さは333メートルです。",
            "ニャーニャー泣いていたコンピューター。", "Pythonはべんりです、Perlも。", "未知のカタカナ：ヴォルフガング、ＡＢＣ。"]
RUNS = [("zh_run", ZH_TEXTS), ("ja_run", JA_TEXTS)]


def _held_out_texts(data_dir, n=40) -> list[str]:
    from zhbert.datadir import open_data_dir

    data = open_data_dir(data_dir)
    split = data.split("validation")
    return [data.vocab.decode(split.sentence(i).tolist()) for i in range(min(n, split.num_sentences))]


@pytest.mark.parametrize("fixture,texts", RUNS)
def test_exported_tokenizer_gives_zhberts_ids(fixture, texts, request, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import BertTokenizerFast

    from zhbert.datadir import open_data_dir

    data_dir, run, out = request.getfixturevalue(fixture)
    data = open_data_dir(data_dir)
    assert data.tokenizer == "wordpiece" and data.manifest["config"]["vocab"]["tokenizer"] == "wordpiece"
    assert (out / "tokenizer.json").is_file() and (out / "vocab.txt").is_file()
    assert json.loads((out / "config.json").read_text())["zhbert_language"] == data.language
    vocab = data.vocab
    assert any(t.startswith("##") for t in vocab.tokens)
    tok = BertTokenizerFast.from_pretrained(out)
    held_out = _held_out_texts(data_dir)
    assert len(held_out) >= 5
    pieces = 0
    for text in texts + held_out:
        ids = vocab.encode(text)
        assert tok(text)["input_ids"] == [vocab.cls_id] + ids + [vocab.sep_id], text
        assert vocab.encode(vocab.decode(ids)) == ids  # fill-mask's text encodes back
        pieces += sum(vocab.tokens[i].startswith("##") for i in ids)
    assert pieces > 0  # the texts exercise continuation pieces, not just characters
    # the arrays prepare wrote are the ids of their own decoded text, as HF encodes it
    split = data.split("validation")
    for i in range(min(20, split.num_sentences)):
        stored = split.sentence(i).tolist()
        assert tok(vocab.decode(stored), add_special_tokens=False)["input_ids"] == stored


def test_japanese_wordpiece_has_kana_pieces_and_mecab_word_starts(ja_run):
    from zhbert.corpus import segment
    from zhbert.datadir import open_data_dir

    data = open_data_dir(ja_run[0])
    kana_runs = [t for t in data.vocab.tokens
                 if len(t.removeprefix("##")) > 1 and all("\u3040" <= c <= "\u30ff" for c in t.removeprefix("##"))]
    assert any(t.startswith("##") for t in kana_runs) and any(not t.startswith("##") for t in kana_runs)
    a = data.split("train")
    checked = 0
    for i in range(min(60, a.num_sentences)):
        ids = a.sentence(i)
        text = data.vocab.decode(ids.tolist())
        if " " in text:  # decode adds a space between two Latin words: MeCab may cut differently
            continue
        got_ids, offsets = data.vocab.encode_with_offsets(text)
        assert got_ids.tolist() == ids.tolist()
        start, end = int(a.sentences[i]), int(a.sentences[i + 1])
        # a piece starts a word iff MeCab starts one at its first character ("##" pieces too)
        assert a.word_starts[start:end].tolist() == segment.word_start_flags("fugashi", text)[offsets].tolist()
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("fixture,sentences", [
    ("zh_run", ["北京是中国的[MASK]都。", "他在ABC公司工作了[MASK]年。"]),
    ("ja_run", ["吾輩は[MASK]である。", "東京タワーの高さは[MASK]メートルです。"])])
def test_pipeline_agrees_with_fill_mask(fixture, sentences, request, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pipeline_check import assert_pipeline_agrees

    _, _, out = request.getfixturevalue(fixture)
    assert_pipeline_agrees(out, sentences)


@pytest.mark.parametrize("fixture,sentence,prefix", [
    ("zh_run", "他在[MASK][MASK]公司工作了[MASK]年。", "他在"),
    ("ja_run", "吾輩は猫[MASK][MASK]。名前は[MASK]無い。", "吾輩は猫")])
def test_filled_text_joins_pieces_without_spaces(fixture, sentence, prefix, request, capsys):
    from types import SimpleNamespace

    from zhbert.fillmask import filled_text, load_masked_lm

    data_dir, run, _ = request.getfixturevalue(fixture)
    lm = load_masked_lm(run, precision="fp32")
    assert lm.language in ("zh", "ja")
    vocab = lm.vocab
    word = next(t for t in vocab.tokens if len(t) > 1 and t not in vocab.tokens[:5] and not t.startswith("##"))
    piece = next(t for t in vocab.tokens if t.startswith("##") and len(t) > 2)
    char = next(t for t in vocab.tokens if len(t) == 1 and "\u4e00" <= t <= "\u9fff")  # an ideograph
    masks = [[(word, 0.5)], [(piece, 0.4)], [(char, 0.3)]]
    text = filled_text(SimpleNamespace(vocab=vocab, language=lm.language), sentence, masks)
    rest = sentence.split("[MASK]")
    # "##" joins the token before it; no spaces are added around CJK text
    assert text == prefix + word + piece[2:] + rest[2] + char + rest[3]
    assert cli_main(["fill-mask", str(run), sentence, "--precision", "fp32"]) == 0
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  filled: ")]
    assert len(shown) == 1 and shown[0].removeprefix("  filled: ").startswith(prefix)
    assert "##" not in shown[0]
