"""Helpers of the bad-input tests: a command's parser alone, and a refusal's one line."""

import importlib

from zhbert.cli import COMMANDS, _Parser, main

HUGE = "99999999999999999999"  # past int64: an OverflowError or a loop without end before


def parse(command, argv):
    """The options of `zhbert COMMAND` (a word or a tuple of words) as cli._main parses them."""
    key = (command,) if isinstance(command, str) else tuple(command)
    parser = _Parser(prog="zhbert " + " ".join(key))
    importlib.import_module(COMMANDS[key][0]).add_arguments(parser)
    return parser.parse_intermixed_args(argv)


def refused(argv, capsys) -> str:
    """main(argv) exits 2 with one line on stderr, no traceback, nothing on stdout; the line."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's refusal of a value out of range
        rc = exc.code
    out = capsys.readouterr()
    assert rc == 2 and out.err.count("\n") == 1 and "Traceback" not in out.err, out.err
    assert out.out == ""
    return out.err
