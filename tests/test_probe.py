import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.probe import RESULTS, ProbeSettings, encode_example, load_task_file, probe_run, result_key
from zhbert.probe_study import Point, relate, spearman_ci, study_name
from zhbert.vocab import Vocab


@pytest.fixture()
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _data(run) -> Path:
    return Path(json.loads((run / "config.json").read_text())["data"]["dir"])


def _vocab(run) -> Vocab:
    return Vocab.load(_data(run) / "vocab.txt")


def _hao_task(vocab: Vocab, path, n=320):
    """Learnable: label "yes" iff the text contains 好 (random common characters otherwise)."""
    chars = [t for t in vocab.tokens[5:300] if len(t) == 1 and "\u4e00" <= t <= "\u9fff" and t != "好"]
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            s = list(rng.choice(chars, size=int(rng.integers(6, 20))))
            if i % 2:
                s[int(rng.integers(len(s)))] = "好"
            f.write(json.dumps({"text": "".join(s), "label": "yes" if i % 2 else "no"},
                               ensure_ascii=False) + "\n")
    return path


def test_finetune_learns_a_learnable_task(run, tmp_path):
    task = load_task_file(_hao_task(_vocab(run), tmp_path / "hao.jsonl"))
    assert task.labels == ("no", "yes") and (len(task.train), len(task.test)) == (256, 64)
    rec, = probe_run(run, task, ProbeSettings(epochs=6, lr=5e-4, batch_size=16), log=print)
    assert rec["step"] == 30 and rec["mode"] == "finetune" and rec["n_test"] == 64
    assert rec["accuracy"] > 0.85 and rec["ci95"][0] > 0.5


def test_linear_probe_all_checkpoints_relation_and_skip(run, tmp_path, capsys):
    f = _hao_task(_vocab(run), tmp_path / "hao.jsonl")
    argv = ["probe", str(run), "--all-checkpoints", "--task-file", str(f), "--linear"]
    assert cli_main(argv) == 0
    recs = [json.loads(x) for x in (run / RESULTS).read_text().splitlines()]
    assert [(r["step"], r["task"], r["mode"]) for r in recs] == [(s, "hao.jsonl", "linear") for s in (10, 20, 30)]
    assert all(r["accuracy"] > 0.7 for r in recs)  # contains-a-character is linear in the features
    out = capsys.readouterr().out
    name = study_name(result_key(load_task_file(f), ProbeSettings(linear=True)))  # not the default's
    assert "mlm_acc" in out and (run / "probe" / f"{name}.png").stat().st_size > 1000
    evals = [json.loads(x) for x in (run / "checkpoint_eval.jsonl").read_text().splitlines()]
    assert sorted(r["step"] for r in evals) == [10, 20, 30]  # missing MLM figures were evaluated
    summary = json.loads((run / "probe" / f"{name}.json").read_text())
    assert summary["n"] == 3 and len(summary["points"]) == 3
    before = (run / RESULTS).read_text()
    assert cli_main(argv) == 0
    assert (run / RESULTS).read_text() == before


def test_analyze_after_probe_and_again_keeps_the_probes_plot(run, tmp_path, capsys):
    """probe's plot lived in RUN/analysis, which analyze replaces as a whole: analyze
    refused a run probed first (no analysis.json there) and deleted the plot when run again."""
    f = _hao_task(_vocab(run), tmp_path / "hao.jsonl")
    assert cli_main(["probe", str(run), "--checkpoint", "30", "--task-file", str(f), "--linear"]) == 0
    name = study_name(result_key(load_task_file(f), ProbeSettings(linear=True)))
    for _ in range(2):
        assert cli_main(["analyze", str(run), "--n-boot", "0"]) == 0, capsys.readouterr().err
        assert (run / "analysis" / "analysis.json").exists()
        assert (run / "probe" / f"{name}.png").stat().st_size > 1000
    # a run probed by an earlier zhbert: its plot in RUN/analysis moves to RUN/probe, unless
    # a newer probe wrote its own there (here: the study above, renamed as the default's)
    shutil.rmtree(run / "analysis")
    (run / "analysis").mkdir()
    for ext in ("json", "png"):
        os.replace(run / "probe" / f"{name}.{ext}", run / "probe" / f"probe_vs_mlm.{ext}")
    os.replace(run / "probe" / "probe_vs_mlm.json", run / "analysis" / "probe_vs_mlm.json")
    (run / "analysis" / "probe_vs_mlm.png").write_bytes(b"an older probe's plot")
    newer = (run / "probe" / "probe_vs_mlm.png").read_bytes()
    assert cli_main(["analyze", str(run), "--n-boot", "0"]) == 0, capsys.readouterr().err
    assert (run / "probe" / "probe_vs_mlm.json").exists()
    assert (run / "probe" / "probe_vs_mlm.png").read_bytes() == newer  # not the older one
    assert not list((run / "analysis").glob("probe_vs_mlm.*"))


def test_builtin_sentiment(run):
    rec, = probe_run(run, "sentiment", ProbeSettings(linear=True, max_train=200), log=print)
    rows = [json.loads(x) for x in (_data(run) / "downstream" / "sentiment.jsonl").open()]
    assert rec["n_test"] == sum(r["split"] == "test" for r in rows) and rec["n_train"] == 200
    assert rec["task"] == "sentiment" and 0.3 < rec["accuracy"] < 1.0


def test_task_files_csv_pairs_and_split(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("text_a,text_b,label\n" + "".join(f"甲{i},乙{i},{i % 3}\n" for i in range(50)),
                 encoding="utf-8")
    task = load_task_file(f)
    assert task.labels == ("0", "1", "2") and (len(task.train), len(task.test)) == (40, 10)
    assert task.train[0][1] is not None and load_task_file(f) == task  # fixed split
    assert {x[0] for x in task.train}.isdisjoint({x[0] for x in task.test})


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "big5", "utf-16"])
def test_task_files_in_the_encodings_prepare_reads(tmp_path, encoding):
    f = tmp_path / "t.csv"
    f.write_text("text,label\n" + "".join(f"天氣很好{i},{i % 2}\n" for i in range(20)),
                 encoding=encoding)
    task = load_task_file(f)
    assert task.labels == ("0", "1") and len(task.train) + len(task.test) == 20
    assert all(text.startswith("天氣很好") for text, *_ in task.train)


@pytest.mark.parametrize("content, message, strict", [
    ('{"text": "好的", "label": 1}\n{"text": "不好"}\n', "line 2: empty 'label'", True),
    ('{"text": "好的", "label": 1}\n{"text": "不好"}\n', "one class only", False),  # row 2 skipped
    ('{"text": "好的", "label": 1}\n{"text": "不好", "label": 1}\n', "one class only", False),
    ('{"label": 1}\n{"text": "不好", "label": 0}\n', "line 1: empty 'text'", True),
    ('{"text": "a", "label": 1, "split": "dev"}\n{"text": "b", "label": 0, "split": "test"}\n', "train or test", False),
])
def test_bad_task_files(tmp_path, content, message, strict):
    f = tmp_path / "t.jsonl"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_task_file(f, strict=strict)


def test_bad_task_file_cli_exit_2(run, tmp_path, capsys):
    f = tmp_path / "t.csv"
    f.write_text("text,label\n好,1\n坏,1\n", encoding="utf-8")
    assert cli_main(["probe", str(run), "--task-file", str(f)]) == 2
    assert "one class only" in capsys.readouterr().err and not (run / RESULTS).exists()
    assert cli_main(["probe", str(run), "--task", "sentiment", "--checkpoint", "11"]) == 2


def test_pair_encoding_matches_hf(run):
    from transformers import BertTokenizerFast
    vocab = _vocab(run)
    tok = BertTokenizerFast(vocab=str(_data(run) / "vocab.txt"), do_lower_case=False)
    a, b = "北京是中国的首都。", "他们说：今天很好"
    enc = tok(a, b)
    assert encode_example(vocab, a, b, 128) == (enc["input_ids"], enc["token_type_ids"])
    ids, types = encode_example(vocab, a * 20, b * 20, 64)
    assert len(ids) == 64 and ids.count(vocab.sep_id) == 2 and types[-1] == 1


def test_relation_statistics():
    pts = [Point(s, m, (m - .01, m + .01), p, (p - .05, p + .05))
           for s, m, p in [(1, .1, .5), (2, .2, .55), (3, .3, .7), (4, .4, .65), (5, .5, .8)]]
    rel = relate(pts)
    from scipy import stats
    assert rel["pearson"]["r"] == pytest.approx(stats.pearsonr([.1, .2, .3, .4, .5], [.5, .55, .7, .65, .8])[0])
    assert rel["spearman"]["rho"] == pytest.approx(0.9)
    lo, hi = rel["spearman"]["ci95"]
    assert lo < 0.9 < hi and spearman_ci(0.9, 3) is None
    assert "fewer than 3" in relate(pts[:2])["note"]
