"""A run's TensorBoard events (RUN/tb): a copy of what its history holds, for TensorBoard.

Written beside the history, never instead of it, so a write that fails (a full disk, a
file named ``tb`` in the way) turns the events off with one warning and the run goes on;
the history's own writes say the disk is full, with the fix, and stop the run cleanly.
A failure used to end the run with a traceback, from the writer's thread and then from
the training loop (or from the close in its ``finally``, over the history's message).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Callable

_HOOKED = False


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a failed write (Python prints it as a
    traceback), then the writer raises it again in the thread that writes next: that one
    becomes the warning, the thread's copy is not printed."""
    global _HOOKED
    if _HOOKED:
        return
    previous = threading.excepthook

    def hook(args) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
            return
        previous(args)
    threading.excepthook = hook
    _HOOKED = True


class TensorBoardLog:
    """``log(record)`` each history record's numbers as scalars; ``close()`` at the end."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "tb"
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: the history still has everything
            return
        _quiet_writer_threads()
        self._guard(lambda: setattr(self, "writer", SummaryWriter(str(self.path))))

    def log(self, rec: dict[str, Any]) -> None:
        def write() -> None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "type"):
                    self.writer.add_scalar(f"{rec['type']}/{k}", v, rec["step"])
            self.writer.flush()
        if self.writer is not None:
            self._guard(write)

    def close(self) -> None:
        if self.writer is not None:
            self._guard(self.writer.close)
            self.writer = None

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except OSError as exc:
            print(f"zhbert: warning: TensorBoard events in {self.path} stopped "
                  f"({exc.strerror or exc}); the run goes on, and its history.jsonl holds every "
                  "figure they would have shown", file=sys.stderr)
            self.writer = None
