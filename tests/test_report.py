"""Reports: `zhbert data report` (the dataset checks) and `zhbert analyze` (the study of a run:
analysis.json values, plots, report.md/html, bad inputs exit 2)."""

import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from zhbert.analysis import load_history
from zhbert.cli import main
from zhbert.corpus.report import _length_stats, gb2312_levels, run_checks
from zhbert.report_analysis import analyze, eval_ci

TEXT = "\n\n".join(f"第{i}段：城市里的居民每天早上都会去河边散步，然后一起喝茶聊天。天气好的时候还会去爬山。"
                   for i in range(40))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    (root / "a.txt").write_text(TEXT, encoding="utf-8")
    out = root / "data"
    assert main(["prepare", str(root / "a.txt"), "--out", str(out), "--workers", "1",
                 "--no-near-dedup"]) == 0
    return out


def test_report_fails_seed_thresholds_then_passes_relaxed(data_dir, capsys):
    assert main(["data", "report", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  sentences: 80 (target >= 100,000)" in out
    # 'then a ... ' repeats in every document; the value is a percentage like its target
    assert "FAIL  duplicate sentence rate: 48.75% (target <= 5.00%)" in out
    assert main(["data", "report", str(data_dir), "--min-sentences", "80", "--min-vocab", "10",
                 "--avg-len", "10,100", "--max-dup-rate", "0.6"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_report_json(data_dir, capsys):
    assert main(["data", "report", str(data_dir), "--json"]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert obj["report"]["totals"]["sentences"] == 80
    assert obj["report"]["duplicates"]["sentence_duplicate_rate"] == pytest.approx(39 / 80)
    assert [c["passed"] for c in obj["checks"]] == [False, False, False, False]


def test_report_user_errors_exit_2(tmp_path, capsys):
    assert main(["data", "report", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: one line + exit 2
        main(["data", "report", str(tmp_path), "--avg-len", "100,30"])
    assert exc.value.code == 2 and "LOW must not exceed HIGH" in capsys.readouterr().err


def test_length_stats_match_numpy():
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 300, size=5000)
    stats = _length_stats(Counter(lengths.tolist()))
    assert stats["mean"] == pytest.approx(lengths.mean(), abs=0.01)
    assert stats["median"] == int(np.quantile(lengths, 0.5, method="inverted_cdf"))
    assert stats["p95"] == int(np.quantile(lengths, 0.95, method="inverted_cdf"))
    assert sum(b[2] for b in stats["histogram"]) == 5000 and len(stats["histogram"]) <= 16


def test_gb2312_levels():
    level1, level2 = gb2312_levels()
    assert len(level1) == 3755 and len(level2) == 3008
    assert level1[0] == "啊" and level1[-1] == "座" and level2[0] == "亍"


def test_run_checks_thresholds():
    report = {"totals": {"sentences": 100}, "vocab": {"characters": 50},
              "sentence_length": {"mean": 30.0}, "duplicates": {"sentence_duplicate_rate": 0.05}}
    assert [c.passed for c in run_checks(report, 100, 51, (30, 100), 0.05)] == [True, False, True, True]
    assert [c.passed for c in run_checks(report, 101, 50, (31, 100), 0.04)] == [False, True, False, False]


# ----------------------------------------------------------------------------- zhbert analyze

_ROOT = Path(os.environ.get("ZHBERT_SHARED") or Path(__file__).resolve().parents[1] / "../shared")
SEED = _ROOT / "reference" / "seed_training_history_100k.json"
PLOTS = ("training_curves", "correlation_analysis", "loss_analysis", "prediction")


def write_history(path: Path, n: int = 60, every: int = 100, seed: int = 0, start: int = 1,
                  nan_at: int | None = None, partial: bool = False, run: str = "tiny") -> Path:
    """A zhbert history.jsonl: saturating MLM accuracy, falling loss, NSP at chance,
    an eval record every 5 train records with its Wilson CI."""
    rng = np.random.default_rng(seed)
    lines = [{"type": "header", "schema": "zhbert-history", "version": 1, "run": run,
              "started": "2025-01-01T00:00:00", "config": {}, "precision": "fp32",
              "precision_reason": "cpu", "machine": "test", "total_steps": n * every,
              "tokens_per_step": 1024}]
    for i in range(start, start + n):
        step = i * every
        acc = 0.6 - 0.45 * math.exp(-step / 2000) + rng.normal(0, 0.01)
        loss = float("nan") if i == nan_at else 2 + 6 * math.exp(-step / 1500) + rng.normal(0, 0.05)
        lines.append({"type": "train", "step": step, "tokens": 1024 * step, "elapsed": 0.5 * step,
                      "lr": 1e-4, "loss": loss, "mlm_loss": loss, "mlm_acc": acc, "nsp_loss": 0.69,
                      "nsp_acc": 0.5 + rng.normal(0, 0.01), "sop_acc": None, "grad_norm": 1.0,
                      "tokens_per_s": 2048.0})
        if i % 5 == 0:
            lines.append({"type": "eval", "step": step, "tokens": 1024 * step, "elapsed": 0.5 * step,
                          "eval_mlm_acc": acc - 0.02, "eval_mlm_acc_ci95": [acc - 0.04, acc],
                          "eval_mlm_loss": loss + 0.1, "eval_ppl": math.exp(2), "eval_nsp_acc": 0.5,
                          "eval_sop_acc": None, "eval_masked": 2000})
    text = "".join(json.dumps(o) + "\n" for o in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + ('{"type": "train", "step": 99999, "lo' if partial else ""))
    return path


def _files(out: Path) -> None:
    for name in ("analysis.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    for p in PLOTS:
        assert (out / f"{p}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{p}.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.skipif(not SEED.exists(), reason=f"seed data not found at {SEED}")
def test_analyze_seed_reproduces_published_figures(tmp_path, capsys):
    src = shutil.copy(SEED, tmp_path / "seed.json")
    assert main(["analyze", str(src), "--n-boot", "20"]) == 0
    out = tmp_path / "seed_analysis"
    _files(out)
    j = json.loads((out / "analysis.json").read_text())
    assert (j["schema"], j["version"], j["metric_used"]) == ("zhbert-analysis", 1, "mlm_acc")
    assert "optimistic" in j["metric_reason"]
    p = j["correlation"]["pearson"]
    assert p["r"] == pytest.approx(0.7869, abs=5e-4) and p["r2"] == pytest.approx(0.6193, abs=5e-4)
    assert p["p"] < 1e-100 and p["ci95"] == pytest.approx([0.76, 0.81], abs=5e-3)
    assert 0 < j["correlation"]["spearman"]["rho"] < 1 and 0 < j["correlation"]["kendall"]["tau"] < 1
    ac, cor = j["correlation"]["autocorrelation"], j["correlation"]["corrected"]
    assert ac["rho1"] > 0.7 and ac["durbin_watson"] < 0.6 and ac["n_eff"] < 200
    assert cor["ci95"][1] - cor["ci95"][0] > 2 * (p["ci95"][1] - p["ci95"][0]) and cor["p"] > p["p"]
    assert j["correlation"]["log_step"]["r"] > p["r"]  # a saturating curve is straighter in log x
    s = j["summary"]["mlm_acc"]
    assert s["mean"] == pytest.approx(0.5053, abs=5e-5) and s["max"] == pytest.approx(0.6635, abs=5e-5)
    assert (round(j["summary"]["loss"]["first"], 2), round(j["summary"]["loss"]["last"], 2)) == (8.96, 2.97)
    bf = s["best_fit"]
    assert bf["model"] == "exp" and bf["asymptote"] == pytest.approx(0.574, abs=0.005)
    assert [r["model"] for r in bf["ranking"]][-1] == "linear" and bf["ranking"][0]["delta_aic"] == 0
    assert j["summary"]["nsp_acc"]["best_fit"] is None  # at chance: not fitted
    pred = j["prediction"]
    assert pred["target"] == 0.6 and pred["reachable"] is False and pred["asymptote"] < 0.6
    assert j["backtest"]["winner"] is not None
    assert {(a["kind"], a["metric"]) for a in j["anomalies"]} >= {("chance", "nsp_acc")}
    md = (out / "report.md").read_text()
    assert "掩码语言模型准确率" in md and "autocorrelation-corrected" in md and "not reachable" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "http" not in html.split("<body>")[1]
    printed = capsys.readouterr().out
    assert "Pearson r = 0.7869" in printed
    # each anomaly line says where (a newcomer read two "plateau in loss" lines as one twice)
    chance = next(a for a in j["anomalies"] if a["kind"] == "chance")
    assert (f"anomaly (error): chance in nsp_acc at steps {chance['start']:,.0f}-"
            f"{chance['end']:,.0f}") in printed


def test_analyze_zhbert_run_with_eval_records(tmp_path, capsys):
    run = tmp_path / "run"
    write_history(run / "history.jsonl", partial=True)
    assert main(["analyze", str(run), "--n-boot", "20", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    _files(run / "analysis")
    assert j["metric_used"] == "eval_mlm_acc" and "held-out" in j["metric_reason"]
    assert j["summary"]["eval_mlm_acc"]["n"] == 12 and j["summary"]["mlm_acc"]["n"] == 60
    assert ("chance", "nsp_acc") in {(a["kind"], a["metric"]) for a in j["anomalies"]}
    assert any("last line is cut off" in n for n in j["source"]["notes"])
    assert j["correlation"]["pearson"]["r"] > 0.8
    steps, lo, hi = eval_ci(load_history(run))
    assert len(steps) == 12 and np.all(hi - lo == pytest.approx(0.04))


def test_analyze_object_and_tokens_axis(tmp_path):
    h = load_history(write_history(tmp_path / "history.jsonl"))
    a = analyze(h, x="tokens", n_boot=5)
    assert a.corr.n == 12 and a.x == "tokens"
    assert a.prediction is not None and a.prediction.x_axis == "tokens"
    assert a.to_json()["summary"]["loss"]["best_fit"]["model"].startswith(("loss_", "loglinear", "linear"))


def test_one_point_and_nan_histories_say_what_was_not_computed(tmp_path, capsys):
    one = write_history(tmp_path / "one" / "history.jsonl", n=1)
    assert main(["analyze", str(one.parent), "--n-boot", "20"]) == 0
    j = json.loads((one.parent / "analysis" / "analysis.json").read_text())
    assert j["correlation"] is None
    what = {n["what"] for n in j["not_computed"]}
    assert {"correlation", "backtest", "prediction"} <= what
    assert "not computed: correlation" in capsys.readouterr().out
    nan = write_history(tmp_path / "nan" / "history.jsonl", nan_at=7)
    assert main(["analyze", str(nan.parent), "--metric", "loss", "--n-boot", "20"]) == 0
    j = json.loads((nan.parent / "analysis" / "analysis.json").read_text())
    assert any("non-finite" in n["why"] for n in j["not_computed"])
    assert any(a["kind"] == "nonfinite" for a in j["anomalies"])
    assert j["prediction"] is None and j["summary"]["loss"]["n"] == 59


@pytest.mark.parametrize("case", ["empty", "header_only", "missing", "bad_metric", "bad_axis", "foreign_out"])
def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys, case):
    hist = tmp_path / "history.jsonl"
    argv = ["analyze", str(hist)]
    if case == "empty":
        hist.write_text("")
    elif case == "header_only":
        hist.write_text(json.dumps({"type": "header", "schema": "zhbert-history", "version": 1}) + "\n")
    elif case == "missing":
        argv = ["analyze", str(tmp_path / "nope.jsonl")]
    else:
        csv = tmp_path / "h.csv"  # a CSV has no tokens column
        csv.write_text("step,mlm_acc\n" + "".join(f"{i},{i / 100}\n" for i in range(1, 30)))
        argv = {"bad_metric": ["analyze", str(csv), "--metric", "nsp_acc"],
                "bad_axis": ["analyze", str(csv), "--x", "tokens"],
                "foreign_out": ["analyze", str(csv), "--out", str(tmp_path)]}[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zhbert: error: ") and "Traceback" not in err and len(err.splitlines()) == 1


def test_top_counter_is_exact_until_twice_its_capacity():
    from zhbert.corpus.report import TopCounter

    keys = [f"分类{i % 37}" for i in range(500)] + [f"分类{i}" for i in range(100, 140)]
    counter, exact = TopCounter(capacity=40), Counter()
    for k in keys:
        counter.update([k])
        exact.update([k])
    assert len(exact) == 77 <= 80 and counter.undercount == 0
    assert counter.most_common(20) == exact.most_common(20)  # ties in first-seen order too


def test_top_counter_bounds_memory_and_keeps_the_frequent_tags():
    """A million-category stream in miniature: 20 frequent tags among 5,000 rare ones."""
    from zhbert.corpus.report import TopCounter

    rng = np.random.default_rng(0)
    stream = [f"常见{i}" for i in rng.integers(0, 20, 20_000)] + [f"罕见{i}" for i in range(5_000)] * 2
    order = rng.permutation(len(stream))
    counter, exact = TopCounter(capacity=100), Counter(stream)
    for i in order:
        counter.update([stream[i]])
    assert len(counter.counts) <= 200  # never more than twice the capacity
    assert 0 < counter.undercount <= len(stream) / 101  # the Misra-Gries bound
    top = dict(counter.most_common(20))
    assert set(top) == {f"常见{i}" for i in range(20)}
    assert all(exact[k] - counter.undercount <= n <= exact[k] for k, n in top.items())


def test_empty_held_out_splits_say_so_instead_of_100_percent_oov(tmp_path, capsys):
    """40 documents with 1% held out leave validation and test empty: the OOV rate of
    nothing is n/a, not 100%, and both prepare and the report warn."""
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "data"
    assert main(["prepare", str(tmp_path / "a.txt"), "--out", str(out), "--workers", "1",
                 "--no-near-dedup", "--validation", "0.0", "--test", "0.0"]) == 0
    captured = capsys.readouterr()
    assert "validation OOV n/a (empty validation split)" in captured.out
    assert "warning: the validation split is empty" in captured.err
    assert main(["data", "report", str(out)]) == 1
    report = capsys.readouterr().out
    assert "validation OOV n/a (empty validation split), [UNK] tokens n/a" in report
    assert "warning: the test split is empty" in report
    assert main(["data", "report", str(out), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["report"]["vocab"]["validation_oov_rate"] is None


def test_an_asymptote_at_its_bound_reads_as_such():
    """A loss curve's floor driven to 0 printed as 3.5e-13 in the summary table."""
    from zhbert.report_render import asymptote_text

    assert asymptote_text({"asymptote": 3.5e-13, "asymptote_ci95": [0.0, 1.2]}) == \
        "0 (at its bound: not pinned by the points) [0, 1.2000]"
    assert asymptote_text({"asymptote": 0.3606, "asymptote_ci95": [0.3288, 0.4071]}) == "0.3606 [0.3288, 0.4071]"
    assert asymptote_text({"asymptote": None}) == "-"
    # without refits (--n-boot 0) there is no interval: nothing, not a trailing "-"
    assert asymptote_text({"asymptote": 0.371, "asymptote_ci95": None}) == "0.3710"


def test_sources_are_counted_in_bounded_memory_and_reported_as_the_top_ones(tmp_path, capsys):
    """A JSONL "source" per line (a URL each) listed every URL twice in report.json and in
    one 15 KB line of `data report`; its counters grew a key a document."""
    from zhbert.corpus.report import TOP_N, CorpusStats

    lines = [json.dumps({"text": f"第{i}段：城市里的居民每天早上都会去河边散步，然后一起喝茶聊天。",
                         "source": f"https://news.example.com/a/{i}.html"}, ensure_ascii=False)
             for i in range(60)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "data"
    assert main(["prepare", str(tmp_path / "a.jsonl"), "--out", str(out), "--workers", "1",
                 "--no-near-dedup"]) == 0
    capsys.readouterr()
    sources = json.loads((out / "report.json").read_text())["sources"]
    assert len(sources["documents_read"]) == len(sources["documents_kept"]) == TOP_N
    assert sources["other_sources"] == {"documents_read": 60 - TOP_N, "documents_kept": 60 - TOP_N}
    main(["data", "report", str(out)])
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("documents kept per source"))
    assert line.endswith(f"(and {60 - TOP_N} from other sources)") and line.count("https://") == TOP_N
    stats = CorpusStats()
    for i in range(50_000):
        stats.docs_read_per_source.add(f"https://x/{i}")
    assert len(stats.docs_read_per_source.counts) <= 2 * stats.docs_read_per_source.capacity


def test_the_sentences_of_a_document_dropped_whole_are_counted(tmp_path, capsys):
    """A document of only short lines was dropped whole, and its sentences were missing from
    the report's dropped sentences (no line at all when every drop was in such documents)."""
    short = "\n\n".join("好。对。是的。行。" for _ in range(10))
    (tmp_path / "a.txt").write_text(TEXT + "\n\n" + short + "\n", encoding="utf-8")
    out = tmp_path / "data"
    assert main(["prepare", str(tmp_path / "a.txt"), "--out", str(out), "--workers", "1",
                 "--no-near-dedup"]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())["input"]
    assert report["documents_dropped_by_cleaning"] == 10
    assert report["dropped_sentences"]["too_short"] >= 40
