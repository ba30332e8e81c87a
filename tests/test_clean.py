import sys
import types
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest

import zhbert.corpus
from zhbert.corpus.clean import (
    CleanConfig, chinese_ratio, clean_document, clean_text, content_hash,
    normalize_for_hash, split_long, split_sentences,
)
from zhbert.corpus.document import Document
from zhbert.errors import UserError

KEEP = CleanConfig(script="keep")


# ---------------------------------------------------------------- clean_text

def test_cjk_punctuation_survives_nfkc():
    text = "你好，世界！真的？是：对；（括号）［方］｛花｝～等等……"
    assert clean_text(text, KEEP) == text


def test_fullwidth_digits_letters_and_space_become_ascii():
    assert clean_text("１９９８年ＡＢＣａｂｃ", KEEP) == "1998年ABCabc"
    assert clean_text("Ｈｅｌｌｏ　ｗｏｒｌｄ", KEEP) == "Hello world"
    assert clean_text("中文　文字", KEEP) == "中文文字"  # ideographic space between CJK: gone
    # other compatibility forms are normalised as usual: ① -> 1, ﬁ -> fi
    assert clean_text("①ﬁ", KEEP) == "1fi"


def test_control_and_zero_width_removed():
    assert clean_text("a\u200bb\u00adc\ufeffd\u200de\x07f\ufe0fg", KEEP) == "abcdefg"
    assert clean_text("甲。\r\n乙。\r丙。\u2028丁。", KEEP) == "甲。\n乙。\n丙。\n丁。"
    assert clean_text("a\tb", KEEP) == "a b"


def test_script_conversion():
    assert clean_text("漢語", CleanConfig()) == "汉语"
    assert clean_text("汉语", CleanConfig(script="s2t")) == "漢語"
    assert clean_text("漢語", KEEP) == "漢語"


def test_urls_and_emails_removed():
    text = "详见https://example.com/a?b=1&c=2或www.example.org，联系 someone.x@mail.example.cn 。"
    assert clean_text(text, KEEP) == "详见或，联系。"
    assert "https://example.com" in clean_text(text, CleanConfig(script="keep", remove_urls=False))


def test_whitespace_collapsed_but_kept_between_latin_words():
    assert clean_text("  中 文   English   words  和 汉字 ", KEEP) == "中文 English words 和汉字"
    assert clean_text("第一行\n\n  \n第二行  \n", KEEP) == "第一行\n第二行"
    assert clean_text("他说 “好” 。", KEEP) == "他说“好”。"


# ---------------------------------------------------------------- sentences

def test_quotes_stay_with_their_sentence():
    assert split_sentences("他说：“好。”然后走了。") == ["他说：“好。”", "然后走了。"]
    assert split_sentences("书名叫《再见。》真好！「对。」") == ["书名叫《再见。》", "真好！", "「对。」"]


def test_sentence_final_punctuation_and_newlines():
    text = "你来吗？！我来了……好的；再见!OK? 没有标点\n新的一行。"
    assert split_sentences(text) == ["你来吗？！", "我来了……", "好的；", "再见!", "OK?",
                                     "没有标点", "新的一行。"]


def test_decimals_not_split():
    assert split_sentences("圆周率约为3.14，是常数。e约为2.718。") == [
        "圆周率约为3.14，是常数。", "e约为2.718。"]
    assert split_sentences("增长了3。5个百分点。") == ["增长了3。5个百分点。"]
    assert split_sentences("等等...然后") == ["等等...", "然后"]


def test_split_long_at_clauses_then_hard_cut():
    assert split_long("短句。", 10) == ["短句。"]
    s = "一二三，四五六七，八九十一二三四五六七八九十，甲"
    assert split_long(s, 8) == ["一二三，", "四五六七，", "八九十一二三四五", "六七八九十，甲"]
    # clauses are packed greedily
    assert split_long("甲乙，丙丁，戊己，庚辛。", 6) == ["甲乙，丙丁，", "戊己，庚辛。"]


def test_split_long_property():
    s = ("很长的句子没有标点" * 20 + "，" + "短一点、再短一点；") * 5
    pieces = split_long(s, 50)
    assert all(1 <= len(p) <= 50 for p in pieces)
    assert "".join(pieces) == s


# ---------------------------------------------------------------- helpers

def test_chinese_ratio():
    assert chinese_ratio("中文ab") == 0.5
    assert chinese_ratio("中 文 a b") == 0.5  # spaces do not count
    assert chinese_ratio("") == 0.0
    assert chinese_ratio("𠀀𠀁") == 1.0      # Extension B ideographs count
    assert chinese_ratio("，。") == 0.0


def test_normalize_for_hash():
    assert normalize_for_hash("Hello, 世界！ A_b") == "hello世界ab"
    assert normalize_for_hash("你好。") == normalize_for_hash("你好！ ")


# ---------------------------------------------------------------- documents

def test_clean_document_counts_reasons():
    text = ("这是第一句完整的话。好。This is English only.\n"
            "这是第一句完整的话！这是另一句中文句子。")
    doc = Document("d1", text, "test", tags=("新闻",))
    dropped = Counter()
    out = clean_document(doc, KEEP, dropped_out=dropped)
    assert out.sentences == ("这是第一句完整的话。", "这是另一句中文句子。")
    assert dropped == {"too_short": 1, "low_chinese": 1, "duplicate": 1}
    assert out.chars_in == len(text)
    assert out.chars_out == 20
    assert (out.doc_id, out.source, out.tags) == ("d1", "test", ("新闻",))
    assert out.exact_hash == content_hash(out.sentences)


def test_clean_document_long_sentence_is_split():
    text = "，".join(f"这是第{n}个较长的分句" for n in "一二三四五六七八九十") + "。"
    dropped = Counter()
    out = clean_document(Document("d", text, "t"), CleanConfig(script="keep", max_sentence_chars=25),
                         dropped_out=dropped)
    assert [len(s) for s in out.sentences] == [22, 22, 22, 22, 22]  # two 10-char clauses + commas
    assert "".join(out.sentences) == text
    assert dropped == {}


def test_clean_document_none_when_nothing_left():
    assert clean_document(Document("d", "好。OK.\n", "t"), KEEP) is None
    two = Document("d", "第一句中文句子。第二句中文句子。", "t")
    assert clean_document(two, CleanConfig(script="keep", min_document_sentences=3)) is None
    assert len(clean_document(two, CleanConfig(script="keep", min_document_sentences=2)).sentences) == 2


@pytest.fixture
def fake_wiki(monkeypatch):
    def wikitext_to_text(wikitext, language="zh"):
        if "{{disambig}}" in wikitext:
            return None
        return wikitext.replace("'''", ""), ["中國歷史", "新闻"]

    module = types.ModuleType("zhbert.corpus.wiki")
    module.wikitext_to_text = wikitext_to_text
    monkeypatch.setitem(sys.modules, "zhbert.corpus.wiki", module)
    monkeypatch.setattr(zhbert.corpus, "wiki", module, raising=False)


def test_wikitext_goes_through_wiki_module(fake_wiki):
    doc = Document("w1", "'''漢朝'''是中國的朝代。", "wiki:x", tags=("新闻",), markup="wikitext")
    out = clean_document(doc, CleanConfig())
    assert out.sentences == ("汉朝是中国的朝代。",)
    assert out.tags == ("新闻", "中国历史")  # categories merged, converted, no repeats
    assert out.chars_in == len(doc.text)
    skip = Document("w2", "{{disambig}}甲可以指：", "wiki:x", markup="wikitext")
    assert clean_document(skip, CleanConfig()) is None


def test_unknown_markup_is_an_error():
    with pytest.raises(ValueError, match="markup"):
        clean_document(Document("d", "中文句子。", "t", markup="html"), KEEP)


def test_config_validation_and_json():
    with pytest.raises(UserError, match="script"):
        CleanConfig(script="x2y")
    with pytest.raises(UserError, match="min_sentence_chars"):
        CleanConfig(min_sentence_chars=10, max_sentence_chars=5)
    with pytest.raises(UserError, match="min_script_ratio"):
        CleanConfig(min_script_ratio=1.5)
    cfg = CleanConfig(script="s2t", min_sentence_chars=3)
    assert CleanConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(UserError, match="bogus"):
        CleanConfig.from_json({"bogus": 1})


def _clean_in_worker(args):
    return clean_document(*args)


def test_runs_in_worker_processes():
    docs = [Document(f"d{i}", f"第{i}篇文章的內容。這是第二句。", "t") for i in range(4)]
    cfg = CleanConfig()
    with ProcessPoolExecutor(max_workers=1) as pool:
        remote = list(pool.map(_clean_in_worker, [(d, cfg) for d in docs]))
    local = [clean_document(d, cfg) for d in docs]
    assert remote == local
    assert remote[0].sentences == ("第0篇文章的内容。", "这是第二句。")
