"""fill-mask reads its sentences as training read its text: the same normalisation
(corpus.clean.clean_text with the data directory's options), a warning where a character
is still [UNK], and a "filled" line written as the language writes (no spaces between
Japanese words)."""

import json
from types import SimpleNamespace

import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.fillmask import fill_mask, filled_text, load_masked_lm, make_masked_lm
from zhbert.vocab import SPECIAL_TOKENS, Vocab

TRADITIONAL, SIMPLIFIED = "北京是中國的[MASK]都。", "北京是中国的[MASK]都。"


def test_sentences_get_the_training_normalisation_and_keep_their_masks(trained_run):
    lm = load_masked_lm(trained_run, precision="fp32")
    assert "國" not in lm.vocab and "国" in lm.vocab  # t2s ran before the vocabulary was built
    # 國 read as 国, not as [UNK] (one sentence a call: the same ids, the same numbers)
    assert fill_mask(lm, TRADITIONAL, top_k=5) == fill_mask(lm, SIMPLIFIED, top_k=5)
    assert fill_mask(lm, "我用ＡＰＰ买了[MASK]机。") == fill_mask(lm, "我用APP买了[MASK]机。")  # NFKC
    from zhbert.corpus.clean import CleanConfig
    from zhbert.datadir import open_data_dir
    from zhbert.fillmask import normalize

    manifest = open_data_dir(trained_run.parent / "data").manifest
    assert lm.clean == CleanConfig.from_json(manifest["config"]["clean"])
    assert normalize(lm, TRADITIONAL) == SIMPLIFIED
    # characters only: no sentence filter drops a short or non-Chinese one, and no [MASK] is
    # lost, not even to the URL remover
    assert normalize(lm, " [MASK]\u200b ") == "[MASK]"
    assert normalize(lm, "見 http://x.cn/[MASK] [MASK]") == "见 [MASK] [MASK]"


def test_clean_options_follow_the_data_and_default_to_the_languages(trained_run):
    """An export (its config.json names the language only) gets prepare's default for the
    language: t2s for Chinese, no script conversion for Japanese, NFKC for both; a run
    its data manifest's options."""
    lm = load_masked_lm(trained_run, precision="fp32")
    args = (lm.model, lm.vocab, lm.max_len, "cpu")
    zh, ja = make_masked_lm(*args, language="zh"), make_masked_lm(*args, language="ja")
    assert fill_mask(zh, TRADITIONAL) == fill_mask(zh, SIMPLIFIED)
    assert fill_mask(ja, TRADITIONAL) != fill_mask(ja, SIMPLIFIED)
    assert fill_mask(ja, "ＡＢＣの[MASK]") == fill_mask(ja, "ABCの[MASK]")
    from zhbert.fillmask import normalize

    assert (ja.clean.script, ja.clean.language) == ("keep", "ja")
    keep = make_masked_lm(*args, clean={**lm.clean.to_json(), "script": "keep"})
    assert normalize(keep, TRADITIONAL) == TRADITIONAL


def test_cli_shows_the_normalised_sentence_and_names_unknown_characters(trained_run, capsys):
    emoji = "我用😀买了[MASK]机。"
    assert cli_main(["fill-mask", str(trained_run), TRADITIONAL, emoji, "--json", "--top-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r.get("normalized") for r in rows] == [SIMPLIFIED, emoji]
    assert [r.get("unknown") for r in rows] == [[], ["😀"]]
    assert rows[0]["filled"].startswith("北京是中国的")
    assert cli_main(["fill-mask", str(trained_run), TRADITIONAL, emoji, "--top-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [TRADITIONAL, f"  normalized: {SIMPLIFIED}"]
    assert out[out.index(emoji) + 1] == "  warning: not in the vocabulary, read as [UNK]: 😀"
    assert not any(line.startswith("  normalized: 我用") for line in out)  # shown only where it differs
    from zhbert.fillmask import unknown_chars

    vocab = load_masked_lm(trained_run, precision="fp32").vocab
    assert unknown_chars(vocab, emoji + "[UNK]") == ["😀"]  # a literal [UNK] is no surprise


# WordPiece vocabularies in miniature; Japanese: kana runs are words, "##" pieces continue them
VOCAB = Vocab(SPECIAL_TOKENS + tuple(
    "田 中 さん ##は は で 本 を 買 い ##ま ##し ##た 。 の 猫 "  # ja
    "他 在 公 司 工 作 了 年 AB ##C 3 "  # zh
    "Paris is the of . capital city France They are play ##ing in park ##s".split()))  # en


@pytest.mark.parametrize("language, sentence, tokens, expected", [
    ("ja", "田中さんは[MASK][MASK]で本を買いました。", ["は", "は"], "田中さんはははで本を買いました。"),
    ("ja", "田中さん[MASK]の[MASK]。", ["##は", "猫"], "田中さんはの猫。"),
    ("zh", "他在[MASK][MASK]公司工作了[MASK]年。", ["AB", "##C", "3"], "他在ABC公司工作了3年。"),
    ("en", "Paris is the[MASK][MASK] of [MASK].", ["capital", "city", "France"],
     "Paris is the capital city of France."),
    ("en", "They are play [MASK] in the [MASK][MASK].", ["##ing", "park", "##s"],
     "They are playing in the parks."),
])
def test_filled_text_writes_as_the_language_does(language, sentence, tokens, expected):
    """No spaces between Japanese (or Chinese) words; "##" glued; spaces kept where the
    sentence has them, and added between English words."""
    lm = SimpleNamespace(vocab=VOCAB, language=language)
    assert filled_text(lm, sentence, [[(t, 0.5)] for t in tokens]) == expected


def test_a_sentence_without_mask_gets_an_example_in_the_models_language():
    """An English model was told "e.g. 北京是中国的[MASK]都。"; "[mask]" got the same line."""
    from zhbert.errors import UserError
    from zhbert.fillmask import encode_masked
    from zhbert.vocab import SPECIAL_TOKENS, Vocab
    vocab = Vocab(SPECIAL_TOKENS + ("the",))
    with pytest.raises(UserError, match=r"write \[MASK\] where .*e\.g\. Paris is the \[MASK\] of France\."):
        encode_masked(vocab, "The capital of France is Paris.", 64, language="en")
    with pytest.raises(UserError, match=r"write \[MASK\] \(in capitals\) where .*北京是中国的\[MASK\]都。"):
        encode_masked(vocab, "北京是中国的[mask]都。", 64)
    # a Chinese input method types the mask full-width: it said only "no [MASK]"; it is now
    # the mask (tests/test_fillmask_spellings.py), and its lower case gets the hint
    with pytest.raises(UserError, match=r"write \[MASK\] \(in capitals\) where"):
        encode_masked(vocab, "北京是中国的［ｍａｓｋ］都。", 64)


def test_an_input_table_whose_every_row_was_skipped_says_so(trained_run, tmp_path, capsys):
    """Every row skipped (a quote that never closes) ended in "give a sentence with [MASK]
    ... or --input FILE", though --input was given (a re-test)."""
    table = tmp_path / "t.csv"
    table.write_text('text,answer\n"今天天气很[MASK]。,好\n', encoding="utf-8")
    assert cli_main(["fill-mask", str(trained_run), "--input", str(table)]) == 2
    err = capsys.readouterr().err
    assert f"--input file {table} holds no sentence to fill" in err and "or --input FILE" not in err


def test_a_run_whose_config_is_corrupt_is_named_as_such(trained_run, tmp_path, capsys):
    """fill-mask on a run whose config.json is garbage said "neither a run directory nor an
    exported model; check the path", where export and eval name the corrupt file."""
    import shutil
    from zhbert.cli import main
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "config.json").write_text("garbage{{", encoding="utf-8")
    assert main(["fill-mask", str(run), "北京是中国的[MASK]都。"]) == 2
    err = capsys.readouterr().err
    assert f"run config {run / 'config.json'} is corrupt" in err and "neither" not in err
