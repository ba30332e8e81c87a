import json

import pytest
import torch

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.fillmask import fill_mask, load_masked_lm

TEXTS = ["北京是中国的[MASK]都。", "他说：“今天的天气很好，1998年的经济发展了。”", "中国人民 abc 123"]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    assert cli_main(["export", str(trained_run), "--out", str(out)]) == 0
    return out


def test_files(exported, trained_run):
    names = {p.name for p in exported.iterdir()}
    assert names == {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                     "special_tokens_map.json", "tokenizer.json", "README.md"}
    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["architectures"] == ["BertForPreTraining"] and cfg["hidden_size"] == 64
    tok = json.loads((exported / "tokenizer_config.json").read_text())
    assert tok["do_lower_case"] is False and tok["tokenize_chinese_chars"] is True
    assert tok["model_max_length"] == 64
    card = (exported / "README.md").read_text()
    assert "step 30" in card and "MLM accuracy" in card
    modes = {p.name: p.stat().st_mode & 0o777 for p in exported.iterdir()}
    assert set(modes.values()) == {modes["config.json"]}, modes  # safetensors made 0600


def test_transformers_loads_it_offline(exported, trained_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForMaskedLM, AutoTokenizer, BertForPreTraining, pipeline

    lm = load_masked_lm(trained_run, precision="fp32")  # zhbert's own model, latest checkpoint; fp32 like the pipeline
    tok = AutoTokenizer.from_pretrained(exported)
    for text in TEXTS:
        assert tok(text)["input_ids"] == [2] + lm.vocab.encode(text) + [3]
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        hidden = lm.model.encode(enc["input_ids"], enc["token_type_ids"], mask)
        ours_mlm = lm.model.cls.predictions(hidden)       # (B, T, V)
        ours_nsp = lm.model.nsp_logits(hidden)            # (B, 2)
        pre = BertForPreTraining.from_pretrained(exported).eval()(**enc)
        mlm = AutoModelForMaskedLM.from_pretrained(exported).eval()(**enc).logits
    for theirs in (pre.prediction_logits, mlm):
        assert torch.allclose(theirs[mask], ours_mlm[mask], atol=1e-4)
        assert torch.equal(theirs[mask].argmax(-1), ours_mlm[mask].argmax(-1))
    assert torch.allclose(pre.seq_relationship_logits, ours_nsp, atol=1e-4)

    top = pipeline("fill-mask", model=str(exported))(TEXTS[0], top_k=3)
    ours = fill_mask(lm, TEXTS[0], top_k=3)[0][0]
    assert [c["token_str"] for c in top][0] == ours[0][0]
    assert [c["score"] for c in top] == pytest.approx([p for _, p in ours], abs=1e-4)


def test_fill_mask_reads_the_exported_dir(exported, trained_run):
    a = fill_mask(exported, TEXTS[0], top_k=4)[0][0]
    b = fill_mask(trained_run, TEXTS[0], top_k=4)[0][0]
    assert [t for t, _ in a] == [t for t, _ in b]
    assert [p for _, p in a] == pytest.approx([p for _, p in b], abs=1e-5)


def test_existing_dir_needs_force(exported, trained_run, capsys):
    before = (exported / "model.safetensors").read_bytes()
    assert cli_main(["export", str(trained_run), "--checkpoint", "10", "--out", str(exported)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (exported / "model.safetensors").read_bytes() == before
    assert cli_main(["export", str(trained_run), "--checkpoint", "99", "--out", str(exported), "--force"]) == 2
    assert (exported / "model.safetensors").read_bytes() == before
    out = exported.parent / "early"
    assert cli_main(["export", str(trained_run), "--checkpoint", "10", "--out", str(out)]) == 0
    assert "step 10" in (out / "README.md").read_text()
    assert "(checkpoint step 10)" in capsys.readouterr().out  # which one, where a corrupt one is passed over
    assert cli_main(["export", str(trained_run), "--out", str(out), "--force"]) == 0
    assert (out / "model.safetensors").read_bytes() == before  # step 30 again, same bytes


def test_force_never_replaces_a_runs_checkpoint(trained_run, tmp_path, capsys):
    """A checkpoint holds model.safetensors, the export marker: `export --out
    RUN/checkpoints/step_N --force` replaced the checkpoint with the export (a bad-input pass)."""
    import shutil
    run = shutil.copytree(trained_run, tmp_path / "run")
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    before = sorted(p.name for p in ckpt.iterdir())
    assert cli_main(["export", str(run), "--out", str(ckpt), "--force"]) == 2
    assert "is a training run's checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in ckpt.iterdir()) == before
    assert cli_main(["export", str(run), "--out", str(run / "checkpoints" / "new")]) == 2


def test_an_empty_folder_is_taken_without_force(trained_run, tmp_path, capsys):
    """check_out's advice for a folder of other files is "choose a new or empty directory";
    an empty one was then refused as existing (pass --force)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["export", str(trained_run), "--out", str(empty)]) == 0
    assert (empty / "model.safetensors").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hi")
    assert cli_main(["export", str(trained_run), "--out", str(other)]) == 2
    assert "choose a new or empty directory" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_checkpoint_deleted_right_after_it_loads_is_still_exported(trained_run, tmp_path, monkeypatch):
    """Retention (train.keep_last of a run still training) may delete the checkpoint once its
    weights have loaded: export read state.json a second time, for the model card's tokens,
    and failed in 3 of 12 tries with "checkpoint state not found" (a tester's race)."""
    import shutil
    import zhbert.run
    run = shutil.copytree(trained_run, tmp_path / "run")
    real = zhbert.run.load_run_checkpoint

    def load_then_retire(run_, ref, device=None):
        loaded = real(run_, ref, device)
        shutil.rmtree(ref.path)  # as retention does, between the weights and the card
        return loaded
    monkeypatch.setattr(zhbert.run, "load_run_checkpoint", load_then_retire)
    out = tmp_path / "model"
    assert cli_main(["export", str(run), "--out", str(out)]) == 0
    assert "tokens seen: " in (out / "README.md").read_text(encoding="utf-8")
