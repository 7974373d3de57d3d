"""The paired bootstrap intervals printed by ``churn bench models``."""

from __future__ import annotations

import numpy as np
import pytest

from churn_stream.bench.models import _f1, tuned_f1_intervals


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


def test_nested_cv_repeats_the_protocol_on_outer_folds_of_the_training_part(tmp_path):
    import json

    from click.testing import CliRunner

    from churn_stream.cli import main

    out = CliRunner().invoke(
        main,
        ["bench", "models-cv", "--model", "logistic_regression", "--repeats", "1", "--json", str(tmp_path / "cv.json")],
        env={},
    )
    assert out.exit_code == 0, out.output
    row = json.loads((tmp_path / "cv.json").read_text())[0]
    assert row["model"] == "logistic_regression" and row["splits"] == 5
    assert len(row["f1_tuned"]) == len(row["reference_roc_auc"]) == 5
    # Scratch IRLS and scikit-learn's lbfgs fit the same L2 model: the same ranking on every outer fold.
    np.testing.assert_allclose(row["roc_auc"], row["reference_roc_auc"], atol=2e-3)
    assert 0.80 < row["mean_roc_auc"] < 0.88 and 0.55 < row["mean_f1_tuned"] < 0.70
    assert abs(row["f1_tuned_diff"]) < 0.01
    d = np.subtract(row["f1_tuned"], row["reference_f1_tuned"])
    assert row["f1_tuned_diff"] == np.mean(d)
    assert row["f1_tuned_diff_se"] == np.std(d, ddof=1) / np.sqrt(5)
    # Nadeau & Bengio: 1/J + n_test/n_train with J = 5 outer folds of the 5,634 training rows.
    assert row["f1_tuned_diff_se_corrected"] == pytest.approx(np.sqrt((1 / 5 + 1 / 4) * np.var(d, ddof=1)))
    assert "ours - reference" in out.output


def test_nested_cv_refuses_a_name_outside_the_zoo():
    from churn_stream.bench.model_selection import nested_cv

    with pytest.raises(ValueError, match="not zoo classifiers"):
        nested_cv(("logistic_regression", "lasso"))
