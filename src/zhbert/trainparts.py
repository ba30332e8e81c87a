"""The parts of a Trainer, made as a run makes them: the optimizer, the precision, the
bf16 copy, the data loader and the model's wrapping (DDP, torch.compile). `zhbert train`
builds a run from them (train.build_trainer), `train --minutes` a throwaway one to time
(zhbert.budget), and the benchmarks and tests the same parts, so that a change here is
what they all measure."""

from __future__ import annotations

import os

import torch

from zhbert.config import Config
from zhbert.distributed import Dist
from zhbert.instance_cache import instance_cache_dir
from zhbert.run import data_config
from zhbert.schedule import Schedule


def build_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW, no weight decay on biases and LayerNorm weights (1-D params)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    t = cfg.train
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps, fused=True)


def resolve_precision_for(cfg: Config, device: torch.device):
    """(precision, why, autocast context factory, fp16 grad scaler or None) of a run."""
    from zhbert.machine import detect_capabilities
    from zhbert.precision import (apply_matmul_precision, autocast_context, needs_grad_scaler,
                                  resolve_precision)
    resolved = resolve_precision(cfg.train.precision, detect_capabilities(device))
    apply_matmul_precision(resolved)  # TF32 for fp32 on Ampere+
    autocast = lambda: autocast_context(resolved.precision, device)  # noqa: E731
    scaler = (torch.amp.GradScaler(device.type)
              if needs_grad_scaler(resolved.precision, device) else None)
    return resolved.precision, resolved.reason, autocast, scaler


def bf16_copy(raw_model: torch.nn.Module):
    """The bf16 copy that trains; the fp32 raw_model stays the master."""
    from zhbert.precision import Bf16Weights
    return Bf16Weights(raw_model)


def build_loader(cfg: Config, data_dir, dist: Dist = Dist(), device_type: str = "cpu"):
    """The training batches: PretrainingLoader, or with data.warmup_len a
    LengthWarmupLoader whose batches of the first warmup_len_fraction x train.steps
    steps hold max_len / warmup_len times as many sequences of warmup_len tokens.
    On CUDA: loader workers (data.num_workers -1) and pinned batches; with several
    processes on a node, one build of each epoch for all of them (instance_cache)."""
    from zhbert.loader import PretrainingLoader, loader_workers
    d, b = cfg.data, cfg.train.batch_size
    workers = loader_workers(d.num_workers, device_type, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cache = instance_cache_dir() if dist.world > 1 or workers > 0 else None

    def loader(max_len: int, batch_size: int) -> PretrainingLoader:
        return PretrainingLoader(data_dir, "train", data_config(cfg, max_len), batch_size=batch_size,
                                 rank=dist.rank, world_size=dist.world, num_workers=workers,
                                 pin_memory=device_type == "cuda", cache_dir=cache)

    full = loader(d.max_len, b)
    if not d.warmup_len:
        return full
    return length_warmup(cfg, loader(d.warmup_len, b * (d.max_len // d.warmup_len)), full)


def length_warmup(cfg: Config, short, full):
    """The loader of a length warm-up: ``short``'s batches for its share of train.steps."""
    from zhbert.loader import LengthWarmupLoader
    return LengthWarmupLoader(short, full, Schedule.from_config(cfg).short_steps * cfg.train.grad_accum)


def wrap_model(model: torch.nn.Module, cfg: Config, dist: Dist, device: torch.device, ddp: bool = True):
    """DDP (when several ranks and ``ddp``) and torch.compile. A bf16 copy is not wrapped:
    its gradients are accumulated and all-reduced in fp32 on the masters (train_step)."""
    if dist.world > 1 and ddp:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        model = torch.compile(model)
    return model
