"""Voxel-wise encoding model: an image's CLIP features -> each voxel's (repetition-averaged) beta, linear.

The inverse direction of MindEye's decoding, as in the encoding-model literature (Kay et al. 2008; Naselaris et al.
2011): ``beta = ((features - mu) / sd) @ W + beta_mean``. It predicts the noise-free response to an image the
subject never saw; ``mindeye.training.synthetic`` fits it and uses it to make synthetic trials.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_FLAT_FEATURES = 16384  # hidden tokens flattened up to this size (SceneCLIP: 65 x 128); larger (ViT-L/14's
# 257 x 768) are summarised by their CLS token and the mean of the others
FINAL_WEIGHT = 8.0  # the final embedding's standardised features counted like ~64 token dimensions


@torch.no_grad()
def encoding_features(embedder, x: torch.Tensor) -> torch.Tensor:
    """``[B, F]`` features of model-input images ``x`` from the CLIP whose embeddings MindEye's targets are."""
    return features_of(embedder.hidden(x, normalize=True), embedder.final(x, normalize=True))


def features_of(hidden: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
    """The hidden tokens (flattened, or CLS + mean of the others) and the final embedding (times ``FINAL_WEIGHT``),
    both L2-normalised the way MindEye's targets are (``norm_embs``)."""
    h = hidden.float()
    h = h.flatten(1) if h.shape[1] * h.shape[2] <= MAX_FLAT_FEATURES else torch.cat([h[:, 0], h[:, 1:].mean(1)], 1)
    return torch.cat([h, FINAL_WEIGHT * final.float()], 1)


@dataclass
class EncodingModel:
    mu: torch.Tensor  # [F] feature means (train images)
    sd: torch.Tensor  # [F] feature SDs
    weight: torch.Tensor  # [F, V]
    beta_mean: torch.Tensor  # [V]
    alpha: float
    val_r: float  # median over voxels of the correlation between predicted and measured val betas

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` features -> ``[B, V]`` predicted betas."""
        return ((features.float() - self.mu) / self.sd) @ self.weight + self.beta_mean
