"""A run's thread count is a field of its history header ("threads"), not only words in the
human-readable machine line (which threads.recorded_threads parsed); headers written before
the field (tests/data/*) are still read by that parse."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from zhbert.config import load_config
from zhbert.threads import recorded_threads

DATA = Path(__file__).parent / "data"


def test_the_header_records_the_thread_count_as_a_field(tmp_path):
    from zhbert.train import _open_history

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        history = _open_history(tmp_path, load_config("tiny"), SimpleNamespace(world=1), "fp32",
                                "test", 4096, None)
        history.close()
    finally:
        torch.set_num_threads(before)
    header = json.loads((tmp_path / "history.jsonl").read_text().splitlines()[0])
    assert header["threads"] == 3 and "· 3 threads ·" in header["machine"]
    assert recorded_threads(header) == 3


def test_the_field_is_read_before_the_machine_line():
    header = {"machine": "a renamed CPU · 8 threads · torch 3", "threads": 2}
    assert recorded_threads(header) == 2
    assert recorded_threads({"machine": "a CPU with no count", "threads": 5}) == 5


@pytest.mark.parametrize("bad", [None, 0, -1, True, 2.0, "2"])
def test_a_bad_field_falls_back_to_the_machine_line(bad):
    assert recorded_threads({"machine": "cpu · 4 threads · torch 2", "threads": bad}) == 4
    assert recorded_threads({"threads": bad}) is None


@pytest.mark.parametrize("run", ["tiny-1000", "tiny-2000", "demo-1000"])
def test_histories_from_before_the_field_still_read(run):
    header = json.loads((DATA / run / "history.jsonl").read_text().splitlines()[0])
    assert "threads" not in header
    assert recorded_threads(header) == int(header["machine"].split(" · ")[1].split()[0])
    assert recorded_threads(header["machine"]) == recorded_threads(header)  # runstate's call
