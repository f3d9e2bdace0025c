"""Image and retrieval metrics in the paper's definitions (REFERENCE.md, V1 Reconstruction_Metrics).

Images are float ``[N, 3, H, W]`` in [0, 1]. Low-level metrics compare at one resolution (``size``); the
paper uses 425 px, SimNSD's stimuli are 96 px, so the default is the originals' own size.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def pixcorr(recons: torch.Tensor, originals: torch.Tensor, size: int | None = None) -> float:
    """Mean over images of the Pearson r between flattened RGB pixels."""
    size = size or originals.shape[-1]
    a = _resize(recons, size).flatten(1).double()
    b = _resize(originals, size).flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return float(r.mean())


def ssim(recons: torch.Tensor, originals: torch.Tensor, size: int | None = None) -> float:
    """Mean grayscale SSIM (skimage, gaussian weights, sigma 1.5, population covariance), as the paper."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity
    size = size or originals.shape[-1]
    a = _resize(recons, size).permute(0, 2, 3, 1).numpy()
    b = _resize(originals, size).permute(0, 2, 3, 1).numpy()
    return float(np.mean([structural_similarity(rgb2gray(x), rgb2gray(y), gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=1.0) for x, y in zip(a, b)]))


def two_way_identification(recon_feats: torch.Tensor, orig_feats: torch.Tensor) -> float:
    """For each recon j: fraction of distractors i != j with corr(real_i, recon_j) < corr(real_j, recon_j)."""
    return float(two_way_per_item(recon_feats, orig_feats).mean())


def two_way_per_item(recon_feats: torch.Tensor, orig_feats: torch.Tensor) -> np.ndarray:
    """``two_way_identification`` of each recon j [N] (its mean is the table's number)."""
    a = recon_feats.flatten(1).double()
    b = orig_feats.flatten(1).double()
    a = (a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True)
    b = (b - b.mean(1, keepdim=True)) / b.std(1, keepdim=True)
    corr = (b @ a.T) / (a.shape[1] - 1)  # corr[i, j] = corr(real_i, recon_j)
    n = corr.shape[0]
    congruent = corr.diag()
    wins = (corr < congruent[None, :]).sum(0).double()
    return (wins / (n - 1)).numpy()


def top1_identification(recon_emb: torch.Tensor, orig_emb: torch.Tensor) -> float:
    """Fraction of recons whose most cosine-similar original (among all N) is their own."""
    a, b = F.normalize(recon_emb.float(), dim=-1), F.normalize(orig_emb.float(), dim=-1)
    return float(((a @ b.T).argmax(1) == torch.arange(len(a))).float().mean())


N_WAY, N_DRAWS = 300, 30  # the paper's retrieval protocol


def n_way_draws(scores: np.ndarray, n_way: int = N_WAY, n_draws: int = N_DRAWS, seed: int = 0) -> np.ndarray:
    """Top-1 accuracy of each of ``n_draws`` random subsets of ``n_way`` test samples (the paper's protocol).
    ``scores[j, i]``: sample j (query) vs candidate i; diagonal = truth. The subsets depend only on ``seed``
    and the number of samples, so every method is scored on the same ones."""
    scores = np.asarray(scores)
    n = len(scores)
    n_way = min(n_way, n)
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(n_draws):
        sub = rng.choice(n, n_way, replace=False)
        s = scores[np.ix_(sub, sub)]
        accs.append(np.mean(s.argmax(1) == np.arange(n_way)))
    return np.array(accs)


def n_way_scores(scores: np.ndarray, n_way: int = N_WAY, n_draws: int = N_DRAWS, seed: int = 0) -> float:
    """The paper's figure: the mean over ``n_draws`` of ``n_way_draws``."""
    return float(n_way_draws(scores, n_way, n_draws, seed).mean())


def _similarity(pred, target) -> np.ndarray:
    p = F.normalize(torch.as_tensor(pred).flatten(1).float(), dim=-1)
    t = F.normalize(torch.as_tensor(target).flatten(1).float(), dim=-1)
    return (p @ t.T).numpy()


def n_way_top1(pred: torch.Tensor, target: torch.Tensor, n: int = N_WAY, draws: int = N_DRAWS, seed: int = 0):
    """MindEye's retrieval on flattened, L2-normalised embeddings: ``(image_top1, brain_top1)``.

    Image retrieval: for each brain embedding, is its own image's CLIP embedding the most similar of ``n``?
    Brain retrieval: for each image, is its own brain embedding the most similar of ``n``?"""
    sim = _similarity(pred, target)
    return n_way_scores(sim, n, draws, seed), n_way_scores(sim.T, n, draws, seed)


def interval(draws: np.ndarray) -> dict:
    """Mean and the central 95% interval (2.5th-97.5th percentile) of per-draw accuracies."""
    return {"mean": float(np.mean(draws)), "ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]}


def retrieval_report(pred=None, target=None, scores: np.ndarray | None = None, n: int = N_WAY,
                     draws: int = N_DRAWS, seed: int = 0) -> dict:
    """``{"image": {"mean", "ci95"}, "brain": {...}}``: 300-way top-1 with its spread over the 30 draws, from
    embeddings (``pred``, ``target``) or from a ready score matrix (``scores[brain j, image i]``)."""
    sim = _similarity(pred, target) if scores is None else np.asarray(scores)
    return {"image": interval(n_way_draws(sim, n, draws, seed)), "brain": interval(n_way_draws(sim.T, n, draws, seed))}
