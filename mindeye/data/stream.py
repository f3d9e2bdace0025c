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


def _render_chunk(args):
    first, n, seed = args
    torch.set_num_threads(1)
    _, images, _, _ = render_batch(first + np.arange(n), seed)
    return (to_model_input(images) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class SceneBank:
    """``n`` scenes with consecutive ids from ``first_id``, rendered once at ``VISION_SIZE`` (uint8 [n, 64, 64, 3]).

    Rendering a scene costs ~7 ms of Python and PIL, more than a training step of a small CNN spends on it,
    so the vision stack trains for several epochs over one bank instead of rendering every sample afresh.
    Banks are cached as ``.npy`` under ``cache_dir`` and rendered in parallel processes.
    """

    def __init__(self, images: np.ndarray, first_id: int, seed: int):
        self.images, self.first_id, self.seed = images, int(first_id), int(seed)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def build(cls, n: int, seed: int = 0, first_id: int = VISION_ID_BASE, cache_dir=None, workers: int = 2,
              chunk: int = 500, log=print) -> "SceneBank":
        from pathlib import Path
        path = Path(cache_dir) / f"scene_bank_s{seed}_{first_id}_{n}_{VISION_SIZE}px.npy" if cache_dir else None
        if path is not None and path.exists():
            images = np.load(path, mmap_mode="r")
            if images.shape == (n, VISION_SIZE, VISION_SIZE, 3):
                return cls(np.ascontiguousarray(images), first_id, seed)
            log(f"{path}: expected {(n, VISION_SIZE, VISION_SIZE, 3)}, found {images.shape}; re-rendering")
        from tqdm import tqdm
        jobs = [(first_id + i, min(chunk, n - i), seed) for i in range(0, n, chunk)]
        if workers > 1:
            import multiprocessing as mp
            with mp.get_context("spawn").Pool(workers) as pool:
                parts = list(tqdm(pool.imap(_render_chunk, jobs), total=len(jobs), desc="rendering scenes", unit="chunk"))
        else:
            parts = [_render_chunk(j) for j in tqdm(jobs, desc="rendering scenes", unit="chunk")]
        images = np.concatenate(parts) if parts else np.zeros((0, VISION_SIZE, VISION_SIZE, 3), np.uint8)
        if path is not None:
            from ..atomic import atomic_save
            def save(arr, tmp):
                with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a bare path
                    np.save(f, arr)
            atomic_save(images, path, save)
        return cls(images, first_id, seed)

    def batch(self, index: np.ndarray):
        """Scenes, uint8 images, captions and labels of the bank rows ``index``."""
        scenes = [S.sample_scene(self.seed, self.first_id + int(i)) for i in index]
        return scenes, self.images[index], [S.caption(s) for s in scenes], S.labels_of(scenes)


class SceneStream(torch.utils.data.IterableDataset):
    """Yields ``collate(scenes, images, captions, labels, step)`` for ``steps`` batches.

    Without a bank, every batch is freshly rendered from consecutive ids; with one, batches walk through
    seeded per-epoch permutations of the bank. ``collate`` runs in the worker (tokenising, hard negatives,
    ...); it must return picklable tensors.
    """

    def __init__(self, batch_size: int, steps: int, collate, seed: int = 0, first_id: int = VISION_ID_BASE,
                 start_step: int = 0, bank: SceneBank | None = None):
        self.batch_size, self.steps, self.collate = batch_size, steps, collate
        self.seed, self.first_id, self.start_step, self.bank = seed, first_id, start_step, bank

    def _bank_rows(self, step: int) -> np.ndarray:
        n = len(self.bank)
        if n < self.batch_size:
            raise ValueError(f"a scene bank of {n} scenes cannot fill batches of {self.batch_size}")
        per_epoch = n // self.batch_size
        epoch, k = divmod(step, per_epoch)
        order = np.random.default_rng([self.seed, epoch, 13]).permutation(n)
        return np.sort(order[k * self.batch_size:(k + 1) * self.batch_size])

    def __iter__(self):
        torch.set_num_threads(1)
        for step in range(self.start_step, self.steps):
            if self.bank is not None:
                scenes, images, captions, labels = self.bank.batch(self._bank_rows(step))
            else:
                ids = self.first_id + step * self.batch_size + np.arange(self.batch_size)
                scenes, images, captions, labels = render_batch(ids, self.seed)
            yield self.collate(scenes, images, captions, labels, step)


def loader(stream: SceneStream, workers: int = 1):
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                       persistent_workers=False, prefetch_factor=4 if workers else None)
