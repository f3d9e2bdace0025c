"""Synthetic trials (``train --synthetic_trials N``): more images for the brain network than the subject saw.

A subject sees a few thousand images; the brain network has to learn from them alone which voxel patterns go with
which CLIP embeddings, and overfits them (the train-test gap). Synthetic trials add images the subject never saw:

1. an encoding model (``models.encoding``: ridge from the target CLIP's features of an image to each voxel's
   repetition-averaged beta) is fitted on the train images; its ridge penalty is chosen on the val split (median
   voxel correlation), never on the test set;
2. it predicts the noise-free response to N unseen images: fresh SimNSD scenes (ids from ``SYNTHETIC_ID_BASE``,
   disjoint from every subject's images, the test set, the vision stack's scenes and the retrieval pool) or, for
   NSD, the first N pictures of ``--synthetic_images FOLDER`` (images no subject saw, e.g. COCO's others);
3. each synthetic trial adds real noise to that prediction: the mean of k residual vectors (a train trial minus
   its image's mean over repetitions, scaled to one trial's noise), with k drawn like ``--train_reps subset``
   draws repetitions, so the noise has the data's own spatial structure and level.

Each training step then holds ``batch_size`` real trials and ``round(batch_size * synthetic_frac)`` synthetic
ones, in one loss: contrastive for ``train``, L1 on VAE latents for ``train-lowlevel``. ``targets`` names what a
run learns (``ClipTargets`` here, ``train_lowlevel.VaeTargets`` there). Val and test stay real trials only. What
the encoding model misses (its val correlation is logged in the run's data) is what synthetic trials cannot teach.

The set is cached per (dataset, CLIP weights, target, N, images) under ``cache/synthetic``.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..atomic import atomic_save
from ..data.errors import DataError
from ..models.encoding import (ENCODING_VERSION, GROUP_WEIGHTS, EncodingModel, encoding_features, features_of,
                               group_weights)
from ..train_config import SYNTHETIC_FEATURES

SYNTHETIC_ID_BASE = 300_000_000  # above the retrieval pool's 2 x 10^8 (see pipelines/pool.py for the id map)
ALPHAS = (1e2, 3e2, 1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CHUNK = 512  # images per forward pass
RENDER_CHUNK = 4096  # scenes rendered at a time (in parallel processes)


@dataclass
class SyntheticTrials:
    betas: torch.Tensor  # [N, V] float16: predicted noise-free betas of the unseen images
    targets: torch.Tensor  # [N, T, D] float16: their CLIP targets (the run's layer and normalisation)
    residuals: torch.Tensor  # [R, V] float16: single-trial noise vectors from the real train trials
    info: dict  # what the run records: N, source, the encoding model's alpha and val correlation

    def draw(self, n: int, rng: np.random.Generator, max_reps: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` synthetic trials: ``(betas [n, V], targets [n, T, D])``, each with the noise of the mean of 1 to
        ``max_reps`` real trials."""
        j = rng.integers(len(self.betas), size=n)
        k = rng.integers(1, max_reps + 1, size=n)
        noise = torch.stack([self.residuals[rng.integers(len(self.residuals), size=kk)].float().mean(0) for kk in k])
        return self.betas[j].float() + noise, self.targets[j].float()


class SyntheticTargets(Protocol):
    """What a run learns to predict for an image: called on a chunk of unseen images as uint8 ``images [N, H, W, 3]``,
    their vision input ``x`` and their normalised CLIP hidden ``h`` and final ``f`` embeddings (computed once for the
    encoding model, so a CLIP target costs nothing more); returns ``[N, ...]``. ``key`` names the target space in the
    cache key."""
    key: str

    def __call__(self, images, x: torch.Tensor, h: torch.Tensor, f: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ClipTargets:
    """``train``'s targets: the CLIP's hidden tokens ``[N, T, D]`` or final embedding ``[N, 1, D]``, normalised as
    the run's ``--norm_embs`` says."""
    embedder: object
    hidden: bool
    norm_embs: bool

    @property
    def key(self) -> str:
        return f"{self.hidden}|{self.norm_embs}"

    def __call__(self, images, x, h, f):
        if self.norm_embs:
            return h if self.hidden else f[:, None]
        return self.embedder.hidden(x, normalize=False) if self.hidden else self.embedder.final(x, normalize=False)[:, None]


def residual_noise(betas: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """``[R, V]`` single-trial noise vectors: each repeated image's trials minus their mean, times
    ``sqrt(n / (n - 1))`` (the deviation from an n-trial mean underestimates one trial's noise by that factor)."""
    out = []
    order = np.argsort(image_index, kind="stable")
    bounds = np.flatnonzero(np.diff(image_index[order])) + 1
    for group in np.split(order, bounds):
        if len(group) >= 2:
            b = betas[group]
            out.append((b - b.mean(0)) * np.sqrt(len(group) / (len(group) - 1)))
    if not out:
        raise DataError("synthetic trials need repeated train images to measure the noise (every train image here "
                        "was seen once)")
    return np.concatenate(out).astype(np.float16)


def _median_r(pred: torch.Tensor, true: torch.Tensor) -> float:
    p, t = pred - pred.mean(0), true - true.mean(0)
    r = (p * t).sum(0) / (p.norm(dim=0) * t.norm(dim=0) + 1e-9)
    return float(r.median())


def fit_encoding(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                 alphas=ALPHAS, weights: torch.Tensor | None = None) -> EncodingModel:
    """Ridge from features ``x [n, F]`` to betas ``y [n, V]`` in its dual form (one eigendecomposition of the
    n x n Gram matrix serves every alpha); alpha chosen by the median voxel correlation on ``(x_val, y_val)``.
    ``weights [F]``: each standardised feature is multiplied by its weight (feature groups' pull on the fit)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    if weights is not None:
        sd = sd / weights
    xs, xv = (x - mu) / sd, (x_val - mu) / sd
    ym = y.mean(0)
    ev, u = torch.linalg.eigh((xs @ xs.T).double())
    ev, u = ev.float().clamp_min(0), u.float()
    uty = u.T @ (y - ym)
    kv = xv @ xs.T
    best = None
    for a in alphas:
        dual = u @ (uty / (ev + a)[:, None])
        r = _median_r(kv @ dual + ym, y_val)
        if best is None or r > best[0]:
            best = (r, a, dual)
    r, a, dual = best
    return EncodingModel(mu=mu, sd=sd, weight=xs.T @ dual, beta_mean=ym, alpha=float(a), val_r=round(r, 4))


def _folder_images(folder: Path, n: int, first: int, count: int, size: int) -> np.ndarray:
    """Pictures ``first .. first + count`` of the first ``n`` in ``folder`` (sorted by path), square, at ``size``."""
    from ..pipelines.pool import square
    from PIL import Image
    if not folder.is_dir():
        raise DataError(f"--synthetic_images {folder}: not a folder (expected a folder of .jpg/.png pictures that no "
                        "subject saw)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        raise DataError(f"--synthetic_images {folder}: {len(files)} pictures, but --synthetic_trials asks for {n}")
    out = np.empty((count, size, size, 3), np.uint8)
    for i, p in enumerate(files[first:first + count]):
        try:
            with Image.open(p) as im:
                out[i] = square(im, size)
        except OSError as e:
            raise DataError(f"{p}: not a readable image ({e})") from e
    return out


def unseen_images(subject, n: int, first: int, count: int, folder: str | None, seed: int,
                  workers: int | None = None) -> np.ndarray:
    """Images ``first .. first + count`` of the ``n`` unseen ones, at the dataset's image size."""
    size = subject.image_store.image_size
    if folder:
        return _folder_images(Path(folder), n, first, count, size)
    if subject.manifest.get("dataset") != "SimNSD":
        raise DataError("--synthetic_trials on NSD needs --synthetic_images FOLDER: pictures no subject saw (SimNSD "
                        "renders fresh scenes itself)")
    from ..data.simnsd import render_scenes
    return render_scenes(SYNTHETIC_ID_BASE + first + np.arange(count), seed, size, workers=workers,
                         desc="rendering unseen scenes")[0]


def build_synthetic(subject, embedder, train_ids, train_betas, train_trials_of, val_betas, val_ids, *, n: int,
                    targets: SyntheticTargets, folder: str | None, seed: int, cache: Path | None, key: str,
                    features: str = "clip_low_level", log=print) -> SyntheticTrials:
    """The run's synthetic trials (cached by ``key``, ``n`` and ``targets.key``): fit the encoding model, predict
    ``n`` unseen images' responses, keep them with their ``targets`` and the real trials' residual noise.
    ``embedder``: the CLIP whose features the encoding model reads; ``key`` names it and the subject's data.
    ``features``: the encoding model's (``train_config.SYNTHETIC_FEATURES``)."""
    from tqdm import tqdm

    from ..data.stream import to_model_input
    src = f"folder {Path(folder).resolve()}" if folder else f"SimNSD scenes {SYNTHETIC_ID_BASE}+ (seed {seed})"
    if features not in SYNTHETIC_FEATURES:
        raise DataError(f"synthetic trials: features should be one of {', '.join(SYNTHETIC_FEATURES)}, found "
                        f"{features!r}")
    low = features == "clip_low_level"
    tag = hashlib.sha256(f"{key}|{n}|{targets.key}|{src}|encoding v{ENCODING_VERSION}"
                         f"{'' if low else ' clip only'}".encode()).hexdigest()[:16]
    path = cache / f"synthetic_{tag}.pt" if cache is not None else None
    if path is not None and path.exists():
        try:
            d = torch.load(path, weights_only=True)
            log(f"synthetic trials: {n} from the cache ({path.name})")
            return SyntheticTrials(d["betas"], d["targets"], d["residuals"], d["info"])
        except Exception:  # a damaged cache is rebuilt, never trusted
            path.unlink(missing_ok=True)

    t0 = time.time()

    def feats(images):
        return torch.cat([encoding_features(embedder, to_model_input(images[i:i + CHUNK], images.shape[1]), low)
                          for i in range(0, len(images), CHUNK)])

    index = np.concatenate([np.full(len(t), k) for k, t in enumerate(train_trials_of)])
    trials = np.concatenate(train_trials_of)
    betas = train_betas[trials].numpy() if isinstance(train_betas, torch.Tensor) else train_betas[trials]
    mean = torch.stack([torch.as_tensor(betas[index == k]).float().mean(0) for k in range(len(train_ids))])
    log(f"synthetic trials: fitting the encoding model on {len(train_ids)} train images (alpha on val)")
    x_train = feats(subject.images(train_ids))
    enc = fit_encoding(x_train, mean, feats(subject.images(val_ids)), torch.as_tensor(np.asarray(val_betas)).float(),
                       weights=group_weights(x_train.shape[1], low))
    log(f"synthetic trials: encoding model alpha {enc.alpha:g}, val median voxel r {enc.val_r:.3f}")
    pred, targ = [], []
    with torch.no_grad():
        for first in tqdm(range(0, n, RENDER_CHUNK), desc="synthetic trials", leave=False):
            images = unseen_images(subject, n, first, min(RENDER_CHUNK, n - first), folder, seed)
            for i in range(0, len(images), CHUNK):
                x = to_model_input(images[i:i + CHUNK], images.shape[1])
                h, f = embedder.hidden(x, normalize=True), embedder.final(x, normalize=True)
                pred.append(enc.predict(features_of(h, f, x if low else None)).half())
                targ.append(targets(images[i:i + CHUNK], x, h, f).float().half())
    info = {"n": int(n), "source": src, "encoding_features": f"v{ENCODING_VERSION}: CLIP + low-level, weights "
            f"{GROUP_WEIGHTS}" if low else f"v{ENCODING_VERSION}: CLIP only", "encoding_alpha": enc.alpha,
            "encoding_val_median_r": enc.val_r,
            "build_seconds": round(time.time() - t0, 1)}  # kept with the cache: the set's cost where it was made
    syn = SyntheticTrials(torch.cat(pred), torch.cat(targ), torch.from_numpy(residual_noise(betas, index)), info)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"betas": syn.betas, "targets": syn.targets, "residuals": syn.residuals, "info": info}, path,
                    torch.save)
    return syn
