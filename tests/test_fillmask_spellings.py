"""The mask token as typed: a Chinese input method writes [MASK] with full-width brackets,
full-width letters, or both. Cleaning's NFKC turned full-width letters to ASCII but kept
full-width brackets (CJK punctuation), so [ＭＡＳＫ] was a mask while ［MASK］ and ［ＭＡＳＫ］
were refused. Every mix of widths now reads as [MASK], by one rule (fillmask.MASK_SPELLINGS)
that both normalize and encode_masked apply; lower case is still refused with a hint."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.corpus.clean import CleanConfig
from zhbert.errors import UserError
from zhbert.fillmask import encode_masked, fill_mask, load_masked_lm, normalize
from zhbert.vocab import SPECIAL_TOKENS, Vocab

WIDE = dict(zip("[MASK]", "［ＭＡＳＫ］"))
# every mix of ASCII and full-width, character by character: 2**6 spellings of [MASK]
SPELLINGS = ["".join(WIDE[c] if wide else c for c, wide in zip("[MASK]", mix))
             for mix in itertools.product((False, True), repeat=6)]
VOCAB = Vocab(SPECIAL_TOKENS + tuple("北京是中国的首都。"))


@pytest.mark.parametrize("mask", SPELLINGS)
def test_every_mix_of_widths_is_the_mask_token(mask):
    ids = encode_masked(VOCAB, f"北京是中国的{mask}都。", 64)
    assert ids == encode_masked(VOCAB, "北京是中国的[MASK]都。", 64)
    assert ids.count(VOCAB.mask_id) == 1


@pytest.mark.parametrize("mask", ["［MASK］", "[ＭＡＳＫ]", "［ＭＡＳＫ］", "［MASK]", "[ＭAＳK］"])
def test_normalize_writes_each_spelling_as_the_ascii_mask(mask):
    """What `zhbert fill-mask` shows as "normalized:" and hands the model: [MASK] in ASCII
    whatever the spelling (not "［MASK］", half folded by NFKC), also where the URL remover
    would otherwise take it into a URL."""
    lm = SimpleNamespace(clean=CleanConfig())
    assert normalize(lm, f"北京是中國的{mask}都。{mask}") == "北京是中国的[MASK]都。[MASK]"
    assert normalize(lm, f"见 http://x.cn/{mask}") == "见 [MASK]"


@pytest.mark.parametrize("mask", ["[mask]", "［ｍａｓｋ］", "[Mask]", "［ｍASK］"])
def test_lower_case_is_still_refused_with_the_capitals_hint(mask):
    with pytest.raises(UserError, match=r"no \[MASK\] in the sentence; write \[MASK\] \(in capitals\)"):
        encode_masked(VOCAB, f"北京是中国的{mask}都。", 64)


def test_other_compatibility_letters_get_the_ascii_hint():
    with pytest.raises(UserError, match=r"write \[MASK\] \(in ASCII letters\) where"):
        encode_masked(VOCAB, "北京是中国的[ⓂⒶⓈⓀ]都。", 64)


def test_fill_mask_reads_each_spelling_as_the_ascii_mask(trained_run):
    lm = load_masked_lm(trained_run, precision="fp32")
    ascii_mask = fill_mask(lm, "北京是中国的[MASK]都。", top_k=3)
    for mask in ("［ＭＡＳＫ］", "［MASK］", "[ＭＡＳＫ]"):
        assert fill_mask(lm, f"北京是中国的{mask}都。", top_k=3) == ascii_mask
