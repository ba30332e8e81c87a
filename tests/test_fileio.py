import json
import os

import pytest

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, json_safe, read_json, staged_dir


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    atomic_write_json(p, {"x": 2, "名": "中文"})
    assert read_json(p) == {"x": 2, "名": "中文"}
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_atomic_write_failure_keeps_previous(tmp_path, monkeypatch):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(UserError, match="No space left"):
        atomic_write_json(p, {"x": 2})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"x": 1}
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_read_json_corrupt_is_user_error(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"a": ')
    with pytest.raises(UserError, match="corrupt"):
        read_json(p, "manifest")


def test_staged_dir_interrupted_leaves_old_intact(tmp_path):
    final = tmp_path / "data"
    with staged_dir(final) as d:
        (d / "f").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dir(final, force=True) as d:
            (d / "f").write_text("new")
            raise RuntimeError("killed")
    assert (final / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    with pytest.raises(UserError, match="--force"):
        with staged_dir(final):
            pass


def test_written_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {})
        with staged_dir(tmp_path / "d") as d:
            pass
    finally:
        os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_json_safe_writes_nan_and_infinity_one_way():
    import math

    import numpy as np

    v = {"a": math.nan, "b": [math.inf, -math.inf, 1.5, None], "c": (np.float64("inf"), 2),
         "d": {"e": "inf", "f": True, "g": 3}}
    safe = json_safe(v)
    assert safe == {"a": None, "b": ["inf", "-inf", 1.5, None], "c": ["inf", 2],
                    "d": {"e": "inf", "f": True, "g": 3}}
    json.dumps(safe, allow_nan=False)  # strict JSON: no NaN/Infinity literals left
    with pytest.raises(ValueError):
        json.dumps(v, allow_nan=False)


def test_read_json_of_a_folder_is_one_line(tmp_path):
    """A JSON file that is a folder (manifest.json, report.json, a run's config.json made a
    directory) was an IsADirectoryError traceback."""
    (tmp_path / "config.json").mkdir()
    with pytest.raises(UserError, match=r"run config .*config\.json is a folder, not a file"):
        read_json(tmp_path / "config.json", "run config")
