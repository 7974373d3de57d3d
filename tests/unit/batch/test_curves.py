"""ROC/PR curves and confusion counts against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_curve
from sklearn.metrics import roc_curve as sk_roc_curve

from batch.metrics import confusion_counts, pr_curve, roc_auc, roc_curve


@pytest.fixture
def scored():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 800)
    s = np.round(rng.random(800) + 0.4 * y, 2)  # many ties
    return y, s


def test_roc_curve_matches_sklearn_and_integrates_to_auc(scored):
    y, s = scored
    ours = roc_curve(y, s, max_points=10**6)
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(ours["fpr"], fpr)
    np.testing.assert_allclose(ours["tpr"], tpr)
    assert np.trapezoid(ours["tpr"], ours["fpr"]) == pytest.approx(roc_auc(y, s), abs=1e-12)


def test_pr_curve_matches_sklearn(scored):
    y, s = scored
    ours = pr_curve(y, s, max_points=10**6)
    p, r, _ = precision_recall_curve(y, s)
    np.testing.assert_allclose(ours["precision"][::-1], p[:-1])
    np.testing.assert_allclose(ours["recall"][::-1], r[:-1])


def test_curves_are_thinned_but_keep_both_ends(scored):
    y, s = scored
    roc = roc_curve(y, s, max_points=20)
    assert len(roc["fpr"]) <= 20
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0


def test_confusion_counts_match_sklearn(scored):
    y, s = scored
    ours = confusion_counts(y, s, 0.7)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.7).ravel()
    assert ours == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
