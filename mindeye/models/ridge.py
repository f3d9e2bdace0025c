"""The ridge baseline: voxels -> CLIP target in closed form, alpha chosen by grouped cross-validation.

The classic method of Takagi & Nishimoto (2023) and Brain-Diffuser (Ozcelik & VanRullen, 2023). One SVD
of the (centred) training voxels serves every alpha: ``W = V diag(s / (s^2 + alpha)) U^T Y``. Folds are
grouped by image so the repetitions of one image never sit on both sides of a split.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(1, 6, 11))


@dataclass
class RidgeModel:
    weight: torch.Tensor  # [V, D]
    x_mean: torch.Tensor  # [V]
    y_mean: torch.Tensor  # [D]
    alpha: float
    target_shape: tuple = ()
    cv: dict = field(default_factory=dict)  # alpha -> mean held-out MSE

    def predict(self, voxels) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(voxels) if not isinstance(voxels, torch.Tensor) else voxels).float()
        y = (x - self.x_mean) @ self.weight + self.y_mean
        return y.view(len(x), *self.target_shape) if self.target_shape else y

    def state_dict(self) -> dict:
        return {"weight": self.weight, "x_mean": self.x_mean, "y_mean": self.y_mean,
                "alpha": torch.tensor(self.alpha), "target_shape": torch.tensor(self.target_shape or (-1,))}

    @classmethod
    def from_state_dict(cls, sd) -> "RidgeModel":
        shape = tuple(int(s) for s in sd["target_shape"].tolist())
        return cls(sd["weight"].float(), sd["x_mean"].float(), sd["y_mean"].float(), float(sd["alpha"]),
                   () if shape == (-1,) else shape)


def _svd_fit(x, y):
    u, s, vt = torch.linalg.svd(x, full_matrices=False)
    return u, s, vt, u.T @ y


def _cv_mse(xte, yte, s, vt, uty, alphas) -> dict:
    """Held-out MSE of every alpha without forming each alpha's predictions.

    With ``A = xte V`` and ``B = U^T Y`` the prediction is ``A diag(d) B``, ``d = s / (s^2 + alpha)``, so
    ``||Y - A D B||^2 = ||Y||^2 - 2 sum_k d_k g_k + d^T (M * N) d`` with ``g_k = (A^T Y)_k . B_k``,
    ``M = A^T A`` and ``N = B B^T``: three products shared by every alpha instead of one per alpha."""
    a = xte @ vt.T
    g = ((a.T @ yte) * uty).sum(1)
    mn = (a.T @ a) * (uty @ uty.T)
    y2 = float((yte ** 2).sum())
    out = {}
    for alpha in alphas:
        d = s / (s ** 2 + alpha)
        out[alpha] = (y2 - 2 * float(d @ g) + float(d @ mn @ d)) / yte.numel()
    return out


def fit_ridge(voxels, targets, alphas=DEFAULT_ALPHAS, groups=None, folds: int = 5, seed: int = 0,
              log=None, dtype=None) -> RidgeModel:
    """Fit ridge from ``voxels [N, V]`` to ``targets [N, ...]`` (flattened), alpha by k-fold CV on MSE.

    ``dtype``: float64 for small problems, float32 (twice as fast; the betas are z-scored, so well within
    its precision) when the data are large; the targets are centred in either case."""
    x_np, y_np = np.asarray(voxels), np.asarray(targets)
    if dtype is None:
        dtype = torch.float64 if x_np.size * max(1, y_np[0].size) < 5e8 else torch.float32
    x = torch.as_tensor(x_np, dtype=dtype)
    y_full = torch.as_tensor(y_np, dtype=dtype)
    target_shape = tuple(y_full.shape[1:]) if y_full.ndim > 2 else ()
    y = y_full.reshape(len(y_full), -1)
    n = len(x)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of_group = dict(zip(uniq, rng.permutation(len(uniq)) % folds))
    fold = np.array([fold_of_group[g] for g in groups])
    mse = {a: 0.0 for a in alphas}
    for k in range(folds):
        tr, te = torch.from_numpy(fold != k), torch.from_numpy(fold == k)
        xm, ym = x[tr].mean(0), y[tr].mean(0)
        u, s, vt, uty = _svd_fit(x[tr] - xm, y[tr] - ym)
        for a, v in _cv_mse(x[te] - xm, y[te] - ym, s, vt, uty, alphas).items():
            mse[a] += v / folds
        if log:
            log(f"ridge fold {k + 1}/{folds}")
    best = min(mse, key=mse.get)
    xm, ym = x.mean(0), y.mean(0)
    u, s, vt, uty = _svd_fit(x - xm, y - ym)
    w = vt.T @ ((s / (s ** 2 + best))[:, None] * uty)
    return RidgeModel(w.float(), xm.float(), ym.float(), float(best), target_shape, cv=mse)
