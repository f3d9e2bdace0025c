"""Baselines scored with exactly MindEye's retrieval code: ridge regression from voxels to the CLIP target,
and (SimNSD only) the linear ceiling: ridge fitted to and tested on the simulator's noise-free responses.
"""
from __future__ import annotations

import numpy as np
import torch

from .data.errors import DataError
from .metrics import retrieval_report
from .models.ridge import fit_ridge


def _rows(ids: np.ndarray, of: np.ndarray) -> np.ndarray:
    pos = {int(i): k for k, i in enumerate(of)}
    missing = [int(i) for i in ids if int(i) not in pos]
    if missing:
        raise DataError(f"{len(missing)} image ids have no target (first {missing[0]})")
    return np.array([pos[int(i)] for i in ids])


def ridge_retrieval(subject, train_targets: torch.Tensor, test_targets: torch.Tensor, train_ids: np.ndarray,
                    train_trials: np.ndarray | None = None, log=None) -> tuple[dict, object]:
    """Fit ridge on repetition-averaged train betas (one row per image; on SimNSD subject 1 this scored
    higher than fitting every single trial, 14.0% vs 12.2% image top-1, and is 3x faster), with alpha chosen
    by cross-validation on the training images only; score 300-way retrieval on the averaged test betas.
    ``train_targets`` is ``[n_train_images, ...]`` aligned with ``train_ids``; ``train_trials`` (default: the
    train split) restricts the fit, e.g. to leave the val split out."""
    x, ids = subject.average_trials(subject.trials("train") if train_trials is None else train_trials)
    y = train_targets[_rows(ids, train_ids)].flatten(1).numpy()
    model = fit_ridge(x, y, log=log)
    test_b, _ = subject.averaged("test")
    rep = retrieval_report(model.predict(test_b), test_targets.flatten(1))
    return {**rep, "alpha": model.alpha}, model


def ridge_noise_free_ceiling(subject, train_targets: torch.Tensor, test_targets: torch.Tensor,
                             train_ids: np.ndarray, test_ids: np.ndarray) -> dict:
    """The linear ceiling on SimNSD: ridge from noise-free responses to the target, tested on noise-free
    responses of the test images. No linear read-out of these voxels can do better with any amount of data
    averaging; a nonlinear decoder (MindEye) can."""
    gt = subject.ground_truth(["noise_free", "noise_free_image_id"])
    if "noise_free" not in gt:
        raise DataError(f"{subject.path}: no stored noise-free responses (SimNSD 2.0 and later writes them); "
                        "the linear ceiling needs the simulator's ground truth")
    of = gt["noise_free_image_id"]
    x_train = np.asarray(gt["noise_free"][np.sort(_rows(train_ids, of))], np.float32)
    order = np.argsort(_rows(train_ids, of))  # rows were read in sorted order; put targets in the same order
    y = train_targets[order].flatten(1).numpy()
    model = fit_ridge(x_train, y)
    x_test = np.asarray(gt["noise_free"][_rows(test_ids, of)], np.float32)
    return {**retrieval_report(model.predict(x_test), test_targets.flatten(1)), "alpha": model.alpha}
