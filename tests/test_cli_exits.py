"""How the CLI ends on what it does not expect: a Ctrl-C before a command's own handler
(inside `import torch`), and a rank whose collective broke because another rank died."""

from __future__ import annotations

import sys
import types

from zhbert import cli


def test_ctrl_c_inside_a_half_imported_torch_is_one_line_and_130(monkeypatch, capsys):
    """A Ctrl-C inside `import torch` left torch.distributed half imported; asking whether
    a gloo group was open imported torch again: a second traceback ("duplicate
    registrations") and exit 1."""
    monkeypatch.setitem(sys.modules, "torch.distributed", types.ModuleType("torch.distributed"))

    def interrupted(argv):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_main", interrupted)
    assert cli.main(["train"]) == 130
    err = capsys.readouterr().err
    assert err == "zhbert: interrupted\n"


def test_a_rank_that_lost_another_is_one_line(capsys):
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:44676: Connection reset by peer")
    assert cli._uncaught(gloo) == 1
    err = capsys.readouterr().err
    assert err.startswith("zhbert: error: another process of this run stopped, and this one lost it ")
    assert "Connection reset by peer" in err and "--resume" in err and "Traceback" not in err
    assert cli._uncaught(RuntimeError("a bug")) == 1  # anything else is printed as Python would
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err and "another process" not in err
