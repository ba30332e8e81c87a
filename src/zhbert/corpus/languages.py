"""The languages ``zhbert prepare --language`` knows: every per-language rule in one table.

A ``Language`` says which characters are its own script (the script-ratio
filter), how its sentences end, whether OpenCC applies, which tokenizer and
word segmenter it uses by default, the MediaWiki namespace and template names
of its dumps, and the dataset-report thresholds that make sense for it. The
modules that do the work (clean, prepare, wiki, report) look the rules up
here by code instead of branching on the language themselves.

Everything here is picklable by name: a ``CleanConfig`` carries only the code,
and each worker process looks the language up again.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from zhbert.errors import UserError

TOKENIZERS = ("char", "wordpiece")
SEGMENTERS = ("jieba", "fugashi", "wordpiece")

_IDEO = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_KANA = "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"


@dataclass(frozen=True)
class Language:
    code: str                 # "zh", "en", "ja": what --language takes
    name: str                 # "Chinese"
    script: str               # the characters counted by the script-ratio filter (a regex class body)
    script_name: str          # how messages name them
    drop_reason: str          # report key for sentences dropped by the script filter
    splitter: str             # sentence splitter: "zh" | "ja" | "en" (see corpus.sentences)
    opencc: bool              # OpenCC script conversion applies (Chinese only)
    tokenizer: str            # default --tokenizer
    segmenter: str            # whole-word masking boundaries: "jieba" | "fugashi" | "wordpiece"
    max_sentence_chars: int   # default --max-sentence-chars (English sentences are longer in characters)
    word_spaces: bool         # words are written with spaces between them (decoded text too)
    mask_example: str         # a fill-mask example (model cards, messages)
    # MediaWiki dumps: namespace names of categories and files, disambiguation markers
    wiki_category: tuple[str, ...]
    wiki_file: tuple[str, ...]
    wiki_disambig_templates: tuple[str, ...]
    wiki_disambig_categories: tuple[str, ...]
    # templates whose text is prose (every other template is dropped): name (lower case) ->
    # the positional parameters shown, joined by a space ({{lang|en|word}} -> "word")
    wiki_text_templates: tuple[tuple[str, tuple[int, ...]], ...]
    # `zhbert data report` defaults: vocabulary size and average sentence length (characters)
    report_min_vocab: int
    report_avg_len: tuple[float, float]
    # characters the language's prose is never without (a regex class body), "" for none:
    # Japanese kana (Chinese text passes the kanji-and-kana filter, and --language ja on it
    # went without a word); prepare warns where the training text hardly has them
    telltale: str = ""
    telltale_name: str = ""

    @property
    def default_conversion(self) -> str:
        """`zhbert prepare`'s --script default (a CleanConfig.script): OpenCC's traditional ->
        simplified where it applies, else the text's own characters. fill-mask falls back to
        it for an exported model from before config.json recorded ``zhbert_clean``."""
        return "t2s" if self.opencc else "keep"

    @functools.cached_property
    def _non_script_re(self) -> re.Pattern:
        return re.compile(f"[^{self.script}]")

    @functools.cached_property
    def telltale_re(self) -> re.Pattern | None:
        return re.compile(f"[{self.telltale}]") if self.telltale else None

    def script_ratio(self, s: str) -> float:
        """Share of the language's own script among the non-space characters of ``s``."""
        n = len("".join(s.split()))
        # counting the (few) other characters is faster than counting the script's
        return (len(s) - len(self._non_script_re.findall(s))) / n if n else 0.0


LANGUAGES: dict[str, Language] = {
    "zh": Language(
        code="zh", name="Chinese", script=_IDEO, script_name="CJK ideographs",
        drop_reason="low_chinese", splitter="zh", opencc=True, tokenizer="char",
        segmenter="jieba", max_sentence_chars=256, word_spaces=False,
        mask_example="北京是中国的[MASK]都。",
        wiki_category=("category", "分类", "分類"),
        wiki_file=("file", "image", "media", "文件", "檔案", "档案", "图像", "圖像", "图片", "圖片",
                   "媒体", "媒體", "媒体文件", "媒體檔案"),
        wiki_disambig_templates=("disambig", "disambiguation", "dab", "消歧义", "消歧義", "消歧义页",
                                 "消歧義頁", "hndis", "geodis"),
        wiki_disambig_categories=("消歧义", "消歧義", "消歧义页", "消歧義頁", "disambiguation pages"),
        wiki_text_templates=(),
        report_min_vocab=10_000, report_avg_len=(30.0, 100.0)),
    "ja": Language(
        code="ja", name="Japanese", script=_IDEO + _KANA, script_name="kanji and kana",
        drop_reason="low_script", splitter="ja", opencc=False, tokenizer="char",
        segmenter="fugashi", max_sentence_chars=256, word_spaces=False,
        mask_example="東京は日本の[MASK]都です。",
        wiki_category=("category", "カテゴリ"),
        wiki_file=("file", "image", "media", "ファイル", "画像", "メディア"),
        wiki_disambig_templates=("aimai", "曖昧さ回避", "人名の曖昧さ回避", "地名の曖昧さ回避",
                                 "disambig"),
        wiki_disambig_categories=("曖昧さ回避",),
        wiki_text_templates=(("仮リンク", (1,)), ("lang", (2,)), ("en", (1,)), ("読み仮名", (1,)),
                             ("読み仮名 ruby不使用", (1,)), ("ruby", (1,)), ("要出典範囲", (1,)),
                             ("nowrap", (1,)), ("補助漢字フォント", (1,)), ("jis2004フォント", (1,)),
                             ("unicode", (1,)), ("convert", (1, 2))),
        report_min_vocab=3_000, report_avg_len=(20.0, 100.0), telltale=_KANA, telltale_name="kana"),
    "en": Language(
        code="en", name="English", script=_LATIN, script_name="Latin letters",
        drop_reason="low_script", splitter="en", opencc=False, tokenizer="wordpiece",
        segmenter="wordpiece", max_sentence_chars=512, word_spaces=True,
        mask_example="Paris is the [MASK] of France.",
        wiki_category=("category",),
        wiki_file=("file", "image", "media"),
        wiki_disambig_templates=("disambiguation", "disambig", "dab", "hndis", "geodis",
                                 "set index article"),
        wiki_disambig_categories=("disambiguation pages", "all disambiguation pages"),
        wiki_text_templates=(("lang", (2,)), ("nowrap", (1,)), ("convert", (1, 2)),
                             ("ill", (1,)), ("interlanguage link", (1,)), ("transl", (2,)),
                             ("nihongo", (1,)), ("nobr", (1,)), ("small", (1,)), ("em", (1,))),
        report_min_vocab=5_000, report_avg_len=(40.0, 250.0)),
}
DEFAULT = "zh"


def get(code: str) -> Language:
    """The language ``code``; a UserError naming the known ones otherwise."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise UserError(f"unknown language {code!r}; zhbert prepare knows "
                        f"{', '.join(LANGUAGES)} (--language)") from None

