"""The ridge baseline against scikit-learn's Ridge, and its cross-validation picking a sensible alpha."""
from __future__ import annotations

import numpy as np
import torch

from mindeye.models.ridge import RidgeModel, fit_ridge


def test_ridge_matches_sklearn_at_the_chosen_alpha():
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 30))
    w = rng.standard_normal((30, 4))
    y = x @ w + 0.5 * rng.standard_normal((120, 4))
    m = fit_ridge(x, y, alphas=(0.1, 10.0, 1e4), folds=4)
    ref = Ridge(alpha=m.alpha).fit(x, y)
    assert np.allclose(m.predict(x).numpy(), ref.predict(x), atol=1e-4)
    assert m.alpha == 10.0 or m.alpha == 0.1  # the heavily over-regularised alpha loses in CV
    assert m.cv[1e4] > m.cv[m.alpha]


def test_ridge_keeps_target_shape_and_roundtrips():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 8)), rng.standard_normal((40, 3, 2))
    groups = np.repeat(np.arange(20), 2)  # repetitions of one image never straddle folds
    m = fit_ridge(x, y, alphas=(1.0,), groups=groups, folds=4)
    assert m.predict(x[:5]).shape == (5, 3, 2)
    again = RidgeModel.from_state_dict(m.state_dict())
    assert torch.allclose(again.predict(x[:5]), m.predict(x[:5]))
