"""The zoo's training-row caps from settings (``CHURN_BATCH_*``)."""

from __future__ import annotations

import numpy as np
import pytest

from batch import zoo
from batch.evaluation_artifacts import SCATTER_MAX_POINTS, scatter_sample
from plumbing.settings import Settings


def test_default_caps_bound_sampled_wide_and_ensemble_models_only():
    caps = zoo.sample_caps(Settings())
    assert zoo.ENSEMBLES == {"random_forest", "random_forest_pca", "gradient_boosting", "gradient_boosting_regressor"}
    assert {name: caps[name] for name in zoo.ENSEMBLES} == dict.fromkeys(zoo.ENSEMBLES, 200_000)
    assert {name: caps[name] for name in zoo.SAMPLED} == dict.fromkeys(zoo.SAMPLED, 50_000)
    assert caps["polynomial_regression"] == 20_000
    for name in ("logistic_regression", "decision_tree", "naive_bayes", "linear_regression", "multiple_regression"):
        assert name not in caps  # fitted on every training row


def test_ensemble_cap_comes_from_the_environment_and_zero_lifts_it():
    settings = Settings.from_env({"CHURN_BATCH_ENSEMBLE_MAX_ROWS": "120000"})
    assert settings.batch_ensemble_max_rows == 120_000
    caps = zoo.sample_caps(settings)
    assert {caps[name] for name in zoo.ENSEMBLES} == {120_000}
    unbounded = zoo.sample_caps(Settings.from_env({"CHURN_BATCH_ENSEMBLE_MAX_ROWS": "0"}))
    assert not set(unbounded) & zoo.ENSEMBLES


def test_the_smaller_of_the_fit_and_ensemble_caps_wins():
    caps = zoo.sample_caps(Settings(batch_fit_max_rows=80_000, batch_ensemble_max_rows=200_000))
    assert {caps[name] for name in zoo.ENSEMBLES} == {80_000}
    assert caps["logistic_regression"] == 80_000
    caps = zoo.sample_caps(Settings(batch_fit_max_rows=300_000, batch_ensemble_max_rows=100_000))
    assert {caps[name] for name in zoo.ENSEMBLES} == {100_000}
    assert caps["logistic_regression"] == 300_000


def test_scatter_sample_is_bounded_seeded_and_keeps_pairs():
    y = np.arange(50_000, dtype=np.float64)
    pred = y * 2.0
    a, b = scatter_sample(y, pred)
    assert a.shape == (SCATTER_MAX_POINTS,) and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(b, a * 2.0)
    np.testing.assert_array_equal(a, scatter_sample(y, pred)[0])
    small = np.arange(10.0)
    assert scatter_sample(small, small)[0] is small


def test_blas_threads_caps_openblas_inside_the_block_only():
    from threadpoolctl import threadpool_info

    from batch.cycle import blas_threads

    def blas():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    before = blas()
    assert before  # numpy's OpenBLAS is loaded
    with blas_threads(1):
        assert blas() == {1}
    assert blas() == before
    with blas_threads(0):  # 0: left alone
        assert blas() == before
    assert Settings().batch_blas_threads == 1
    assert Settings.from_env({"CHURN_BATCH_BLAS_THREADS": "0"}).batch_blas_threads == 0
    with pytest.raises(ValueError, match="batch_blas_threads: expected >= 0"):
        blas_threads(-1)
