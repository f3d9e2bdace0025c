"""The one optimisation loop of the demo vision stack's trainers (SceneCLIP, the VAE and its decoder fine-tune,
the judge, the decoder UNet): each trainer says what one step computes; this loop does the rest the same way
for all of them (zero grad, backward, gradient clipping, optimiser and schedule steps, a progress bar, and a
JSON metrics line every ``log_every`` steps with the window's means). MindEye's own trainer (``mindeye.train``)
has more to do per epoch (Accelerate, validation, resumable checkpoints) and keeps its own loop.
"""
from __future__ import annotations

import json
import math
import time
from typing import Callable, Iterable

import numpy as np
import torch


def to_device(batch, device):
    """Tensors in ``batch`` (nested in tuples, lists and dicts) moved to ``device``; anything else as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def fit(name: str, batches: Iterable, steps: int, step_fn: Callable, opt: torch.optim.Optimizer, *,
        clip_params=None, sched=None, lr_at: Callable[[int], float] | None = None, log_every: int = 50,
        log=print, extra_log: Callable[[int], dict] | None = None, device=None) -> float:
    """Run ``step_fn(step, batch) -> (loss, {metric: float})`` over ``batches`` (``steps`` of them) and return the
    seconds taken.

    ``device``: each batch's tensors are moved there first. ``clip_params``: clip their gradient norm to 1. ``sched``: a torch LR scheduler stepped after each step;
    ``lr_at(step)``: the learning rate to set before each step instead. ``extra_log(step)``: more fields for a
    metrics line (e.g. a held-out score), called only when one is written."""
    from tqdm import tqdm
    clip_params = list(clip_params) if clip_params is not None else None  # a generator would be spent after one step
    t0, hist = time.time(), []
    bar = tqdm(batches, total=steps, desc=name, unit="step", mininterval=5)
    for step, batch in enumerate(bar):
        if lr_at is not None:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
        loss, metrics = step_fn(step, to_device(batch, device) if device is not None else batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_params is not None:
            torch.nn.utils.clip_grad_norm_(clip_params, 1.0)
        opt.step()
        if sched is not None:
            sched.step()
        hist.append(metrics)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            window = hist[-log_every:]
            means = {k: float(np.mean([m[k] for m in window])) for k in window[-1]}
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items() if not math.isnan(v)})
            line = {"model": name, "step": step + 1,
                    **{k: None if math.isnan(v) else round(v, 5) for k, v in means.items()},
                    **(extra_log(step + 1) if extra_log else {}),
                    "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t0, 1)}
            log(json.dumps(line))
    return time.time() - t0
