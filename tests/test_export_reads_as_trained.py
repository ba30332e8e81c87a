"""An exported model reads text as its run does: Hugging Face's fast tokenizer cleans text as
`zhbert prepare` cleaned the training text (tokenizer.json's normalizer), and config.json
records the cleaning a normalizer cannot do (OpenCC's script), which the model card names
and `zhbert fill-mask EXPORT` applies."""

import dataclasses
import json
import random

import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.corpus.clean import CleanConfig, clean_text

# full-width letters, digits and space, which NFKC makes ASCII; the CJK punctuation that must
# stay full-width; zero-width and control characters, tabs and newlines; URLs; mixed text
STRINGS = ["ＡＢＣ是个字母，１２３。", "ｈｅｌｌｏ　世界", "我今年２５岁，住在北京。",
           "他说：“好！”（真的？）［注］｛甲｝～……‥", "中 国 人 民  abc  ｄｅｆ ～ ～",
           "见 http://x.com/a?b=1 和 a.b@c.org 。", "零宽\u200b字符\u00ad和\ufe0f选择符",
           "a\tb\r\nc\u2028d", "①② ㍿ ﬁ ｶﾀｶﾅ", "  前后空格　"]
MASKED = ["ＡＢＣ是[MASK]个字母，１２３。", "我今年２５岁，住在[MASK]京。",
          "ｈｅｌｌｏ　世界[MASK]好，（真的？）"]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("reads") / "model"
    assert cli_main(["export", str(trained_run), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("remove_urls", [True, False])
def test_the_normalizer_is_clean_text_without_opencc(remove_urls):
    from zhbert.export_tokenizer import clean_normalizer
    norm, cfg = clean_normalizer(remove_urls), CleanConfig(script="keep", remove_urls=remove_urls)
    alphabet = list("ＡＢａｚ０９　 \t\n\r，。！？：；（）［］｛｝～…‥“”—·、々好中abc.@/:w-_+%=?&#é"
                    "\u0301\u200b\u00ad\ufe0f\x85\u2028\uff61\uff9e\u3000\x00\ufffd") + \
        ["http://", "www.", "@x.org", "\U000F0003", "\U0001D173", "ﬁ", "①", "\u1100\u1161"]
    rng = random.Random(0)
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25))) for _ in range(3000)]
    for s in STRINGS + fuzz:
        assert norm.normalize_str(s) == clean_text(s, cfg), repr(s)


def test_the_fast_tokenizer_gives_zhberts_ids_after_its_cleaning(exported, trained_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    from zhbert.fillmask import load_masked_lm, normalize

    lm = load_masked_lm(trained_run, precision="fp32")
    tok = AutoTokenizer.from_pretrained(exported)
    for s in STRINGS + MASKED:
        assert tok(s)["input_ids"] == [2] + lm.vocab.encode(normalize(lm, s)) + [3], s
    assert tok.tokenize("ｈｅｌｌｏ　２５岁") == tok.tokenize("hello 25岁")  # full-width as ASCII
    assert "token_type_ids" in tok("北京")  # BERT's segment ids, as BertTokenizer gave them


def test_the_pipeline_fills_full_width_text_as_zhbert_does(exported, trained_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pipeline_check import assert_pipeline_agrees
    from zhbert.fillmask import load_masked_lm

    assert_pipeline_agrees(exported, MASKED, load_masked_lm(trained_run, precision="fp32"))


def _crafted_vocab(tmp_path, tokens):
    from zhbert.vocab import SPECIAL_TOKENS, Vocab
    vocab = Vocab(tuple(SPECIAL_TOKENS) + tuple(dict.fromkeys(tokens)))
    vocab.save(tmp_path / "vocab.txt")
    return vocab


@pytest.mark.parametrize("language, tokens, texts", [
    ("en", [*"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?()'\"-:;/@",
            *("##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"), "hello", "world", "##llo",
            "fi", "##fi", "ca", "##fé"],
     ["Ｈｅｌｌｏ　ｗｏｒｌｄ， it's ２０２６!", "The ﬁsh café costs １２３ (ok).",
      "see https://example.com/x or mail a@b.org now", "tab\there\r\nnew\u200bline"]),
    ("ja", [*"東京は日本の首都ですカタナを書く。、「」（）！？ABC123",
            *("##" + c for c in "はのですカタナを書くBC23")],
     ["ｶﾀｶﾅを書く。", "東京は　日本の首都です（ＡＢＣ１２３）！", "「東京」、 日本 ？"]),
])
def test_english_and_japanese_tokenizers_clean_as_their_data_was(tmp_path, language, tokens, texts):
    """The cleaning is the same for every language but for OpenCC (Chinese only), so one
    normalizer serves all: NFKC makes half-width katakana full-width, full-width Latin ASCII."""
    from tokenizers import Tokenizer
    from zhbert.export import write_tokenizer_json

    vocab = _crafted_vocab(tmp_path, tokens)
    write_tokenizer_json(tmp_path / "vocab.txt", tmp_path / "tokenizer.json")
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    cfg = CleanConfig(script="keep", language=language)
    for text in texts:
        assert tok.encode(text, add_special_tokens=False).ids == vocab.encode(clean_text(text, cfg)), text


def _with_clean(monkeypatch, **options):
    """export_run reads the run's data with these clean options in its manifest."""
    import zhbert.run
    real = zhbert.run.open_run_data

    def open_run_data(run):
        data = real(run)
        config = {**data.manifest["config"], "clean": {**data.manifest["config"]["clean"], **options}}
        return dataclasses.replace(data, manifest={**data.manifest, "config": config})
    monkeypatch.setattr(zhbert.run, "open_run_data", open_run_data)


def test_config_and_card_record_the_cleaning(exported, trained_run):
    from zhbert.datadir import open_data_dir
    from zhbert.run import open_run
    data = open_data_dir(open_run(trained_run).data_dir)
    recorded = json.loads((exported / "config.json").read_text())["zhbert_clean"]
    assert recorded == CleanConfig.from_json(data.manifest["config"]["clean"]).to_json()
    assert recorded["script"] == "t2s" and recorded["remove_urls"] is True
    card = (exported / "README.md").read_text()
    assert "## Input text" in card and "simplified Chinese characters" in card and "OpenCC t2s" in card
    assert "BertTokenizer.from_pretrained" in card  # the slow tokenizer skips the cleaning


def test_fill_mask_on_an_export_cleans_as_the_run_did(trained_run, tmp_path, monkeypatch, capsys):
    """A traditional-script model (prepare --script s2t) with its URLs kept: the export says so,
    and fill-mask on it keeps 中國 and the URL, as on the run, instead of prepare's default."""
    from zhbert.fillmask import load_masked_lm, normalize

    _with_clean(monkeypatch, script="s2t", remove_urls=False)
    out = tmp_path / "trad"
    assert cli_main(["export", str(trained_run), "--out", str(out)]) == 0
    capsys.readouterr()
    hf = json.loads((out / "config.json").read_text())
    assert hf["zhbert_clean"]["script"] == "s2t" and hf["zhbert_clean"]["remove_urls"] is False
    card = (out / "README.md").read_text()
    assert "traditional Chinese characters" in card and 'OpenCC("s2t")' in card
    assert "北京是中國的[MASK]都。" in card  # the example in the model's script
    sentence = "北京是中國的首[MASK]，見 http://x.com 。"
    assert normalize(load_masked_lm(out), sentence) == "北京是中國的首[MASK]，見 http://x.com 。"
    assert cli_main(["fill-mask", str(out), "--json", sentence]) == 0
    assert json.loads(capsys.readouterr().out)[0]["normalized"] == sentence

    del hf["zhbert_clean"]  # an export from before the key: prepare's default cleaning, as before
    (out / "config.json").write_text(json.dumps(hf))
    assert normalize(load_masked_lm(out), sentence) == "北京是中国的首[MASK]，见。"
