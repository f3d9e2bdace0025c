"""MindEye's losses against values worked out by hand on 2 x 2 cases."""
from __future__ import annotations

import math

import pytest
import torch

from mindeye.losses import cosine_anneal, mixco, mixco_nce, soft_clip_loss

E = math.e
I2 = torch.eye(2)
LOG_P_OWN = -math.log(1 + 1 / E)  # log softmax([1, 0])[0] = -0.31326
LOG_P_OTHER = LOG_P_OWN - 1  # log softmax([1, 0])[1] = -1.31326


def test_nce_without_mixup_is_cross_entropy_both_ways():
    assert mixco_nce(I2, I2, temp=1.0).item() == pytest.approx(-LOG_P_OWN, abs=1e-6)  # 0.31326
    # temperature sharpens: logits [1/.5, 0] -> -log(e^2 / (e^2 + 1))
    assert mixco_nce(I2, I2, temp=0.5).item() == pytest.approx(math.log(1 + E ** -2), abs=1e-6)


def test_bimixco_soft_targets():
    perm, betas = torch.tensor([1, 0]), torch.tensor([0.75, 1.0])
    # brain->image rows: [.75, .25] and [0, 1]; image->brain rows (transpose): [.75, 0] and [.25, 1]
    row0 = -(0.75 * LOG_P_OWN + 0.25 * LOG_P_OTHER)
    row1 = -LOG_P_OWN
    fwd = (row0 + row1) / 2
    bwd = (-(0.75 * LOG_P_OWN) + -(0.25 * LOG_P_OTHER + LOG_P_OWN)) / 2
    assert mixco_nce(I2, I2, temp=1.0, perm=perm, betas=betas, bidirectional=False).item() == pytest.approx(fwd, abs=1e-6)
    assert mixco_nce(I2, I2, temp=1.0, perm=perm, betas=betas).item() == pytest.approx((fwd + bwd) / 2, abs=1e-6)


def test_soft_clip_targets_are_the_images_own_similarities():
    s = E / (1 + E)  # softmax([1, 0])[0]
    expected = -(s * LOG_P_OWN + (1 - s) * LOG_P_OTHER)  # 0.58220, same both ways
    assert soft_clip_loss(I2, I2, temp=1.0).item() == pytest.approx(expected, abs=1e-6)
    # a perfect brain embedding of very different images -> ~0 loss at a low temperature
    assert soft_clip_loss(I2, I2, temp=0.01).item() < 1e-6


def test_mixco_mixes_only_selected_rows_with_their_partner():
    g = torch.Generator().manual_seed(0)
    v = torch.arange(12.0).view(4, 3)
    mixed, perm, betas, select = mixco(v.clone(), s_thresh=0.5, generator=g)
    for i in range(4):
        expect = betas[i] * v[i] + (1 - betas[i]) * v[perm[i]]
        assert torch.allclose(mixed[i], expect)
        if not select[i]:
            assert betas[i] == 1 and torch.equal(mixed[i], v[i])


def test_cosine_anneal_endpoints_and_midpoint():
    t = cosine_anneal(0.004, 0.0075, 5)
    assert t[0] == pytest.approx(0.004) and t[-1] == pytest.approx(0.0075)
    assert t[2] == pytest.approx((0.004 + 0.0075) / 2)
    assert all(a < b for a, b in zip(t, t[1:]))
