"""One copy of an epoch's instances per node, shared by its ranks and loader workers.

Every training process (8 ranks on an 8-GPU node, each with its loader workers) needs
the same epoch array: the global order that rank r takes its share of. Built in each
process, that is 8 x (1 + workers) times the CPU (the packing is a Python loop over
every sentence of the split) and the memory (tens of bytes per sequence: hundreds of
MB for a Wikipedia-size corpus). Here the first process to ask builds the epoch under
a file lock and writes it as .npy; the others wait on the lock, then map the same file
read-only, so the node's page cache holds one copy. The array is the one
``build_instances`` returns, so batches are unchanged. Where the lock or the write
fails (a file system without flock, a full disk) each process builds its own, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: no shared cache
    fcntl = None  # type: ignore[assignment]


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def drop_cached(key: dict, cache_dir: Path | None) -> None:
    """Remove ``key``'s epochs and lock (at the end of a run: the cache is for the run's
    own processes; a process that still maps a file keeps its pages)."""
    if cache_dir is None or not Path(cache_dir).is_dir():
        return
    for path in Path(cache_dir).glob(f"instances-{_digest(key)}*"):
        path.unlink(missing_ok=True)


def cached_epoch(build: Callable[[], np.ndarray], key: dict, epoch: int,
                 cache_dir: Path | None) -> np.ndarray:
    """``build()``'s array for ``epoch``, built once per ``cache_dir`` (None: no cache).
    ``key`` must name everything the array depends on besides the epoch."""
    if cache_dir is None or fcntl is None:
        return build()
    digest = _digest(key)
    path = Path(cache_dir) / f"instances-{digest}-e{epoch}.npy"
    built = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f"instances-{digest}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not path.exists():
                built = build()
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, built, allow_pickle=False)
                os.replace(tmp, path)
                _drop_older(path.parent, digest, epoch)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError:
        return built if built is not None else build()


def _drop_older(cache_dir: Path, digest: str, epoch: int) -> None:
    """Epochs before the previous one are done on every rank (ranks step together): a
    process that still maps one keeps its pages (unlink does not unmap)."""
    for old in cache_dir.glob(f"instances-{digest}-e*.npy"):
        try:
            if int(old.stem.rsplit("-e", 1)[1]) < epoch - 1:
                old.unlink(missing_ok=True)
        except ValueError:
            continue


def instance_cache_dir() -> Path:
    """The node-local cache: the processes of one node share it, other nodes have their
    own; files are named by a hash of the data and settings, so runs never mix."""
    import tempfile
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(os.environ.get("ZHBERT_CACHE_DIR") or Path(tempfile.gettempdir()) / f"zhbert-{uid}")
