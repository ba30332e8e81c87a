import json

import pytest
import torch

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.fillmask import fill_mask, load_masked_lm

SENTENCES = ["北京是中国的[MASK]都。", "我们[MASK]中国[MASK]，他们也是。", "[MASK]"]


def _reference(lm, sentence, k):
    """Top-k by a full forward over every position (no masked-only head), softmax in fp64."""
    ids = torch.tensor([[lm.vocab.cls_id] + lm.vocab.encode(sentence) + [lm.vocab.sep_id]])
    with torch.no_grad():
        hidden = lm.model.encode(ids, torch.zeros_like(ids), torch.ones_like(ids, dtype=torch.bool))
        logits = lm.model.cls.predictions(hidden)[0].double()  # (T, V)
    out = []
    for t in (ids[0] == lm.vocab.mask_id).nonzero().flatten().tolist():
        p, i = logits[t].softmax(-1).topk(k)
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
