"""MindEye's contrastive losses (V1): MixCo voxel mixup, the bidirectional soft-target NCE (BiMixCo) and
SoftCLIP, plus the cosine-annealed temperature schedule.

``preds`` and ``targs`` are L2-normalised, flattened ``[B, D]`` (brain embeddings and CLIP targets).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mixco(voxels: torch.Tensor, beta: float = 0.15, s_thresh: float = 0.5, generator: torch.Generator | None = None):
    """Mix about ``s_thresh`` of the batch with a permuted partner, ``lambda ~ Beta(beta, beta)``.

    Returns ``(mixed_voxels, perm, betas, select)``; ``betas`` is 1 for unmixed rows."""
    b = voxels.shape[0]
    perm = torch.randperm(b, generator=generator).to(voxels.device)
    lam = torch.distributions.Beta(beta, beta).sample((b,)).to(voxels.device, voxels.dtype)
    select = (torch.rand(b, generator=generator) <= s_thresh).to(voxels.device)
    shape = (-1,) + (1,) * (voxels.ndim - 1)
    lam = torch.where(select, lam, torch.ones_like(lam))
    mixed = voxels * lam.view(shape) + voxels[perm] * (1 - lam).view(shape)
    return mixed, perm, lam, select


def mixco_nce(preds: torch.Tensor, targs: torch.Tensor, temp: float = 0.006, perm=None, betas=None,
              bidirectional: bool = True) -> torch.Tensor:
    """InfoNCE over ``preds @ targs.T / temp``; with MixCo's ``perm``/``betas`` the targets are soft: row i
    puts ``beta_i`` on its own image and ``1 - beta_i`` on ``perm[i]``'s (BiMixCo when bidirectional)."""
    logits = preds @ targs.T / temp
    b = logits.shape[0]
    if perm is None:
        target = torch.arange(b, device=logits.device)
        loss = F.cross_entropy(logits, target)
        return 0.5 * (loss + F.cross_entropy(logits.T, target)) if bidirectional else loss
    probs = torch.diag(betas) + (1 - betas)[:, None] * F.one_hot(perm, b).to(betas.dtype)
    loss = -(logits.log_softmax(-1) * probs).sum(-1).mean()
    if bidirectional:
        loss = 0.5 * (loss - (logits.T.log_softmax(-1) * probs.T).sum(-1).mean())
    return loss


def soft_clip_loss(preds: torch.Tensor, targs: torch.Tensor, temp: float = 0.125) -> torch.Tensor:
    """SoftCLIP: cross-entropy of ``softmax(preds targs^T / t)`` (both directions) against the soft targets
    ``softmax(targs targs^T / t)`` (images' similarity to each other)."""
    clip_clip = (targs @ targs.T / temp).softmax(-1)
    brain_clip = preds @ targs.T / temp
    loss1 = -(brain_clip.log_softmax(-1) * clip_clip).sum(-1).mean()
    loss2 = -(brain_clip.T.log_softmax(-1) * clip_clip).sum(-1).mean()
    return 0.5 * (loss1 + loss2)


def cosine_anneal(start: float, end: float, steps: int) -> list[float]:
    """``steps`` values from ``start`` to ``end`` along half a cosine (V1's SoftCLIP temperature)."""
    if steps <= 1:
        return [end] * max(steps, 0)
    return [end + (start - end) / 2 * (1 + math.cos(math.pi * i / (steps - 1))) for i in range(steps)]
