"""An English WordPiece run end to end: prepare -> train -> export -> fill-mask, and the
Hugging Face tokenizer and pipeline agree with zhbert's own output."""

import json

import pytest

from trained_run import SMALL
from zhbert.cli import main as cli_main

SENTENCES = ["The fire [MASK] are working in the Blue Mountains.", "The government said it would [MASK] the plan!",
             "Police have [MASK] two men over the attack."]


@pytest.fixture(scope="module")
def english_run(tmp_path_factory):
    from zhbert.config import load_config
    from zhbert.train import main as train_main

    pytest.importorskip("gensim")  # ships the English news used here
    from zhbert.corpus import builtin_en

    root = tmp_path_factory.mktemp("en_run")
    news = dict(builtin_en.files())["builtin-en"].read_text(encoding="utf-8").splitlines()[:120]
    src = root / "en.txt"
    src.write_text("\n\n".join(news), encoding="utf-8")
    data = root / "data"
    assert cli_main(["prepare", str(src), "--language", "en", "--vocab-size", "600", "--out", str(data),
                     "--workers", "1", "--min-split-docs", "4", "--validation", "0.1", "--test", "0.1"]) == 0
    run = root / "run"
    train_main(load_config("tiny", SMALL + ["train.steps=10", "train.checkpoint_every=10",
                                            "train.eval_every=10"]), data, run, progress=False)
    out = root / "model"
    assert cli_main(["export", str(run), "--out", str(out)]) == 0
    return run, out


def test_export_carries_the_wordpiece_tokenizer(english_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from zhbert.fillmask import load_masked_lm

    run, out = english_run
    assert json.loads((out / "config.json").read_text())["zhbert_language"] == "en"
    card = (out / "README.md").read_text()
    assert "A BERT for English" in card and "WordPiece vocabulary" in card and "Paris is the [MASK]" in card
    lm = load_masked_lm(run, precision="fp32")
    assert any(t.startswith("##") and len(t) > 3 for t in lm.vocab.tokens)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.is_fast  # tokenizer.json
    for text in SENTENCES + ["Unbelievable wordings, e.g. 3.14 and café!"]:
        assert tok(text)["input_ids"] == [2] + lm.vocab.encode(text) + [3]


def test_pipeline_agrees_with_fill_mask(english_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pipeline_check import assert_pipeline_agrees
    from zhbert.fillmask import load_masked_lm

    run, out = english_run
    lm = load_masked_lm(out, precision="fp32")
    assert lm.language == "en"
    assert_pipeline_agrees(out, SENTENCES, lm)


def test_filled_text_joins_pieces_into_words(english_run, capsys):
    from types import SimpleNamespace

    from zhbert.fillmask import filled_text, load_masked_lm

    run, out = english_run
    vocab = load_masked_lm(run, precision="fp32").vocab
    lm = SimpleNamespace(vocab=vocab, language="en")
    piece = next(t for t in vocab.tokens if t.startswith("##") and len(t) > 3)
    masks = [[("the", 0.5)], [(piece, 0.4)], [("fire", 0.3)]]
    text = filled_text(lm, "A [MASK][MASK] [MASK], (really).", masks)
    assert text == f"A the{piece[2:]} fire, (really)."
    assert cli_main(["fill-mask", str(run), "Police [MASK] two men, [MASK] they?", "--precision", "fp32"]) == 0
    assert "  filled: Police" in capsys.readouterr().out  # the two predictions, "##" joined


def test_compare_by_characters_scales_tokens_by_the_data(english_run, tmp_path):
    from zhbert.analysis import load_history
    from zhbert.datadir import open_data_dir
    from zhbert.errors import UserError

    run, _ = english_run
    cpt = open_data_dir(run.parent / "data").characters_per_token()
    assert 1.5 < cpt < 6.0  # English WordPiece: several characters a token (600 pieces here)
    out = tmp_path / "cmp"
    # a second run to compare with: the same, started at another time (a run beside itself,
    # or a copy of its folder, is refused)
    import shutil
    other = run.parent / "run_again"
    shutil.copytree(run, other, dirs_exist_ok=True)
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["started"] = "2000-01-01T00:00:00+00:00"
    (other / "history.jsonl").write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    assert cli_main(["compare", str(run), str(other), "--x", "characters", "--metric", "eval_mlm_acc",
                     "--out", str(out)]) == 0
    j = json.loads((out / "comparison.json").read_text())
    tokens = load_history(run, "eval_mlm_acc").metric("eval_mlm_acc").tokens
    assert j["x_axis"] == "characters"
    assert j["runs"][0]["x_range"] == pytest.approx([tokens[0] * cpt, tokens[-1] * cpt])
    from zhbert.compare import load_runs
    with pytest.raises(UserError, match="needs run directories"):
        load_runs([str(other / "history.jsonl"), str(run)], "eval_mlm_acc", "characters")
