"""Voxel-wise encoding model: an image's features -> each voxel's (repetition-averaged) beta, linear.

The inverse direction of MindEye's decoding, as in the encoding-model literature (Kay et al. 2008; Naselaris et al.
2011): ``beta = ((features - mu) / sd) @ W + beta_mean``. Two feature spaces, as encoding models of visual cortex
use: the CLIP whose embeddings MindEye's targets are (hidden tokens + final embedding: what higher areas name),
and low-level image statistics on a coarse grid (luminance, local contrast energy, red-green and blue-yellow
opponency: what population receptive fields in V1-V3 pool). Each group is standardised and then weighted
(``GROUP_WEIGHTS``), so the ridge penalty treats the 576 low-level features and the 8448 CLIP features as groups of
comparable pull. It predicts the noise-free response to an image the subject never saw;
``mindeye.training.synthetic`` fits it and uses it to make synthetic trials.

Caveat on SimNSD: its simulated V1-V3 are built from feature maps of the same kind (``data/encoding.py``), so the
low-level group fits SimNSD's early areas better than it would fit real cortex.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_FLAT_FEATURES = 16384  # hidden tokens flattened up to this size (SceneCLIP: 65 x 128); larger (ViT-L/14's
# 257 x 768) are summarised by their CLS token and the mean of the others
LOW_LEVEL_GRID = 12  # low-level maps pooled to 12 x 12 (4 x 144 = 576 features)
CONTRAST_WINDOW = 5  # pixels: local mean and contrast energy windows (at the model input's size)
# weights after standardisation, chosen on SimNSD subject 1's val split by median voxel r (0.339 with the CLIP
# group alone; 0.428 with the low-level group at 4; the final embedding weighted 8 gave 0.427)
GROUP_WEIGHTS = {"clip": 1.0, "low_level": 4.0}
ENCODING_VERSION = 2  # 1: CLIP features only; 2: + the low-level group. Part of the synthetic trials' cache key


def low_level_features(x: torch.Tensor, grid: int = LOW_LEVEL_GRID) -> torch.Tensor:
    """Model-input images ``x [B, 3, h, w]`` in [0, 1] -> ``[B, 4 * grid * grid]``: luminance, local contrast
    energy (SD of luminance in a small window), red-green and blue-yellow opponency, each averaged on a grid."""
    lum = x.mean(1, keepdim=True)
    pool = dict(kernel_size=CONTRAST_WINDOW, stride=1, padding=CONTRAST_WINDOW // 2, count_include_pad=False)
    contrast = F.avg_pool2d((lum - F.avg_pool2d(lum, **pool)) ** 2, **pool).sqrt()
    red_green = x[:, :1] - x[:, 1:2]
    blue_yellow = x[:, 2:3] - (x[:, :1] + x[:, 1:2]) / 2
    maps = torch.cat([lum, contrast, red_green, blue_yellow], 1)
    return F.adaptive_avg_pool2d(maps, grid).flatten(1)


@torch.no_grad()
def encoding_features(embedder, x: torch.Tensor, low_level: bool = True) -> torch.Tensor:
    """``[B, F]`` features of model-input images ``x``: the CLIP group, then (``low_level``) the low-level group."""
    return features_of(embedder.hidden(x, normalize=True), embedder.final(x, normalize=True), x if low_level else None)


def features_of(hidden: torch.Tensor, final: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """The hidden tokens (flattened, or CLS + mean of the others) and the final embedding, L2-normalised the way
    MindEye's targets are (``norm_embs``), then the low-level features of the images ``x`` they came from (none
    when ``x`` is None)."""
    h = hidden.float()
    h = h.flatten(1) if h.shape[1] * h.shape[2] <= MAX_FLAT_FEATURES else torch.cat([h[:, 0], h[:, 1:].mean(1)], 1)
    return torch.cat([h, final.float(), *([low_level_features(x.float())] if x is not None else [])], 1)


def group_weights(n_features: int, low_level: bool = True) -> torch.Tensor:
    """``[F]`` weights for ``features_of``'s output: ``GROUP_WEIGHTS`` by group (with ``low_level``, the last
    4 x grid^2 features are the low-level group)."""
    w = torch.full((n_features,), GROUP_WEIGHTS["clip"])
    if low_level:
        w[n_features - 4 * LOW_LEVEL_GRID ** 2:] = GROUP_WEIGHTS["low_level"]
    return w


@dataclass
class EncodingModel:
    mu: torch.Tensor  # [F] feature means (train images)
    sd: torch.Tensor  # [F] feature SDs divided by their group's weight (so a weight survives standardising)
    weight: torch.Tensor  # [F, V]
    beta_mean: torch.Tensor  # [V]
    alpha: float
    val_r: float  # median over voxels of the correlation between predicted and measured val betas

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` features -> ``[B, V]`` predicted betas."""
        return ((features.float() - self.mu) / self.sd) @ self.weight + self.beta_mean
