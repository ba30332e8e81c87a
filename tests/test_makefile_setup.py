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
    assert "index-url" not in requirements_line and "torch==2.13.0" in requirements_line
    assert not any("index-url" in line for line in lines if line not in (torch_line,))


def test_without_an_index_pip_uses_its_own_configuration():
    assert not any("index-url" in line for line in _dry_run())
