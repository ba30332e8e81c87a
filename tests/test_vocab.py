import itertools
import sys
from collections import Counter

import pytest

from zhbert.errors import UserError
from zhbert.vocab import SPECIAL_TOKENS, Vocab, bert_words, build_vocab, count_units

TRICKY = [
    "中国hello 25℃!我[MASK]中 ab",
    "Ｆｕｌｌ　ｗｉｄｔｈ，全角！ and ASCII, punctuation... (yes) [no] {maybe} $5 +1 <a=b> ^_^ `x` |y| ~z",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic\u2028line",
    "zero\u200bwidth\u200djoin a\x00b c\ufffdd e\x07f \ue000private \u0378unassigned",
    "emoji 😀👍🏽 and 🇨🇳 flags, kaomoji (＾▽＾) ♥ ★ ° ± × ÷ → ©®™ €£¥￥",
    "café naïve Ångström résumé ÀÉÎÕÜ ǅ ß İ ﬁ",
    "x" * 100 + " " + "y" * 101 + " 中" + "z" * 120,
    "abc##def ## #a a# 3.14159 1,000,000 2024-01-01 12:30 50% v1.2.3 e-mail@example.com",
    "[UNK][CLS]x[SEP] [PAD] [mask] [MASK [MASK]] [[UNK]]",
    "𠀀𠀁 𪜀 𫝀 𫠠 𬺰 㐀 豈 〇 ⺀ 々 ー ㄅ ㄆ 한국어 日本語のかな カタカナ",
    "Ελληνικά кириллица עברית العربية ไทย देवनागरी",
    "unknownword 未见字 xq 囧 Zz",
]


def _hf(vocab: Vocab, tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab.save(tmp_path / "vocab.txt")
    # transformers 5 ignores vocab_file= here (all ids become [UNK]); vocab= is the path
    return transformers.BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=False)


def _hf_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_build_vocab_order_ties_and_limits():
    counts = Counter({"b": 5, "a": 5, "中": 9, "##x": 1, "c": 2, "[UNK]": 100})
    v = build_vocab(counts, min_freq=1, max_size=100)
    assert v.tokens == SPECIAL_TOKENS + ("中", "a", "b", "c", "##x")  # ties by codepoint
    assert build_vocab(counts, min_freq=2).tokens == SPECIAL_TOKENS + ("中", "a", "b", "c")
    assert build_vocab(counts, max_size=7).tokens == SPECIAL_TOKENS + ("中", "a")
    assert v.num_chars == 4
    with pytest.raises(UserError, match="min-freq"):
        build_vocab(counts, min_freq=0)
    with pytest.raises(UserError, match="max-vocab"):
        build_vocab(counts, max_size=5)


def test_count_units_uses_wordpiece_units():
    counts = count_units(["hello world 中国!", "25℃", "[MASK]中", "q" * 101])
    assert counts == Counter({"h": 1, "##e": 1, "##l": 3, "##o": 2, "w": 1, "##r": 1, "##d": 1,
                              "中": 2, "国": 1, "!": 1, "2": 1, "##5": 1, "##℃": 1})


def test_bert_words_offsets():
    text = "ab 中[MASK]c\u200bd!"
    assert list(bert_words(text)) == [("ab", 0), ("中", 3), ("[MASK]", 4), ("cd", 10), ("!", 13)]


def test_tricky_strings_match_hf(tmp_path):
    # the vocabulary leaves some units out, so [UNK] handling is exercised too
    counts = count_units(TRICKY)
    for missing in ("囧", "未", "##q", "Z", "##ß"):
        counts.pop(missing, None)
    vocab = build_vocab(counts)
    tok = _hf(vocab, tmp_path)
    for text in TRICKY:
        assert vocab.encode(text) == _hf_ids(tok, text), text
    assert vocab.unk_id in vocab.encode(TRICKY[-1])


def _cleaned_builtin_sentences(n_docs: int) -> list[str]:
    from zhbert.corpus.clean import CleanConfig, clean_document
    from zhbert.corpus.sources import iter_documents, resolve_sources

    cfg = CleanConfig()
    sentences = []
    for info in resolve_sources(["builtin"]):
        for doc in itertools.islice(iter_documents(info), n_docs):
            cdoc = clean_document(doc, cfg)
            if cdoc is not None:
                sentences.extend(cdoc.sentences)
    return sentences


@pytest.fixture(scope="module")
def real_text():
    sentences = _cleaned_builtin_sentences(150)
    assert len(sentences) > 2000
    return sentences


def test_real_cleaned_text_matches_hf(tmp_path, real_text):
    # train on half, min_freq 2: rare characters of the other half become [UNK]
    vocab = build_vocab(count_units(real_text[::2]), min_freq=2)
    tok = _hf(vocab, tmp_path)
    ours = [vocab.encode(s) for s in real_text]
    theirs = tok(real_text, add_special_tokens=False)["input_ids"]
    assert ours == theirs
    assert any(vocab.unk_id in ids for ids in ours)  # the comparison covered [UNK]
    assert any(any(vocab.tokens[i].startswith("##") for i in ids) for ids in ours)


def test_offsets_agree_with_encode_and_decode_round_trips(real_text):
    vocab = build_vocab(count_units(real_text[::2]), min_freq=2)
    for s in real_text[:500] + TRICKY:
        ids, offsets = vocab.encode_with_offsets(s)
        ids, offsets = ids.tolist(), offsets.tolist()
        assert ids == vocab.encode(s)
        assert len(offsets) == len(ids) and offsets == sorted(offsets)
        assert vocab.encode(vocab.decode(ids)) == ids, s
    assert vocab.decode(vocab.encode("hello world 中国")) == "[UNK][UNK]中国"
    latin = build_vocab(count_units(["hello world 中国, 25℃"]))
    assert latin.decode(latin.encode("hello   world中国 ,25℃")) == "hello world中国,25℃"


def test_every_bmp_codepoint_matches_hf(tmp_path):
    chars = [chr(c) for c in range(0x20, 0x10000) if not 0xD800 <= c < 0xE000]
    _codepoint_parity(chars, tmp_path)


@pytest.mark.slow
def test_every_codepoint_matches_hf(tmp_path):
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000]
    _codepoint_parity(chars, tmp_path)


def _codepoint_parity(chars: list[str], tmp_path) -> None:
    """Each character alone, inside a word and after a space, against HF."""
    units = [c for c in chars if c.strip() == c and c != "\n"]
    vocab = Vocab(SPECIAL_TOKENS + tuple(dict.fromkeys(["a", "##a"] + units + ["##" + c for c in units])))
    tok = _hf(vocab, tmp_path)
    texts = ["".join(f"a{c}a {c} " for c in chars[i:i + 500]) for i in range(0, len(chars), 500)]
    theirs = tok(texts, add_special_tokens=False)["input_ids"]
    for text, expected in zip(texts, theirs):
        if vocab.encode(text) != expected:  # find the culprit for a readable failure
            for c in text[1::5]:
                probe = f"a{c}a {c} "
                assert vocab.encode(probe) == _hf_ids(tok, probe), f"U+{ord(c):04X}"


def test_wordpiece_vocab_ids_equal_hf_on_tricky_text(tmp_path):
    """A trained WordPiece vocab.txt (multi-character pieces, "##" pieces) encodes every
    tricky text as BertTokenizerFast loaded from the same file does."""
    from zhbert.wordpiece import train_wordpiece

    english = ["The tokenizer splits unbelievable words into pieces, doesn't it?",
               "Wordpieces: tokenization, tokenizers, tokenized; 3.14159 and 2,718!"]
    vocab = train_wordpiece((TRICKY + english) * 3, 400)
    assert any(len(t) > 3 and t.startswith("##") for t in vocab.tokens)
    tok = _hf(vocab, tmp_path)
    for text in TRICKY + english + ["untokenizable ##x tokenizations"]:
        assert vocab.encode(text) == _hf_ids(tok, text), text
        ids, offsets = vocab.encode_with_offsets(text)
        assert ids.tolist() == vocab.encode(text)


def test_a_corpus_reads_literal_special_tokens_as_text(tmp_path):
    """specials=False (prepare's): "[MASK]" in an article about BERT is the text "[", "mask",
    "]", as HF's encode_special_tokens reads it; it was the [MASK] id inside a sentence."""
    text = "句子里有[MASK]和[SEP]，还有[UNK][CLS]x[PAD]。"
    counts = count_units([text], specials=False)
    assert {"[", "]", "M", "##A", "##S", "##K"} <= set(counts) and not set(SPECIAL_TOKENS) & set(counts)
    vocab = build_vocab(counts)
    ids, offsets = vocab.encode_with_offsets(text, specials=False)
    assert not set(ids.tolist()) & set(range(len(SPECIAL_TOKENS)))
    tok = _hf(vocab, tmp_path)
    assert ids.tolist() == tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert [w for w, _ in bert_words(text, specials=False)][4:7] == ["[", "MASK", "]"]
    assert vocab.encode(text, specials=False) == ids.tolist()
    assert vocab.mask_id in vocab.encode(text)  # fill-mask's reading is unchanged
