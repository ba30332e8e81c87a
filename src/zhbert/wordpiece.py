"""WordPiece vocabularies trained with Hugging Face ``tokenizers`` (``prepare --tokenizer wordpiece``).

The trainer sees text exactly as BERT's tokenizer will cut it (BertNormalizer
without lower-casing or accent stripping, BertPreTokenizer: CJK ideographs and
punctuation are words of their own), so every piece it learns can be matched.
The result is an ordinary ``zhbert.vocab.Vocab``: the five special tokens, then
the pieces sorted (words before "##" continuations, then by codepoint), so the
file does not depend on the order of the trainer's hash maps. Which of several
equally frequent merges make the last places can still differ from run to run
(the trainer breaks such ties in hash order, measured on a 100-sentence text):
the tokenizer of a data directory is its vocab.txt, never a re-training. Ids equal ``BertTokenizerFast(vocab=vocab.txt,
do_lower_case=False)``'s (tests/test_vocab.py).

The trainer always keeps the whole alphabet (every character of the text and
its "##" form), so a --vocab-size below specials + alphabet cannot be met:
that is a UserError naming the minimum.
"""

from __future__ import annotations

from typing import Iterable

from zhbert.errors import UserError
from zhbert.vocab import MAX_WORD_CHARS, SPECIAL_TOKENS, UNK, Vocab

DEFAULT_SIZE = 30522  # bert-base-uncased's vocabulary size


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=MAX_WORD_CHARS))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=False, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int, min_freq: int = 1) -> Vocab:
    """A WordPiece vocabulary of at most ``vocab_size`` tokens (specials included) for ``texts``."""
    from tokenizers import trainers

    if vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                        f"got {vocab_size}")
    tok = _tokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_freq,
                                        special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                        continuing_subword_prefix="##")
    tok.train_from_iterator(texts, trainer)
    pieces = [t for t in tok.get_vocab() if t not in SPECIAL_TOKENS]
    if len(pieces) + len(SPECIAL_TOKENS) > vocab_size:
        raise UserError(
            f"--vocab-size {vocab_size} is smaller than the {len(SPECIAL_TOKENS)} special tokens "
            f"plus the training text's alphabet ({len(pieces)} characters and ##characters): "
            f"use --vocab-size {len(pieces) + len(SPECIAL_TOKENS)} or more")
    pieces.sort(key=lambda t: (t.startswith("##"), t))
    return Vocab(SPECIAL_TOKENS + tuple(pieces))
