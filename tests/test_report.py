import json
from collections import Counter

import numpy as np
import pytest

from zhbert.cli import main
from zhbert.corpus.report import _length_stats, gb2312_levels, run_checks

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
    assert "PASS  duplicate sentence rate" not in out  # 'then a ... ' repeats in every document
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
    with pytest.raises(SystemExit) as exc:  # argparse: usage + exit 2
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
