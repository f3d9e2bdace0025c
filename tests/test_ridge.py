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


def test_cross_validation_mse_matches_explicit_predictions():
    """The shared-product CV formula gives each alpha's held-out MSE exactly as forming its predictions does."""
    from mindeye.models.ridge import _cv_mse, _svd_fit
    rng = np.random.default_rng(2)
    x, y = torch.tensor(rng.standard_normal((50, 12))), torch.tensor(rng.standard_normal((50, 5)))
    xtr, ytr, xte, yte = x[:40], y[:40], x[40:], y[40:]
    u, s, vt, uty = _svd_fit(xtr, ytr)
    got = _cv_mse(xte, yte, s, vt, uty, (0.1, 3.0, 100.0))
    for a, v in got.items():
        pred = (xte @ vt.T) @ ((s / (s ** 2 + a))[:, None] * uty)
        assert np.isclose(v, float(((pred - yte) ** 2).mean()), rtol=1e-9)


def test_float32_fit_agrees_with_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 40))
    y = x @ rng.standard_normal((40, 6)) + rng.standard_normal((200, 6))
    a = fit_ridge(x, y, alphas=(1.0, 30.0), dtype=torch.float64)
    b = fit_ridge(x, y, alphas=(1.0, 30.0), dtype=torch.float32)
    assert a.alpha == b.alpha and torch.allclose(a.weight, b.weight, atol=1e-4)
