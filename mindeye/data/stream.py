"""An endless, seeded stream of freshly rendered scenes for training the demo vision stack.

The vision stack (small CLIP, VAE, unCLIP decoder, judge) never sees SimNSD's own images: it draws scene ids
from ``VISION_ID_BASE`` upwards, far from the NSD-like ids (< 10^6), so the 1000 shared test images stay
held out. Batches are a pure function of ``(seed, first_id, batch_size, step)``; rendering runs in a
DataLoader worker so the training process keeps both cores' matmuls busy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import scenes as S

VISION_ID_BASE = 10_000_000
VISION_SIZE = 64  # the vision stack works at 64 x 64 (objects' radius 8-17 px)


def to_model_input(images: np.ndarray | torch.Tensor, size: int = VISION_SIZE) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, size, size]`` in [0, 1] (antialiased resize)."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3] uint8, found shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0, 1)


def render_batch(ids, seed: int = 0, size: int = 96):
    """Scenes, uint8 images ``[N, size, size, 3]``, captions and labels for the given global ids."""
    scenes = [S.sample_scene(seed, int(i)) for i in ids]
    images = np.stack([S.render(s, size, seed) for s in scenes])
    return scenes, images, [S.caption(s) for s in scenes], S.labels_of(scenes)


class SceneStream(torch.utils.data.IterableDataset):
    """Yields ``collate(scenes, images, captions, labels)`` for batches of consecutive fresh ids.

    ``collate`` runs in the worker (tokenising, hard negatives, ...); it must return picklable tensors.
    """

    def __init__(self, batch_size: int, steps: int, collate, seed: int = 0, first_id: int = VISION_ID_BASE,
                 start_step: int = 0):
        self.batch_size, self.steps, self.collate = batch_size, steps, collate
        self.seed, self.first_id, self.start_step = seed, first_id, start_step

    def __iter__(self):
        torch.set_num_threads(1)
        for step in range(self.start_step, self.steps):
            ids = self.first_id + step * self.batch_size + np.arange(self.batch_size)
            scenes, images, captions, labels = render_batch(ids, self.seed)
            yield self.collate(scenes, images, captions, labels, step)


def loader(stream: SceneStream, workers: int = 1):
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                       persistent_workers=False, prefetch_factor=4 if workers else None)
