import json

import pytest
import torch

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.fillmask import fill_mask, load_masked_lm, make_masked_lm

SENTENCES = ["北京是中国的[MASK]都。", "我们[MASK]中国[MASK]，他们也是。", "[MASK]"]


def _reference(lm, sentence, k):
    """Top-k by a full forward over every position (no masked-only head), softmax in fp64."""
    ids = torch.tensor([[lm.vocab.cls_id] + lm.vocab.encode(sentence) + [lm.vocab.sep_id]])
    with torch.no_grad():
        hidden = lm.model.encode(ids, torch.zeros_like(ids), torch.ones_like(ids, dtype=torch.bool))
        logits = lm.model.cls.predictions(hidden)[0].double()  # (T, V)
    out = []
    for t in (ids[0] == lm.vocab.mask_id).nonzero().flatten().tolist():
        probs = logits[t].softmax(-1)
        probs[list(lm.vocab.structural_ids)] = -1  # never an answer
        p, i = probs.topk(k)
        out.append([(lm.vocab.tokens[j], q) for j, q in zip(i.tolist(), p.tolist())])
    return out


def test_several_masks_sorted_and_equal_to_full_forward(trained_run):
    lm = load_masked_lm(trained_run, precision="fp32")  # fp32: compared with an fp64 softmax
    assert lm.source.endswith("step 30") and lm.precision == "fp32"
    results = fill_mask(lm, SENTENCES, top_k=5, batch_size=2)  # batches of mixed lengths: padding
    assert [len(r) for r in results] == [1, 2, 1]
    for sentence, masks in zip(SENTENCES, results):
        for cands, ref in zip(masks, _reference(lm, sentence, 5)):
            probs = [p for _, p in cands]
            assert len(cands) == 5 and probs == sorted(probs, reverse=True)
            assert 0 < sum(probs) <= 1 + 1e-6
            assert [t for t, _ in cands] == [t for t, _ in ref]
            assert probs == pytest.approx([p for _, p in ref], abs=1e-5)
    one_by_one = [fill_mask(lm, s, top_k=5)[0] for s in SENTENCES]
    for a, b in zip(one_by_one, results):
        for ca, cb in zip(a, b):
            assert [t for t, _ in ca] == [t for t, _ in cb]
            assert [p for _, p in ca] == pytest.approx([p for _, p in cb], abs=1e-5)


def test_a_top_k_past_the_vocabulary_lists_every_token_but_the_structural_ones(trained_run):
    lm = load_masked_lm(trained_run, precision="fp32")
    cands = fill_mask(lm, SENTENCES[0], top_k=10**6)[0][0]
    tokens = [t for t, _ in cands]
    assert len(tokens) == len(set(tokens)) == len(lm.vocab) - 4
    assert not {"[PAD]", "[CLS]", "[SEP]", "[MASK]"} & set(tokens) and "[UNK]" in tokens
    assert sum(p for _, p in cands) <= 1 + 1e-5


def test_checkpoint_choice_changes_the_model(trained_run):
    early = fill_mask(trained_run, SENTENCES[0], top_k=3, checkpoint=10)[0][0]
    late = fill_mask(trained_run, SENTENCES[0], top_k=3, checkpoint=30)[0][0]
    assert [p for _, p in early] != pytest.approx([p for _, p in late])


def test_cli_json_and_input_file(trained_run, tmp_path, capsys):
    f = tmp_path / "s.txt"
    f.write_text("\n".join(SENTENCES[:2]) + "\n\n", encoding="utf-8")
    assert cli_main(["fill-mask", str(trained_run), "--input", str(f), "--top-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["sentence"] for r in rows] == SENTENCES[:2]
    assert [len(r["masks"]) for r in rows] == [1, 2]
    ref = fill_mask(trained_run, SENTENCES[1], top_k=3)[0]
    assert [[c["token"] for c in m] for m in rows[1]["masks"]] == [[t for t, _ in m] for m in ref]
    assert cli_main(["fill-mask", str(trained_run), SENTENCES[0], "--top-k", "2"]) == 0
    assert "[MASK] 1:" in capsys.readouterr().out
    # the same sentences saved as GBK (a Windows editor's default for Chinese) read the same
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes(("\n".join(SENTENCES[:2]) + "\n").encode("gbk"))
    assert cli_main(["fill-mask", str(trained_run), "--input", str(gbk), "--json"]) == 0
    assert [r["sentence"] for r in json.loads(capsys.readouterr().out)] == SENTENCES[:2]
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 8)
    assert cli_main(["fill-mask", str(trained_run), "--input", str(blob)]) == 2
    assert f"--input file {blob} is a binary file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["北京是中国的首都。"], "no [MASK]"),
    (["北京[MASK]", "--checkpoint", "7"], "no checkpoint at step 7"),
    (["北" * 100 + "[MASK]"], "longer than the model's 64"),
])
def test_user_errors(trained_run, capsys, argv, message):
    assert cli_main(["fill-mask", str(trained_run), *argv]) == 2
    assert message in capsys.readouterr().err


def test_not_a_model_dir(tmp_path):
    with pytest.raises(UserError, match="neither a run directory"):
        load_masked_lm(tmp_path)


@pytest.mark.parametrize("native, expected", [(False, "fp32"), (True, "bf16")])
def test_auto_precision_follows_the_machine(trained_run, monkeypatch, native, expected):
    """auto never picks bf16 on a CPU without native bf16 (capabilities injected, not read
    off the test machine), and takes it where the CPU has it; an explicit choice wins."""
    import zhbert.machine
    caps = zhbert.machine.Capabilities("cpu", "test CPU", cpu_native_bf16=native, cuda_bf16=False)
    monkeypatch.setattr(zhbert.machine, "detect_capabilities", lambda device=None: caps)
    assert load_masked_lm(trained_run).precision == expected
    assert load_masked_lm(trained_run, precision="fp32").precision == "fp32"


# ----------------------------------------------------------------------------- fast paths

MORE = SENTENCES + ["这家店的服务[MASK]好，下次还来。", "[MASK]天天气很好，我们去公园吧。", "他说：“我[MASK]知道。”"]


@pytest.mark.filterwarnings("ignore::zhbert.precision.PrecisionWarning")  # bf16 on a CPU without it
@pytest.mark.parametrize("kwargs", [{"precision": "bf16"}, {"quantize": "int8"}])
def test_fast_paths_agree_with_fp32(trained_run, kwargs):
    """bf16 weights (fp32 residual, LayerNorm and head) and dynamic int8 Linear layers give
    the fp32 full forward's top-1 for every mask, and probabilities within 1e-4 (the
    fixture's top-1 leads the runner-up by ~0.02 in logit, ~50x the measured bf16/int8
    logit error of ~4e-4)."""
    fast = load_masked_lm(trained_run, **kwargs)
    ref = load_masked_lm(trained_run, precision="fp32")
    assert fast.quantize == kwargs.get("quantize") and ref.engine is not fast.engine
    results = fill_mask(fast, MORE, top_k=3, batch_size=4)
    for sentence, masks in zip(MORE, results):
        for cands, exact in zip(masks, _reference(ref, sentence, 3)):
            assert cands[0][0] == exact[0][0]
            assert [p for _, p in cands] == pytest.approx([p for _, p in exact], abs=1e-4)


def test_length_sorted_batches_come_back_in_input_order(trained_run, monkeypatch):
    import zhbert.fillmask as fm

    lm = load_masked_lm(trained_run, precision="fp32")
    sentences = ["我[MASK]", "今天天气很好，我们一起去公园散步吧，[MASK]天也去。", "[MASK]的",
                 "北京是中国的[MASK]都。", "他[MASK]了", "这家店的服务[MASK]好，下次还来。"]
    batches = []
    real = fm._batch_candidates
    monkeypatch.setattr(fm, "_batch_candidates", lambda lm, batch, k: batches.append(batch) or real(lm, batch, k))
    together = fill_mask(lm, sentences, top_k=4, batch_size=2)
    lengths = [len(ids) for b in batches for ids in b]
    assert len(batches) == 3 and lengths == sorted(len(s) - 3 for s in sentences)  # [MASK] 1, +[CLS][SEP]
    monkeypatch.setattr(fm, "_batch_candidates", real)
    for sentence, result in zip(sentences, together):
        alone = fill_mask(lm, sentence, top_k=4)[0]
        for a, b in zip(alone, result):
            assert [t for t, _ in a] == [t for t, _ in b]
            assert [p for _, p in a] == pytest.approx([p for _, p in b], abs=1e-5)


def test_quantize_options(trained_run, capsys):
    with pytest.raises(UserError, match="--precision auto or fp32"):
        load_masked_lm(trained_run, precision="bf16", quantize="int8")
    with pytest.raises(UserError, match="not one of none, int8"):
        load_masked_lm(trained_run, quantize="int4")
    lm = load_masked_lm(trained_run, precision="fp32")
    with pytest.raises(UserError, match="CPU only"):  # checked before anything touches the GPU
        make_masked_lm(lm.model, lm.vocab, lm.max_len, "cuda", "fp32", quantize="int8")
    assert cli_main(["fill-mask", str(trained_run), SENTENCES[0], "--quantize", "int8"]) == 0
    captured = capsys.readouterr()
    assert "[MASK] 1:" in captured.out and "int8 dynamic" in captured.err


def test_answer_column_ranks_the_expected_token_and_counts_hits(trained_run, tmp_path, capsys):
    """A cloze table with an `answer` column (examples/demo_cloze.tsv, the demo's check):
    each answer's rank among the first mask's candidates and the count in the top k."""
    from zhbert.fillmask_cli import answer_rank

    lm = load_masked_lm(trained_run, precision="fp32")
    top = fill_mask(lm, ["北京是中国的[MASK]都。"], top_k=5)[0]
    hit, miss = top[0][1][0], "龘"  # the model's second choice; a character it never predicts
    assert answer_rank(top, hit) == 2 and answer_rank(top, miss) == 0 and answer_rank(top, None) is None
    table = tmp_path / "cloze.tsv"
    table.write_text(f"text\tanswer\n北京是中国的[MASK]都。\t{hit}\n北京是中国的[MASK]都。\t{miss}\n"
                     "我们[MASK]中国。\t\n", encoding="utf-8")
    assert cli_main(["fill-mask", str(trained_run), "--input", str(table), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert f"answer {hit}: rank 2" in out and f"answer {miss}: not in the top 5" in out
    assert out.strip().endswith("answers in the top 5: 1 of 2 (top 1: 0)")
    assert cli_main(["fill-mask", str(trained_run), "--input", str(table), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["answer_rank"] for r in rows] == [2, 0, None]
    assert cli_main(["fill-mask", str(trained_run), "--input", str(table), "--answer-column", "x"]) == 2
    assert "no column 'x' for --answer-column" in capsys.readouterr().err


def test_input_file_errors_name_the_file_and_line(trained_run, tmp_path, capsys):
    """An --input file's bad sentence was "sentence 1": which file, which line? The line
    counts blank lines, as an editor does; command-line sentences keep "sentence N"."""
    f = tmp_path / "s.txt"
    f.write_text(f"{SENTENCES[0]}\n\n北京是中国的首都。\n", encoding="utf-8")
    assert cli_main(["fill-mask", str(trained_run), "--input", str(f), "--strict"]) == 2
    assert f"{f} line 3: no [MASK]" in capsys.readouterr().err
    # without --strict a bad line is skipped, named, and the others are filled (one line
    # longer than the model stopped the whole file)
    assert cli_main(["fill-mask", str(trained_run), "--input", str(f), "--json"]) == 0
    out = capsys.readouterr()
    assert [r["sentence"] for r in json.loads(out.out)] == [SENTENCES[0]]
    assert f"skipped 1 of 2 --input lines (the first: {f} line 3: no [MASK]" in out.err
    table = tmp_path / "t.tsv"
    table.write_text("text\n" + "北" * 100 + "[MASK]\n", encoding="utf-8")
    assert cli_main(["fill-mask", str(trained_run), "--input", str(table)]) == 2  # none left
    assert f"{table} line 2: " in capsys.readouterr().err
    assert cli_main(["fill-mask", str(trained_run), SENTENCES[0], "--input", str(table)]) == 0
    assert f"{table} line 2: " in capsys.readouterr().err
    assert cli_main(["fill-mask", str(trained_run), SENTENCES[0], "北京"]) == 2
    assert "sentence 2: no [MASK]" in capsys.readouterr().err


def test_a_checkpoint_folder_is_named_with_the_command_that_reads_it(trained_run, capsys):
    """A checkpoint holds model.safetensors (the export marker) but no model config: fill-mask
    said "model config not found"; it names the run and the --checkpoint to give."""
    ckpt = trained_run / "checkpoints" / "step_00000020"
    assert cli_main(["fill-mask", str(ckpt), "北京是中国的首[MASK]。"]) == 2
    err = capsys.readouterr().err
    assert "is a checkpoint of a training run" in err and "config not found" not in err
    assert f"zhbert fill-mask {trained_run} --checkpoint 20" in err
