import numpy as np
import pytest

from zhbert.datadir import SplitArrays, new_manifest, open_data_dir, write_manifest, write_split
from zhbert.errors import UserError
from zhbert.vocab import SPECIAL_TOKENS, Vocab


def _make(tmp_path):
    vocab = Vocab(SPECIAL_TOKENS + tuple("中国人民"))
    vocab.save(tmp_path / "vocab.txt")
    arr = SplitArrays(tokens=np.array([5, 6, 7, 8, 5], np.uint16),
                      sentences=np.array([0, 2, 5]), documents=np.array([0, 2]), word_starts=None)
    write_split(tmp_path, "train", arr)
    write_manifest(tmp_path, new_manifest({}, [], vocab, {"train": {"documents": 1}}, False))
    return vocab


def test_roundtrip(tmp_path):
    vocab = _make(tmp_path)
    dd = open_data_dir(tmp_path, expect_vocab_sha256=vocab.sha256)
    s = dd.split("train")
    assert s.num_documents == 1 and s.num_sentences == 2
    assert [vocab.tokens[i] for i in s.sentence(1)] == list("人民中")


def test_version_and_vocab_mismatch_are_user_errors(tmp_path):
    _make(tmp_path)
    with pytest.raises(UserError, match="differs"):
        open_data_dir(tmp_path, expect_vocab_sha256="0" * 64)
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + ("x",)))
    with pytest.raises(UserError, match="vocab hash"):
        open_data_dir(tmp_path)
    with pytest.raises(UserError, match="not found"):
        open_data_dir(tmp_path / "nope")


def test_a_directory_without_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(UserError, match=r"data manifest not found: .*manifest.json; .* is not a "
                                        r"data directory; make one with `zhbert prepare"):
        open_data_dir(tmp_path)


def test_a_file_given_as_the_data_directory_is_named_a_file(tmp_path):
    """`train --data /etc/passwd` said "data directory not found ... create it with
    `zhbert prepare builtin --out /etc/passwd`": an --out over the user's file."""
    text = tmp_path / "corpus.txt"
    text.write_text("北京是中国的首都。\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        open_data_dir(text)
    assert str(err.value) == (f"{text} is a file, not a data directory; make one from it with "
                              f"`zhbert prepare {text} --out NEW_DIR` and give NEW_DIR")
