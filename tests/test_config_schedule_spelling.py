"""train.schedule in a config file or --set reads as the CLI's --schedule does
(schedule.schedule_name): "Cosine" and " WSD " were refused. The run's identity (its
config hash) is that of the lower-case spelling, and old runs keep theirs."""

import pytest

from zhbert.config import config_from_dict, load_config

# the hashes of runs made before the fix (computed on the code before it): they must not move
TINY_COSINE = "b0236d6021b2bd9f"
TINY_WSD = "b9ff023d0b71cacc"


def _toml(tmp_path, schedule: str):
    path = tmp_path / schedule.strip() / "run.toml"  # one name: the preset's is in the hash
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'[train]\nschedule = "{schedule}"\n', encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("typed, read", [("Cosine", "cosine"), (" WSD ", "wsd"), ("LINEAR", "linear")])
def test_a_config_files_schedule_reads_whatever_its_case(tmp_path, typed, read):
    assert load_config(_toml(tmp_path, typed)).train.schedule == read
    assert load_config(_toml(tmp_path, typed)).hash() == load_config(_toml(tmp_path, read)).hash()


def test_a_set_schedule_reads_whatever_its_case_and_keeps_the_old_hash():
    assert load_config("tiny").hash() == TINY_COSINE
    assert load_config("tiny", ["train.schedule=Cosine"]).hash() == TINY_COSINE
    assert load_config("tiny", ["train.schedule=wsd"]).hash() == TINY_WSD
    assert load_config("tiny", ["train.schedule= WSD "]).hash() == TINY_WSD
    assert load_config("tiny", ["train.schedule=Wsd"]).to_dict()["train"]["schedule"] == "wsd"


def test_a_runs_config_json_with_a_capitalised_schedule_is_the_same_run():
    d = load_config("tiny").to_dict()
    d["train"]["schedule"] = "Cosine"
    assert config_from_dict(d).hash() == TINY_COSINE


def test_an_unknown_schedule_is_still_refused_quoting_it(tmp_path):
    with pytest.raises(Exception, match="train.schedule must be one of cosine"):
        load_config(_toml(tmp_path, "Cosin"))
