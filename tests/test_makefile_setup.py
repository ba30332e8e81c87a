"""`make setup`'s torch index reaches torch's install only: PyTorch's wheel index does not
carry the other requirements (jieba, opencc, ...), so an --index-url on the requirements'
install would make a CUDA setup fail; the requirements' install repeats the pin instead."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(*overrides: str) -> list[str]:
    if shutil.which("make") is None or not (ROOT / "Makefile").is_file():
        pytest.skip("make or the repository's Makefile is not here")
    # -B: the recipe even where setup is done; -n: printed, not run
    out = subprocess.run(["make", "-n", "-B", "setup", *overrides], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def test_the_cuda_index_is_passed_to_torchs_install_only():
    index = "https://download.pytorch.org/whl/cu128"
    lines = _dry_run(f"TORCH_INDEX={index}")
    torch_line, = [line for line in lines if "-r requirements.txt" not in line and "torch==" in line]
    requirements_line, = [line for line in lines if "-r requirements.txt" in line]
    assert f"--index-url {index}" in torch_line
    # pip takes an installed 2.13.0+cpu for ==2.13.0: from an index torch is reinstalled
    assert "--force-reinstall --no-deps" in torch_line
    assert "index-url" not in requirements_line and "torch==2.13.0" in requirements_line
    assert not any("index-url" in line for line in lines if line not in (torch_line,))


def test_without_an_index_pip_uses_its_own_configuration():
    assert not any("index-url" in line for line in _dry_run())


def test_setup_runs_again_when_the_torch_asked_for_changes(tmp_path):
    """The advice for a CPU-only torch on a GPU machine (make setup TORCH_INDEX=...) did
    nothing once setup had run: the stamp did not depend on TORCH / TORCH_INDEX. It depends
    on a spec file that is rewritten only when they change."""
    if shutil.which("make") is None or not (ROOT / "Makefile").is_file():
        pytest.skip("make or the repository's Makefile is not here")
    venv = tmp_path / "venv"
    spec = venv / ".zhbert-torch"

    def make_spec(*overrides):
        subprocess.run(["make", "-s", f"VENV={venv}", str(spec), *overrides], cwd=ROOT, check=True)
        return spec.read_text(), spec.stat().st_mtime_ns

    first = make_spec()
    assert make_spec() == first  # the same torch: untouched, so setup stays done
    index = "https://download.pytorch.org/whl/cu128"
    text, mtime = make_spec(f"TORCH_INDEX={index}")
    assert index in text and mtime >= first[1] and text != first[0]
    rules = subprocess.run(["make", "-pn", f"VENV={venv}", "setup"], cwd=ROOT, capture_output=True,
                           text=True).stdout
    assert any(line.startswith(f"{venv}/.zhbert-setup:") and str(spec) in line for line in rules.splitlines())
