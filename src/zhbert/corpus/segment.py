"""Word starts for whole-word masking, per segmenter (``Language.segmenter``).

``word_start_flags(segmenter, text)`` -> (len(text),) uint8, 1 where a word
starts; prepare reads it at each token's character offset, so a token starts
a word iff its first character does.

- "jieba" (Chinese): jieba's default mode, HMM on. jieba's blocks never span
  a "\\n", so sentences joined by "\\n" are cut exactly as each one alone.
- "fugashi" (Japanese): MeCab through fugashi with the unidic-lite dictionary
  (both pip packages), one call per line.
- "wordpiece" (English): the words of BERT's basic tokenizer (whitespace and
  punctuation), so WordPiece continuation pieces ("##ing") never start a word:
  Google's whole-word masking.

Each analyser is built once per process (workers build their own).
"""

from __future__ import annotations

import functools

import numpy as np

from zhbert.errors import UserError


@functools.lru_cache(maxsize=1)
def jieba():
    import logging

    import jieba as _jieba
    _jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter per worker
    _jieba.initialize()
    return _jieba


@functools.lru_cache(maxsize=1)
def fugashi_tagger():
    try:
        import fugashi
        return fugashi.Tagger()  # finds unidic-lite's dictionary by itself
    except (ImportError, RuntimeError) as exc:
        raise UserError(f"Japanese word boundaries need fugashi and unidic-lite ({exc}); "
                        "pip install fugashi unidic-lite, or pass --no-word-boundaries") from None


def _jieba_flags(text: str, flags: np.ndarray) -> None:
    flags[[start for _, start, _ in jieba().tokenize(text)]] = 1


def _fugashi_flags(text: str, flags: np.ndarray) -> None:
    tagger = fugashi_tagger()
    base = 0
    for line in text.split("\n"):
        pos = 0
        for word in tagger(line):
            found = line.find(word.surface, pos)
            if found >= 0:  # MeCab skips spaces; its surfaces are the line's own characters
                flags[base + found] = 1
                pos = found + len(word.surface)
        base += len(line) + 1


def _wordpiece_flags(text: str, flags: np.ndarray) -> None:
    from zhbert.vocab import bert_words
    flags[[offset for _, offset in bert_words(text, specials=False)]] = 1  # as prepare encodes


_FLAGGERS = {"jieba": _jieba_flags, "fugashi": _fugashi_flags, "wordpiece": _wordpiece_flags}


def word_start_flags(segmenter: str, text: str) -> np.ndarray:
    """(len(text),) uint8: 1 where ``segmenter`` starts a word."""
    flags = np.zeros(len(text), np.uint8)
    if text:
        _FLAGGERS[segmenter](text, flags)
    return flags
