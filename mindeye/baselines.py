"""Baselines scored with exactly MindEye's retrieval code: ridge regression from voxels to the CLIP target."""
from __future__ import annotations

import numpy as np
import torch

from .metrics import n_way_top1
from .models.ridge import fit_ridge


def ridge_retrieval(subject, train_targets: torch.Tensor, test_targets: torch.Tensor, train_ids: np.ndarray,
                    log=None) -> tuple[dict, object]:
    """Fit ridge on every train trial (targets of the trial's image), score 300-way retrieval on the
    repetition-averaged test betas. ``train_targets`` is ``[n_train_images, ...]`` aligned with ``train_ids``."""
    tr = subject.trials("train")
    row = {int(i): k for k, i in enumerate(train_ids)}
    img_rows = np.array([row[int(i)] for i in subject.image_id[tr]])
    x = subject.betas(tr)
    y = train_targets[img_rows].flatten(1).numpy()
    model = fit_ridge(x, y, groups=subject.image_id[tr], log=log)
    test_b, _ = subject.averaged("test")
    pred = model.predict(test_b)
    fwd, bwd = n_way_top1(pred, test_targets.flatten(1))
    return {"image_top1": fwd, "brain_top1": bwd, "alpha": model.alpha}, model
