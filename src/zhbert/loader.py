"""Training batches, streamed: one rank's share of each epoch (built once per node),
made in DataLoader workers where asked, with exact resume (``state_dict``), and the
sequence-length warm-up that switches from short to full-length batches.

What a batch is (instances, masking, layout) is ``zhbert.data``; this module only
decides which batches come when and where they are made.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from zhbert.data import DataConfig, build_instances, make_batch, open_split
from zhbert.datadir import DataDir, SplitArrays
from zhbert.errors import UserError
from zhbert.threads import available_cores

class _BatchStream(torch.utils.data.IterableDataset):
    """One rank's batches from (epoch, position) on, forever.

    Holds only a path and numbers until first used, so it can be sent to
    DataLoader workers; each worker builds the epoch's instances itself (same
    seed, same array) and makes every ``num_workers``-th batch.
    """

    def __init__(self, path: Path, split: str, cfg: DataConfig, batch_size: int,
                 rank: int, world_size: int, cache_dir: Path | None = None,
                 epoch: int = 0, position: int = 0, full_len: int | None = None):
        super().__init__()
        self.path, self.split, self.cfg, self.cache_dir = path, split, cfg, cache_dir
        self.full_len = full_len  # the short loader of a length warm-up up to that max_len
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.start = (epoch, position)
        self._arrays: tuple[DataDir, SplitArrays] | None = None
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def arrays(self) -> tuple[DataDir, SplitArrays]:
        if self._arrays is None:
            # in a worker: the loader's process checked the token ids (__init__), once
            self._arrays = open_split(self.path, self.split, self.cfg, check_ids=False)
        return self._arrays

    def instances(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            from zhbert.instance_cache import cached_epoch
            arrays, where = self.arrays()[1], f"split {self.split!r} of {self.path}"
            self._epoch_cache = (epoch, cached_epoch(
                lambda: build_instances(arrays, self.cfg, epoch, where=where),
                self.cache_key(), epoch, self.cache_dir))
        return self._epoch_cache[1]

    def cache_key(self) -> dict:
        """What the epoch arrays depend on besides the epoch (instance_cache's key)."""
        dd = self.arrays()[0]
        return {"data": str(Path(dd.path).resolve()), "manifest": dd.manifest, "split": self.split,
                "config": asdict(self.cfg)}

    def check(self, epoch: int = 0) -> np.ndarray:
        """The epoch's instances, or a UserError if they do not fill one global batch
        (before training, and again at each epoch: epochs differ slightly in size)."""
        inst = self.instances(epoch)
        if len(inst) < self.batch_size * self.world_size:
            raise UserError(self.too_few(len(inst)))
        return inst

    def too_few(self, n: int) -> str:
        """The message for ``n`` sequences short of a global batch: where its size comes
        from (a warm-up's batches hold max_len / warmup_len times as many short sequences:
        trainparts.build_loader) and what makes it fit."""
        full_len = self.full_len
        gb, k = self.batch_size * self.world_size, full_len // self.cfg.max_len if full_len else 1
        terms = [f"train.batch_size {self.batch_size // k}"]
        fix = "a larger corpus or a smaller train.batch_size"
        if full_len:
            terms.append(f"{k} short sequences per full one during the length warm-up "
                         f"(data.warmup_len {self.cfg.max_len} of data.max_len {full_len})")
            fix = ("a larger corpus, a smaller train.batch_size, or --set data.warmup_len=0 "
                   "to turn the warm-up off")
        if self.world_size > 1:
            terms.append(f"{self.world_size} processes")
        origin = f": {' x '.join(terms)}" if len(terms) > 1 else ""
        return (f"split {self.split!r} of {self.path} gives only {n} sequences, fewer than one "
                f"global batch ({gb}{origin}); use {fix}")

    def batches(self, epoch: int, position: int, every: int = 1,
                offset: int = 0) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """Yield (epoch, position after the batch, batch); position counts global samples."""
        dd, arrays = self.arrays()
        b, gb = self.batch_size, self.batch_size * self.world_size
        k = 0
        while True:
            inst = self.check(epoch)
            while position + gb <= len(inst):  # the last partial batch is dropped
                if k % every == offset:
                    lo = position + self.rank * b
                    batch = make_batch(arrays, inst[lo:lo + b], np.arange(lo, lo + b), epoch,
                                       self.cfg, self.cfg.seed, len(dd.vocab), dd.vocab.mask_id,
                                       dd.vocab.cls_id, dd.vocab.sep_id)
                    yield epoch, position + gb, batch
                position += gb
                k += 1
            epoch, position = epoch + 1, 0

    def __iter__(self) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        info = torch.utils.data.get_worker_info()
        every, offset = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.batches(*self.start, every=every, offset=offset)


def worker_message(text: str) -> str:
    """A UserError's own message from a DataLoader worker's re-raise ("Caught UserError in
    DataLoader worker process 0. Original Traceback ... zhbert.errors.UserError: MESSAGE"):
    the CLI prints one line, not the worker's traceback."""
    if "Original Traceback" not in text:
        return text
    return text.rstrip().rsplit("UserError: ", 1)[-1]


def loader_workers(requested: int, device_type: str, local_world: int = 1) -> int:
    """``data.num_workers``, with -1 (auto) resolved: on CUDA, batches are built in worker
    processes (up to 4 a rank, leaving a core per rank for the training loop) so that the
    GPU does not wait for the masking; on the CPU in the training process, where workers
    would take cores from the step itself."""
    cores = available_cores()
    if requested > cores:  # each a process building batches: more than the cores only queue
        raise UserError(f"data.num_workers {requested:,} is more than the {cores} cores this "
                        "process may run on; lower it, or -1 (auto)")
    if requested >= 0:
        return requested
    if device_type != "cuda":
        return 0
    return max(1, min(4, cores // max(1, local_world) - 1))


class PretrainingLoader:
    """Infinite iterator of training batches; resumable with state_dict().

    DDP: every world size sees the same global order; rank r of W takes samples
    [pos + r*b, pos + (r+1)*b) and pos advances by b*W, so 2 ranks x 4 see the
    samples of 1 rank x 8. ``num_workers`` > 0 builds batches in DataLoader
    worker processes (in order, prefetched); the batches are the same.
    ``pin_memory`` (for CUDA) hands out page-locked batches, so that the copy to the
    GPU can be asynchronous; ``cache_dir`` shares each epoch's instances between the
    processes of a node (``zhbert.instance_cache``).
    """

    def __init__(self, data_dir: str | Path | DataDir, split: str = "train",
                 cfg: DataConfig = DataConfig(), batch_size: int = 32, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
                 cache_dir: str | Path | None = None):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or num_workers < 0:
            raise UserError(f"invalid loader setup: batch_size={batch_size}, rank={rank}, "
                            f"world_size={world_size}, num_workers={num_workers}")
        self.cfg, self.split, self.num_workers, self.pin_memory = cfg, split, num_workers, pin_memory
        self.data, arrays = open_split(data_dir, split, cfg)  # fail here, not in a worker
        self._spec = (self.data.path, split, cfg, batch_size, rank, world_size,
                      None if cache_dir is None else Path(cache_dir))
        self._stream = _BatchStream(*self._spec)
        self._stream._arrays = (self.data, arrays)
        self.epoch, self.position = 0, 0
        self.real_tokens, self.total_tokens, self.last_real_tokens = 0, 0, 0
        self._it: Iterator | None = None

    def __iter__(self) -> "PretrainingLoader":
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            self._it = self._start()
        try:
            self.epoch, self.position, batch = next(self._it)
        except UserError as exc:  # from a worker: torch re-raises it with the worker's traceback
            raise UserError(worker_message(str(exc))) from None
        if self.pin_memory and self.num_workers == 0:  # workers: the DataLoader pins
            batch = {k: v.pin_memory() for k, v in batch.items()}
        self.last_real_tokens = int(batch["attention_mask"].sum())
        self.real_tokens += self.last_real_tokens
        self.total_tokens += batch["attention_mask"].numel()
        return batch

    def check(self) -> None:
        """Fail now, with a UserError, where the first batch would (too few documents for
        NSP, fewer sequences than a batch) rather than after the run has started."""
        self._stream.check(self.epoch)
        if self.num_workers:  # the workers build their own: do not hold the epoch here too
            self._stream._epoch_cache = None

    def _start(self) -> Iterator:
        if self.num_workers == 0:
            return self._stream.batches(self.epoch, self.position)
        stream = _BatchStream(*self._spec, epoch=self.epoch, position=self.position,
                              full_len=self._stream.full_len)
        return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                                                prefetch_factor=4, pin_memory=self.pin_memory))

    @property
    def padding_fraction(self) -> float:
        """Share of [PAD] in the batches yielded so far."""
        return 1.0 - self.real_tokens / self.total_tokens if self.total_tokens else 0.0

    def steps_in_epoch(self, epoch: int | None = None) -> int:
        """Number of (global) batches in an epoch; epochs differ slightly in size."""
        inst = self._stream.instances(self.epoch if epoch is None else epoch)
        return len(inst) // (self._spec[3] * self._spec[5])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "split": self.split,
                "config": asdict(self.cfg), "real_tokens": self.real_tokens,
                "total_tokens": self.total_tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly at the batch after the one the state was taken at.
        Batch size and world size may change (positions are global samples)."""
        if state.get("config") != asdict(self.cfg) or state.get("split") != self.split:
            raise UserError("the loader state was saved with different data settings "
                            f"({state.get('split')!r}, {state.get('config')}) than this run "
                            f"({self.split!r}, {asdict(self.cfg)}); resume with the original settings")
        self.close()
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.real_tokens = int(state.get("real_tokens", 0))
        self.total_tokens = int(state.get("total_tokens", 0))

    def close(self) -> None:
        """Stop the worker processes (if any); iteration restarts from the current state."""
        self._it = None

    def drop_shared_cache(self) -> None:
        """Remove this loader's files from the node's instance cache (one process per node,
        when every process is done with them)."""
        from zhbert.instance_cache import drop_cached
        drop_cached(self._stream.cache_key(), self._spec[6])


class LengthWarmupLoader:
    """Sequence-length warm-up: the first ``short_batches`` batches come from ``short``
    (sequences of a fraction of max_len, proportionally more of them per batch), the rest
    from ``full``; resumable like PretrainingLoader.

    Why: with the `tiny` shape on the built-in corpus, MLM accuracy sits on a ~14% plateau
    (frequent characters, little use of context) for thousands of steps at length 64, while
    at length 32 it leaves it within ~1,000 steps and at 16 within ~800
    (benchmarks/RESULTS.md, "Time to accuracy").
    BERT itself trained 90% of its steps at 128 before 512; Li et al. (2022) warm up the
    length for stability and speed. The full-length loader starts at its own epoch 0.
    """

    def __init__(self, short: PretrainingLoader, full: PretrainingLoader, short_batches: int):
        self.short, self.full, self.short_batches = short, full, short_batches
        self.served = 0
        # the short batches' size needs explaining wherever they run short (too_few)
        short._stream.full_len = full.cfg.max_len

    def check(self) -> None:
        """PretrainingLoader.check for both lengths."""
        self.short.check()
        self.full.check()

    def __iter__(self) -> "LengthWarmupLoader":
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        loader = self.short if self.served < self.short_batches else self.full
        batch = next(loader)
        self.served += 1
        if self.served == self.short_batches:
            self.short.close()  # its worker processes, if any, are no longer needed
        return batch

    @property
    def padding_fraction(self) -> float:
        real = self.short.real_tokens + self.full.real_tokens
        total = self.short.total_tokens + self.full.total_tokens
        return 1.0 - real / total if total else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"served": self.served, "short_batches": self.short_batches,
                "short": self.short.state_dict(), "full": self.full.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("short_batches") != self.short_batches or "short" not in state:
            raise UserError("the loader state was saved without this run's sequence-length "
                            "warm-up (data.warmup_len); resume with the original settings")
        self.short.load_state_dict(state["short"])
        self.full.load_state_dict(state["full"])
        self.served = int(state["served"])

    def close(self) -> None:
        self.short.close()
        self.full.close()

    def drop_shared_cache(self) -> None:
        self.short.drop_shared_cache()
        self.full.drop_shared_cache()
