import subprocess
import sys

from zhbert.cli import main


def test_overview_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "prepare" in out and "data report" in out


def test_unknown_command_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_console_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "zhbert", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("zhbert ")
