"""The three splits a training run uses: train (fit), val (model selection), test (report only).

NSD (and MindEye V1's webdataset) and SimNSD store a val split of training-set images. Where a dataset has
none, ``selection_split`` carves one from the training images, deterministically and never from the test
set, and says so. Val images are scored like test images: repetition-averaged betas, 300-way retrieval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_VAL_FALLBACK = 300


@dataclass
class SelectionSplit:
    train_trials: np.ndarray  # trial indices used for fitting
    val_betas: np.ndarray  # [n_val_images, V], repetition-averaged
    val_ids: np.ndarray  # [n_val_images]
    source: str  # where the val split came from, in words


def selection_split(subject, n_val: int = N_VAL_FALLBACK, seed: int = 0) -> SelectionSplit:
    """Train trials and the averaged val set of ``subject`` (a ``canonical.SubjectData``)."""
    train = subject.trials("train")
    val = subject.trials("val")
    if len(val):
        b, ids = subject.average_trials(val)
        return SelectionSplit(train, b, ids, f"the dataset's val split ({len(ids)} images)")
    ids = np.unique(subject.image_id[train])
    k = min(n_val, len(ids) // 5)
    val_ids = np.sort(np.random.default_rng(seed).choice(ids, k, replace=False))
    held = np.isin(subject.image_id[train], val_ids)
    b, got = subject.average_trials(train[held])
    return SelectionSplit(train[~held], b, got, f"{k} training images carved out (the dataset has no val split; "
                                                 f"seed {seed})")
