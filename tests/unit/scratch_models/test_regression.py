"""Closed-form regressors against scikit-learn on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from scratch_models.regression import LinearRegression, MultipleRegression, PolynomialRegression

sk_pre = pytest.importorskip("sklearn.preprocessing")
sk_linear = pytest.importorskip("sklearn.linear_model")


@pytest.fixture()
def xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = 3 * X[:, 1] - X[:, 0] * X[:, 2] + 0.5 * X[:, 3] ** 3 + rng.normal(scale=0.1, size=150)
    return X, y


@pytest.mark.parametrize("degree", [2, 3])
def test_polynomial_matches_polynomial_features_plus_ridge(xy, degree):
    X, y = xy
    ours = PolynomialRegression(degree=degree, alpha=0.5).fit(X, y)
    Phi = sk_pre.PolynomialFeatures(degree, include_bias=False)
    ref = sk_linear.Ridge(alpha=0.5).fit(Phi.fit_transform(X), y)
    np.testing.assert_allclose(ours.predict(X), ref.predict(Phi.transform(X)), rtol=1e-7, atol=1e-7)


def test_polynomial_predict_follows_a_refit_and_a_load(xy, tmp_path):
    # predict keeps its degree-2 weights between calls; a refit or a load must not reuse old ones.
    X, y = xy
    model = PolynomialRegression(degree=2, alpha=0.5).fit(X, y)
    first = model.predict(X)
    np.testing.assert_allclose(model.predict(X[:1]), first[:1], rtol=1e-12)  # one row, as the API sends
    refit = model.fit(X, -y).predict(X)
    np.testing.assert_allclose(refit, PolynomialRegression(degree=2, alpha=0.5).fit(X, -y).predict(X), rtol=1e-12)
    assert not np.allclose(refit, first)
    loaded = PolynomialRegression.load(PolynomialRegression(degree=2, alpha=0.5).fit(X, y).save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(X), first, rtol=1e-12)
    assert "_quadratic" not in loaded._get_state()[0]


def test_multiple_regression_matches_ridge_and_ols(xy):
    X, y = xy
    np.testing.assert_allclose(
        MultipleRegression(alpha=2.0).fit(X, y).predict(X), sk_linear.Ridge(alpha=2.0).fit(X, y).predict(X), rtol=1e-9
    )
    np.testing.assert_allclose(
        MultipleRegression().fit(X, y).predict(X), sk_linear.LinearRegression().fit(X, y).predict(X), rtol=1e-9
    )


def test_linear_regression_feature_choice(xy):
    X, y = xy
    auto = LinearRegression().fit(X, y)
    assert auto.feature_index_ == 1
    assert np.count_nonzero(auto.coef_) == 1
    assert LinearRegression(feature=3).fit(X, y).feature_index_ == 3
    with pytest.raises(ValueError):
        LinearRegression(feature=9).fit(X, y)
