"""benchmarks.train_throughput's table: a peak RSS that was not measured (--no-rss) reads
"-", not 0 MB."""

from types import SimpleNamespace

from benchmarks import train_throughput as tt
from zhbert.model import preset


def test_unmeasured_rss_reads_as_a_dash(capsys):
    args = SimpleNamespace(batch_size=32, config="tiny", rounds=1, steps=1, compile=False)
    result = {"step_s": {"zhbert": [0.1], "reference": [0.3]},
              "first_step_s": {"zhbert": 0.2, "reference": 0.5}}
    from benchmarks import common
    out = tt.report(args, preset("tiny", 10_000), "bf16", result, common.machine(), {"bf16": 900.0}, {})
    table = capsys.readouterr().out
    rows = [line.split() for line in table.splitlines() if line.startswith(("zhbert ", "reference "))]
    assert len(rows) == 2 and all(row[-2] == "-" for row in rows), table  # peak RSS MB, first step s
    assert out["summary"]["zhbert"]["peak_rss_mb"] is None
