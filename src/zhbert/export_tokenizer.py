"""The exported tokenizer.json: zhbert's text cleaning as a `tokenizers` normalizer.

zhbert's fill-mask reads a sentence as `zhbert prepare` cleaned the training text
(corpus.clean.clean_text), then tokenizes it. A bare BertTokenizerFast skips the cleaning, so
full-width letters and digits (ＡＢＣ, ２５), the ideographic space and the like, which
the training text never held, were [UNK] in Hugging Face's pipeline. ``clean_normalizer``
writes clean_text's steps as `tokenizers.normalizers`, run before BERT's own normalizer:

1. newlines and tabs as clean_text maps them;
2. the invisible characters clean_text deletes (derived from its own pattern, so the two
   cannot drift apart);
3. NFKC, with the CJK punctuation clean_text keeps full-width shielded by the same
   private-use stand-ins (step 2 has deleted any the text held, as clean_text does);
4. URLs and e-mail addresses, where the data removed them (``remove_urls``);
5. the whitespace rules: runs of spaces, a space between two CJK characters, blank lines.

What a normalizer cannot do is OpenCC's script conversion (``script`` t2s/s2t): the export
records the cleaning in config.json and the model card says to convert text first. The
slow tokenizer (BertTokenizer from vocab.txt) has no normalizer at all.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from zhbert.fileio import atomic_write_text


def _onig_class(ranges: list[tuple[int, int]]) -> str:
    """A regex character class in Oniguruma's syntax (\\x{...} escapes: no quoting issues)."""
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{body}]"


def _ranges(matches) -> list[tuple[int, int]]:
    """Consecutive code points -> (first, last) ranges."""
    out: list[list[int]] = []
    for cp in matches:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [(a, b) for a, b in out]


@functools.cache
def _invisible_class() -> str:
    """Every code point clean_text's invisible-character pattern deletes, as one class: tested
    against that pattern itself (one C-level scan of all code points, surrogates left out)."""
    from zhbert.corpus.clean import invisible_re
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    hits = [ord(m.group()) for m in invisible_re().finditer(every)]
    return _onig_class(_ranges(hits))


def _python_class_to_onig(body: str) -> str:
    """clean.py's character-class bodies (literal characters and a-b ranges) in Onig syntax."""
    ranges, i = [], 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            ranges.append((ord(body[i]), ord(body[i + 2])))
            i += 3
        else:
            ranges.append((ord(body[i]), ord(body[i])))
            i += 1
    return _onig_class(ranges)


def _url_pattern() -> str:
    """clean.py's URL_RE in Onig's syntax: its re.ASCII \\w spelled out (Onig's is Unicode)."""
    from zhbert.corpus import clean
    return clean.URL_RE.pattern.replace(r"\w", "A-Za-z0-9_")


def clean_normalizer(remove_urls: bool = True):
    """clean_text (corpus.clean) minus OpenCC, as a normalizers.Sequence (module docstring).
    The same for every language: clean_text differs by language only in the script."""
    from tokenizers import Regex
    from tokenizers.normalizers import NFKC, Replace, Sequence
    from zhbert.corpus import clean

    cjk = _python_class_to_onig(clean.CJKISH)
    steps = [Replace(Regex(clean.NEWLINES_RE.pattern), "\n"),
             Replace(Regex(clean.TABS_RE.pattern), " "),
             Replace(Regex(_invisible_class()), "")]
    steps += [Replace(ch, stand_in) for ch, stand_in in clean.SHIELD]
    steps.append(NFKC())
    steps += [Replace(stand_in, ch) for ch, stand_in in clean.SHIELD]
    if remove_urls:
        steps.append(Replace(Regex(_url_pattern()), ""))
    steps += [Replace(Regex(clean.SPACES_RE.pattern), " "),
              Replace(Regex(f"(?<={cjk}) (?={cjk})"), ""),
              Replace(Regex(clean.BLANK_LINES_RE.pattern), "\n"),
              Replace(Regex(r"\A[ \n]+|[ \n]+\z"), "")]  # .strip(" \n"); \A: Onig's ^ is per line
    return Sequence(steps)


def write_tokenizer_json(vocab_path: Path, out: Path, remove_urls: bool = True) -> None:
    """tokenizer.json: BertTokenizerFast over ``vocab_path`` (do_lower_case false), serialised,
    with zhbert's cleaning (``clean_normalizer``) before BERT's own normalizer."""
    from tokenizers.normalizers import Sequence
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab=str(vocab_path), do_lower_case=False, tokenize_chinese_chars=True,
                            strip_accents=None)
    backend = tok.backend_tokenizer
    backend.normalizer = Sequence([clean_normalizer(remove_urls), backend.normalizer])
    # the bytes Tokenizer.save writes, written by Python: a full disk is an OSError naming the
    # file (the Rust writer's is a bare Exception)
    atomic_write_text(out, backend.to_str(pretty=True))
