"""The paired bootstrap intervals printed by ``churn bench models``."""

from __future__ import annotations

import numpy as np

from churn_stream.bench_models import _f1, tuned_f1_intervals


def _data(n: int = 1400, seed: int = 3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.27).astype(int)
    # A decent classifier: right on 80 % of the rows.
    pred = np.where(rng.random(n) < 0.8, y, 1 - y)
    return y, pred


def test_identical_predictions_give_a_zero_difference_and_an_interval_around_the_point_f1():
    y, pred = _data()
    ci = tuned_f1_intervals(y, pred, pred.copy(), resamples=500)
    point = float(_f1(y.astype(float), pred.astype(float)))
    lo, hi = ci["f1_tuned_ci95"]
    assert lo < point < hi
    assert ci["reference_f1_tuned_ci95"] == ci["f1_tuned_ci95"]
    assert ci["f1_tuned_minus_reference_ci95"] == [0.0, 0.0]
    # ~1,400 rows, ~380 positives: the interval is a few hundredths wide each side.
    assert 0.02 < hi - lo < 0.12


def test_a_clearly_better_model_has_a_difference_interval_above_zero():
    y, pred = _data()
    rng = np.random.default_rng(7)
    worse = np.where(rng.random(y.shape[0]) < 0.3, 1 - pred, pred)  # 30 % of its answers flipped
    ci = tuned_f1_intervals(y, pred, worse, resamples=500)
    assert ci["f1_tuned_minus_reference_ci95"][0] > 0.0
