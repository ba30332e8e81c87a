"""`zhbert compare`: runs of different lengths, aligned by step or tokens, and bad inputs."""

import json
import os
from pathlib import Path

import pytest
from test_report import write_history

from zhbert.analysis import correlate, load_history
from zhbert.cli import main
from zhbert.compare import clip, compare, load_runs

_ROOT = Path(os.environ.get("ZHBERT_SHARED") or Path(__file__).resolve().parents[1] / "../shared")
SEED = _ROOT / "reference" / "seed_training_history_100k.json"


def test_two_runs_of_different_lengths(tmp_path, capsys):
    long = write_history(tmp_path / "long" / "history.jsonl", n=100, run="long")
    short = write_history(tmp_path / "short" / "history.jsonl", n=40, seed=1, run="short")
    out = tmp_path / "cmp"
    assert main(["compare", str(long.parent), str(short.parent), "--metric", "mlm_acc",
                 "--targets", "0.3,0.5,0.9", "--out", str(out)]) == 0
    assert "Common range" in capsys.readouterr().out
    j = json.loads((out / "comparison.json").read_text())
    assert (j["schema"], j["x_axis"], j["metric"], j["baseline"]) == ("zhbert-comparison", "step", "mlm_acc", "long")
    assert j["common_range"] == [100, 4000]
    a, b = j["runs"]
    assert a["n"] == 100 and b["n"] == 40 and a["metrics"]["mlm_acc"]["common"]["n"] == 40
    # the whole-run figures of the longer run include training the shorter run never did
    assert a["metrics"]["mlm_acc"]["mean"] > a["metrics"]["mlm_acc"]["common"]["mean"]
    rel = j["relative"]["short"]["mlm_acc"]
    assert rel["last"] == pytest.approx((b["metrics"]["mlm_acc"]["last"] - a["metrics"]["mlm_acc"]["last"])
                                        / a["metrics"]["mlm_acc"]["last"])
    assert abs(rel["common"]["mean"]) < 0.05  # same curve shape, different noise
    assert a["reached"]["0.9"] is None and 0 < a["reached"]["0.3"]["step"] < a["reached"]["0.5"]["step"]
    assert a["throughput"]["steps_per_s"] == pytest.approx(2.0)
    h = load_history(long)
    s = h.metric("mlm_acc")
    assert a["correlation"]["full"]["pearson"]["r"] == pytest.approx(correlate(s.step, s.y).statistic)
    cs = clip(s, "step", 100, 4000)
    assert a["correlation"]["common"]["pearson"]["r"] == pytest.approx(correlate(cs.step, cs.y).statistic)
    assert set(j["metrics"]) >= {"mlm_acc", "loss", "eval_mlm_acc", "nsp_acc"}
    for name in ("comparison.md", "comparison.png", "comparison.svg"):
        assert (out / name).stat().st_size > 0
    assert "比较" in (out / "comparison.md").read_text()


def test_tokens_axis_and_disjoint_runs(tmp_path):
    a = write_history(tmp_path / "a" / "history.jsonl", n=30)
    b = write_history(tmp_path / "b" / "history.jsonl", n=30, start=40)
    j = compare(load_runs([str(a), str(b)], None, "tokens"), x="tokens")
    assert j["x_axis"] == "tokens" and j["metric"] == "eval_mlm_acc" and j["common_range"] is None
    assert j["runs"][0]["name"] == "tiny" and j["runs"][1]["name"] == "tiny (2)"
    assert any("do not overlap" in n["why"] for n in j["not_computed"])


@pytest.mark.skipif(not SEED.exists(), reason=f"seed data not found at {SEED}")
def test_seed_against_its_first_half(tmp_path):
    d = json.loads(SEED.read_text())
    k = sum(s <= 50_000 for s in d["steps"])
    half = tmp_path / "seed_50k.json"
    half.write_text(json.dumps({key: v[:k] for key, v in d.items()}))
    j = compare(load_runs([str(SEED), str(half)], None, "step"))
    full, part = j["runs"]
    assert full["correlation"]["full"]["pearson"]["r"] == pytest.approx(0.7869, abs=5e-4)
    # over the common range the two are the same data: r differs only because the ranges did
    assert full["correlation"]["common"]["pearson"]["r"] == pytest.approx(part["correlation"]["full"]["pearson"]["r"])
    assert part["correlation"]["full"]["pearson"]["r"] > full["correlation"]["full"]["pearson"]["r"]
    assert full["metrics"]["mlm_acc"]["common"]["mean"] == pytest.approx(part["metrics"]["mlm_acc"]["mean"])


@pytest.mark.parametrize("argv", [["compare", "ONE"], ["compare", "ONE", "TWO", "--targets", "a,b"],
                                  ["compare", "ONE", "TWO", "--metric", "nope"],
                                  ["compare", "ONE", "CSV", "--x", "tokens"]])
def test_bad_inputs_exit_2(tmp_path, capsys, argv):
    one = write_history(tmp_path / "one" / "history.jsonl", n=10)
    two = write_history(tmp_path / "two" / "history.jsonl", n=12)
    csv = tmp_path / "h.csv"
    csv.write_text("step,eval_mlm_acc\n" + "".join(f"{i},{i / 100}\n" for i in range(1, 9)))
    paths = {"ONE": str(one), "TWO": str(two), "CSV": str(csv)}
    argv = [paths.get(a, a) for a in argv] + ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zhbert: error: ") and "Traceback" not in err
    if "nope" in argv:  # the CLI names its own option for the fix
        assert "Pass --metric NAME" in err and err.count("--metric") == 1


def test_runs_sharing_one_point_are_told_so(tmp_path):
    """A newcomer compared the demo with a 50-step run: both evaluate at step 50, yet the
    comparison said the runs "do not overlap". One shared point is no range; say that."""
    a = write_history(tmp_path / "a" / "history.jsonl", n=30)
    last = load_history(a).metric().step[-1]
    for start in range(20, 40):  # the b that begins exactly where a ends
        b = write_history(tmp_path / f"b{start}" / "history.jsonl", n=30, start=start)
        if load_history(b).metric().step[0] == last:
            break
    j = compare(load_runs([str(a), str(b)], None, "step"), x="step")
    assert j["common_range"] is None
    assert any(f"share only step {last:,.0f}, one point" in n["why"] for n in j["not_computed"])


def test_runs_table_throughput_is_the_run_average_and_the_header_has_no_duplicate(tmp_path, capsys):
    """A newcomer saw `step range | step range` (the x range column, x = step) and tokens/s
    of 11,141 (the median of the log intervals) beside steps/s x tokens/step = 8,660 and
    status's 8,751 (the run's average). The column is now status's average, named so."""
    from zhbert.runstate import collect

    paths = []
    for name in ("a", "b"):
        p = write_history(tmp_path / name / "history.jsonl", n=20, run=name)
        # interval speeds that are not the run's: evals and checkpoints fall between them
        p.write_text(p.read_text().replace('"tokens_per_s": 2048.0', '"tokens_per_s": 9999.0'))
        paths.append(str(p.parent))
    out = tmp_path / "cmp"
    assert main(["compare", *paths, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| run | source"))
    assert header.count("step range") == 1 and "tokens/s (run average)" in header
    assert "9,999" not in text and "2,048" in text
    j = json.loads((out / "comparison.json").read_text())
    for r, path in zip(j["runs"], paths):
        assert r["throughput"]["average_tokens_per_s"] == pytest.approx(collect(path)["average_tokens_per_s"])
    assert main(["compare", *paths, "--out", str(out), "--x", "tokens"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| run | source"))
    assert "step range | tokens range" in header


def test_compare_says_where_it_wrote_and_what_it_replaced(tmp_path, capsys, monkeypatch):
    """The default ./comparison was written (and later replaced) without a word under --json,
    and --help did not say the folder is in the current directory."""
    a = write_history(tmp_path / "a" / "history.jsonl", n=10)
    b = write_history(tmp_path / "b" / "history.jsonl", n=12)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(a), str(b), "--json"]) == 0
    cap = capsys.readouterr()
    json.loads(cap.out)  # stdout stays JSON
    assert cap.err.strip() == ("wrote comparison/comparison.md (and comparison.json, .png, .svg "
                               "in comparison/)")
    assert main(["compare", str(a), str(b)]) == 0
    assert "replacing the earlier comparison there" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "comparison/ in the current directory" in " ".join(capsys.readouterr().out.split())


def _set_masking(path: Path, rule) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0]["masking"] = rule
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))


def test_runs_of_different_masking_rules_are_warned_about(tmp_path):
    """Runs whose held-out sets were masked by different rules (data.MASKING_RULES) were
    compared as if scored on the same slots; a run that recorded no rule is not guessed at,
    and two runs of one name (a before-and-after pair) are told apart."""
    from zhbert.compare import comparison_markdown

    a = write_history(tmp_path / "old" / "history.jsonl", n=30, run="demo")
    b = write_history(tmp_path / "new" / "history.jsonl", n=30, seed=1, run="demo")
    assert compare(load_runs([str(a), str(b)], None, "step"))["warnings"] == []
    _set_masking(b, "tokens/2")  # a recorded rule against an unrecorded one: not known to differ
    assert compare(load_runs([str(a), str(b)], None, "step"))["warnings"] == []
    _set_masking(a, "tokens/1")
    j = compare(load_runs([str(a), str(b)], None, "step"))
    assert len(j["warnings"]) == 1 and "(demo: tokens/1, demo (2): tokens/2)" in j["warnings"][0]
    assert j["warnings"][0] in comparison_markdown(j, None)


def test_the_forecast_table_writes_steps_as_predict_does():
    """compare printed "950" where predict said "<= 950" (the shortest run searched already
    reaches the target: only an upper bound)."""
    from zhbert.compare import _forecast_md

    reach = {"0.3": {"steps": 950.0, "reachable": True, "shortest_searched": 950},
             "0.35": {"steps": 2400.0, "reachable": True, "shortest_searched": 950},
             "0.6": {"steps": None, "reachable": False}}
    j = {"runs": [{"name": "a", "forecast": {"planned_steps": 1000, "reach": reach,
                                             "final": {"mean": 0.3, "interval80": [0.2, 0.4]}}}]}
    row = [line for line in _forecast_md(j)[-1].splitlines() if line.startswith("| a")][0]
    assert "<= 950" in row and "2,400" in row and "not reachable" in row
