"""Every benchmark prints the machine line (common.finish: printed and written as one reading),
accuracy_top1 and anomaly_calibration included; inference_throughput prints the mean-based
ratio beside the median one where the load moved them apart, as train_throughput does
(common.ratio_lines, one home)."""

import itertools
import json

import pytest

from benchmarks import common


@pytest.fixture
def readings(monkeypatch, tmp_path):
    """common.machine gives another load average each call: a line printed from one reading
    and a JSON written from another show."""
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    real, count = common.machine(), itertools.count()
    monkeypatch.setattr(common, "machine", lambda: {**real, "loadavg": [float(next(count)), 0.0, 0.0]})
    return tmp_path / "out"


def _printed_and_written(out_dir, name, text):
    written = json.loads(next(out_dir.glob(f"{name}-*.json")).read_text())
    assert common.machine_line(written["machine"]) in text.splitlines(), text
    return written


def test_anomaly_calibration_prints_the_machine_line(readings, capsys):
    from benchmarks import anomaly_calibration

    assert anomaly_calibration.main(["--seeds", "2"]) == 0
    written = _printed_and_written(readings, "anomaly_calibration", capsys.readouterr().out)
    assert "flat_coverage_mean" in written


def test_accuracy_top1_prints_the_machine_line_it_writes(readings, capsys, monkeypatch):
    from benchmarks import accuracy_top1

    monkeypatch.setattr(accuracy_top1, "CASES", ((8, 32),))
    assert accuracy_top1.main(["--repeats", "1", "--threads", "1"]) == 0
    written = _printed_and_written(readings, "accuracy_top1", capsys.readouterr().out)
    assert len(written["cases"]) == 2


def _summary(secs):
    from benchmarks.inference_throughput import B
    return {f"{side} {p}": {"sentences_per_s": B / sorted(s)[len(s) // 2],
                            "mean_sentences_per_s": B * len(s) / sum(s)}
            for (side, p), s in secs.items()}


def test_inference_prints_both_ratios_when_the_load_moved_the_batches():
    from benchmarks import inference_throughput as it

    moved = {("zhbert", "fp32"): [0.1, 0.1, 1.0], ("reference", "fp32"): [0.3, 0.3, 0.31],
             ("pipeline", "fp32"): [0.4, 0.4, 0.4]}
    ratios, means, flags, lines = it.ratio_lines(moved, _summary(moved), "fp32")
    assert ratios["zhbert fp32 / reference fp32"] == pytest.approx(3.0)
    assert means["zhbert fp32 / reference fp32"] == pytest.approx((0.91 / 3) / 0.4)
    assert flags == {"zhbert fp32 / pipeline fp32": True, "zhbert fp32 / reference fp32": True}
    assert lines[0].startswith("warning: the machine's load moved the batches")
    assert (f"ratio zhbert fp32 / reference fp32: 3.00 (median batches); mean-based ratio: "
            f"{means['zhbert fp32 / reference fp32']:.2f}") in lines
    steady = {k: [s[0]] * 3 for k, s in moved.items()}
    _, _, flags, lines = it.ratio_lines(steady, _summary(steady), "fp32")
    assert not any(flags.values())
    assert lines == ["ratio zhbert fp32 / pipeline fp32: 4.00", "ratio zhbert fp32 / reference fp32: 3.00"]


def test_one_home_for_the_ratio_rule():
    from benchmarks import inference_throughput, train_throughput

    assert not hasattr(train_throughput, "SPREAD") and not hasattr(inference_throughput, "SPREAD")
    assert common.SPREAD == 1.25
