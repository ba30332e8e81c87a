"""Every benchmark module imports: they run rarely (by hand, or the slow tests), so a name
moved in src broke benchmarks.prediction_accuracy unseen by the fast suite."""

import importlib
from pathlib import Path

import pytest

MODULES = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py")
                 if p.stem != "__init__")


def test_there_are_benchmarks():
    assert "prediction_accuracy" in MODULES and len(MODULES) > 10


@pytest.mark.parametrize("name", MODULES)
def test_a_benchmark_module_imports(name):
    importlib.import_module(f"benchmarks.{name}")
