"""What the pipelines need of a CLIP image encoder; SceneCLIP, ``HFClipEmbedder`` (transformers ViT-L/14) and
``OpenClipEmbedder`` (open_clip ViT-L-14) all meet it."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Embedder(Protocol):
    def hidden(self, images, normalize: bool = True) -> torch.Tensor:
        """Images (uint8 ``[N,H,W,3]`` or float ``[N,3,h,w]`` in [0, 1]) -> last-layer tokens ``[N, T, D]``,
        divided by the CLS token's norm when ``normalize`` (Versatile Diffusion's conditioning)."""

    def final(self, images, normalize: bool = True) -> torch.Tensor:
        """Images -> the CLIP image embedding ``[N, D]`` (L2-normalised when ``normalize``)."""
