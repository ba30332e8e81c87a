"""`zhbert` command line.

Each command lives in the module that does the work; that module defines
``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the
command being run is imported, so `zhbert --help` stays instant and a data
command never pays for importing torch.

User errors (``UserError``) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Any

from zhbert import __version__
from zhbert.errors import UserError

# command words -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("prepare",): ("zhbert.corpus.prepare_cli", "turn a text corpus (--language) into a verified data directory"),
    ("data", "report"): ("zhbert.corpus.report", "dataset report with pass/fail checks"),
    ("data", "text"): ("zhbert.corpus.text", "print cleaned text exactly as training sees it"),
    ("train",): ("zhbert.train", "pretrain a BERT on a data directory (torchrun for many processes)"),
    ("status",): ("zhbert.status", "where a run stands: step, metrics, speed, ETA, checkpoint"),
    ("predict",): ("zhbert.analysis.predict_command", "steps, tokens, hours to reach a target accuracy, with intervals"),
    ("backtest",): ("zhbert.analysis.cli", "fit learning curves on part of a run, score them on the rest"),
    ("analyze",): ("zhbert.report", "study a run: correlation, curve fits, prediction, anomalies, charts, report"),
    ("compare",): ("zhbert.compare", "compare runs aligned by step, tokens or time: table, overlaid curves"),
    ("fill-mask",): ("zhbert.fillmask_cli", "most likely tokens for each [MASK] in a sentence"),
    ("export",): ("zhbert.export", "write a checkpoint as a Hugging Face model directory"),
    ("eval",): ("zhbert.checkpoint_eval", "re-evaluate checkpoints on a held-out split (resumable)"),
    ("probe",): ("zhbert.probe", "fine-tune or linear-probe checkpoints on a labelled task"),
    ("monitor",): ("zhbert.monitor.server", "live local dashboard for runs: curves, study, anomalies, checkpoints"),
    ("sweep",): ("zhbert.sweep.command", "hyper-parameter search on Optuna, pruned by curve forecasts, many workers"),
    ("sweep", "report"): ("zhbert.sweep.report", "a sweep's trials, best config as TOML, importances, curves"),
}


def _overview(group: str | None = None) -> str:
    """The commands, or those of one group ("data": data report, data text)."""
    width = max(len(" ".join(k)) for k in COMMANDS)
    lines = [f"zhbert {__version__}: pretrain Chinese BERT models and study how they learn",
             "", "usage: zhbert COMMAND [options]   (zhbert COMMAND --help for details)", "",
             "commands:"]
    lines += [f"  {' '.join(k):<{width}}  {help_}" for k, (_, help_) in COMMANDS.items()
              if group is None or k[0] == group]
    return "\n".join(lines)


def _groups() -> set[str]:
    """First words of commands that are no command alone ("data")."""
    return {k[0] for k in COMMANDS if len(k) > 1 and k[:1] not in COMMANDS}


def _unknown(argv: list[str]) -> str:
    """"unknown command 'plan'", the command's words only ('plan RUN' read as one command
    name to a newcomer), and the nearest command where one is near."""
    import difflib
    words = " ".join(argv[:2] if argv[0] in _groups() else argv[:1])
    near = difflib.get_close_matches(words, [" ".join(k) for k in COMMANDS], n=1)
    return f"unknown command {words!r}" + (f" (did you mean {near[0]!r}?)" if near else "")


def _find(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    for key in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(key)]) == key:
            return key, argv[len(key):]
    return None


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (not the usage block) like every other
    user error, pointing at --help; exit code 2 as argparse's."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}{_dash_hint(message)} (see {self.prog} --help)\n")


def _dash_hint(message: str) -> str:
    """argparse reads `--lr -inf` as an option with no value (only `-1`-like words pass as
    negative numbers): name the form that passes the value."""
    head, _, tail = message.partition(": ")
    if tail != "expected one argument" or not head.startswith("argument "):
        return ""
    option = head.removeprefix("argument ").split("/")[-1]
    return f" (a value that starts with '-', such as -1, goes as {option}=VALUE)"


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
    except BaseException as exc:  # noqa: BLE001 - re-raised unless a gloo group is open
        if not _gloo_open():
            if isinstance(exc, KeyboardInterrupt):  # before run's own handler: `import torch`
                print("zhbert: interrupted", file=sys.stderr)
                return 130
            raise
        code = _uncaught(exc)
    if _gloo_open():
        from zhbert.distributed import exit_process
        exit_process(code)
    return code


def _gloo_open() -> bool:
    """Whether this process is a rank of a gloo process group (distributed.exit_process
    says why that matters at exit). Only a command that imported torch.distributed can
    be, and the CLI does not import torch for the others. Asked of the module as it is:
    after a Ctrl-C inside `import torch` it is half imported, and importing torch again
    fails ("duplicate registrations")."""
    td = sys.modules.get("torch.distributed")
    try:
        return bool(td and td.is_available() and td.is_initialized() and td.get_backend() == "gloo")
    except Exception:  # noqa: BLE001 - a half-imported module lacks what is asked
        return False


# what a rank raises when another rank of its group died (gloo's TCP pair, torch's wrappers)
_LOST_PEER = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
              "Socket Timeout", "Connection refused")


def _uncaught(exc: BaseException) -> int:
    """What the interpreter would print and exit with for an exception left uncaught; a
    collective broken by another rank's death is one line (that rank's log has the cause)."""
    if isinstance(exc, SystemExit):
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _LOST_PEER):
        where = str(exc).strip().splitlines()[0][:200]
        print(f"zhbert: error: another process of this run stopped, and this one lost it ({where}); "
              "see the other ranks' output for why. The run keeps its last checkpoint: continue "
              "it with the same torchrun command and --resume", file=sys.stderr)
        return 1
    traceback.print_exception(exc)
    return 1


def _option_hint(exc: UserError, args: Any) -> str:
    """". Pass --metric NAME" where the error names an option this command has."""
    if exc.option and hasattr(args, exc.option.lstrip("-").replace("-", "_")):
        return f". Pass {exc.option} NAME"
    return ""


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if argv[0] == "--version":
        print(f"zhbert {__version__}")
        return 0
    found = _find(argv)
    if found is None and argv[0] in _groups() and (len(argv) == 1 or argv[1] in ("-h", "--help")):
        asked = len(argv) > 1  # `zhbert data --help`: the group's commands; `zhbert data`: an error
        print(_overview(argv[0]), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    if found is None:
        print(_overview(), file=sys.stderr)
        print(f"\nzhbert: error: {_unknown(argv)}", file=sys.stderr)
        return 2
    key, rest = found
    module_name, help_ = COMMANDS[key]
    module = importlib.import_module(module_name)
    parser = _Parser(prog="zhbert " + " ".join(key), description=help_)
    module.add_arguments(parser)
    # options may sit between positionals (`fill-mask RUN --top-k 3 "..."` read the sentence as
    # an unrecognized argument); argparse: message + exit 2 on bad options
    # (not after "--": intermixed parsing then drops a positional that starts with "-")
    args = parser.parse_args(rest) if "--" in rest else parser.parse_intermixed_args(rest)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        from zhbert.failure import tell_failure  # stdlib only; does nothing unless a sweep started this
        tell_failure(exc)  # the errno behind the error, for the sweep's worker
        print(f"zhbert: error: {exc}{_option_hint(exc, args)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("zhbert: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zhbert ... | head`: the reader left, nothing is wrong
        sys.stderr = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
