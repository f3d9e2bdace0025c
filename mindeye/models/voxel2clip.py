"""Voxel -> CLIP-space MLP backbone ("BrainNetwork") of MindEye V1.

Layout (names fixed so that ``state_dict()`` matches the released V1 checkpoints):

* ``lin0``: Linear(n_voxels, hidden), LayerNorm, GELU, Dropout(drop_in)
* ``mlp``: ``n_blocks`` residual blocks of Linear(hidden, hidden), LayerNorm, GELU, Dropout(drop_block)
* ``lin1``: Linear(hidden, clip_tokens * clip_dim)
* ``projector`` (optional): per-token MLP head used for the contrastive loss,
  LN, GELU, Linear(dim, proj_hidden), LN, GELU, Linear(proj_hidden, proj_hidden), LN, GELU, Linear(proj_hidden, dim)

V1 sizes: hidden ("257x768") model uses ``clip_tokens=257``; the "final-layer" (1x768) model uses ``clip_tokens=1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Voxel2ClipConfig:
    n_voxels: int = 15724
    hidden: int = 4096
    n_blocks: int = 4
    clip_tokens: int = 257
    clip_dim: int = 768
    use_projector: bool = True
    proj_hidden: int = 2048
    drop_in: float = 0.5
    drop_block: float = 0.15


def brain_network(model: nn.Module) -> nn.Module:
    """The ``BrainNetwork`` of a MindEye model: its ``voxel2clip`` when it has a diffusion prior, else the model."""
    return getattr(model, "voxel2clip", None) or model


class BrainNetwork(nn.Module):
    """Residual MLP mapping flattened voxels to ``clip_tokens`` CLIP-sized tokens."""

    def __init__(self, config: Voxel2ClipConfig | None = None, **overrides):
        super().__init__()
        cfg = config or Voxel2ClipConfig()
        if overrides:
            cfg = Voxel2ClipConfig(**{**cfg.__dict__, **overrides})
        self.config = cfg
        h = cfg.hidden
        self.lin0 = nn.Sequential(nn.Linear(cfg.n_voxels, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(cfg.drop_in))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(cfg.drop_block))
            for _ in range(cfg.n_blocks)
        )
        self.lin1 = nn.Linear(h, cfg.clip_tokens * cfg.clip_dim)
        if cfg.use_projector:
            d, p = cfg.clip_dim, cfg.proj_hidden
            self.projector = nn.Sequential(
                nn.LayerNorm(d), nn.GELU(), nn.Linear(d, p),
                nn.LayerNorm(p), nn.GELU(), nn.Linear(p, p),
                nn.LayerNorm(p), nn.GELU(), nn.Linear(p, d),
            )
        else:
            self.projector = None

    def forward(self, voxels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """voxels ``[B, n_voxels]`` -> ``(backbone, projected)``, both ``[B, clip_tokens, clip_dim]``.

        ``backbone`` conditions the diffusion prior; ``projected`` feeds the contrastive loss
        (equal to ``backbone`` when the model has no projector).
        """
        x = self.lin0(voxels)
        for block in self.mlp:
            x = block(x) + x
        x = self.lin1(x).reshape(voxels.shape[0], self.config.clip_tokens, self.config.clip_dim)
        return x, (self.projector(x) if self.projector is not None else x)
