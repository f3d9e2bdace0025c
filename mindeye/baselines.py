"""Baselines scored with exactly MindEye's retrieval code: ridge regression from voxels to the CLIP target."""
from __future__ import annotations

import numpy as np
import torch

from .metrics import n_way_top1
from .models.ridge import fit_ridge


def ridge_retrieval(subject, train_targets: torch.Tensor, test_targets: torch.Tensor, train_ids: np.ndarray,
                    log=None) -> tuple[dict, object]:
    """Fit ridge on repetition-averaged train betas (one row per image; on SimNSD subject 1 this scored
    higher than fitting every single trial, 14.0% vs 12.2% image top-1, and is 3x faster), score 300-way
    retrieval on the averaged test betas. ``train_targets`` is ``[n_train_images, ...]`` aligned with
    ``train_ids``."""
    x, ids = subject.averaged("train")
    row = {int(i): k for k, i in enumerate(train_ids)}
    y = train_targets[np.array([row[int(i)] for i in ids])].flatten(1).numpy()
    model = fit_ridge(x, y, log=log)
    test_b, _ = subject.averaged("test")
    pred = model.predict(test_b)
    fwd, bwd = n_way_top1(pred, test_targets.flatten(1))
    return {"image_top1": fwd, "brain_top1": bwd, "alpha": model.alpha}, model
