"""Character vocabulary in BERT's vocab.txt format.

Layout: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then tokens by
descending frequency. Tokens are single characters; a non-CJK character that
continues a latin/digit word is stored as "##c", exactly as BERT's WordPiece
would produce it over a character vocabulary, so that
``transformers.BertTokenizerFast(vocab_file=...)`` yields the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_text

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise UserError("vocabulary must start with " + ", ".join(SPECIAL_TOKENS))
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        """Id of ``token``; the [UNK] id when it is not in the vocabulary."""
        return self._index.get(token, 1)  # type: ignore[attr-defined]

    def __contains__(self, token: str) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    pad_id = property(lambda self: 0)
    unk_id = property(lambda self: 1)
    cls_id = property(lambda self: 2)
    sep_id = property(lambda self: 3)
    mask_id = property(lambda self: 4)

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, "\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"vocabulary file not found: {path}") from None
        except UnicodeDecodeError:
            raise UserError(f"vocabulary file {path} is not UTF-8; recreate it with zhbert prepare") from None
        tokens = tuple(line for line in text.split("\n") if line != "")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise UserError(f"{path} is not a zhbert vocabulary (it must start with "
                            f"{', '.join(SPECIAL_TOKENS)}); recreate it with zhbert prepare")
        return cls(tokens)
