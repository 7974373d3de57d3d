"""PSI and the reference profile shared by the data-quality gate and the worker's drift monitor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scratch_models.drift import (
    PSI_EPSILON,
    FeatureReference,
    features_from_profile,
    profile_from_features,
    psi,
    quantile_edges,
)


def test_psi_pinned_to_a_hand_computed_value():
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.4, 0.4, 0.2])
    # (0.4-0.5)ln(0.4/0.5) + (0.4-0.3)ln(0.4/0.3) + 0 = 0.1 ln(1.25) + 0.1 ln(4/3)
    assert psi(p, q) == pytest.approx(0.05108256237659907, abs=1e-15)
    assert psi(p * 7043, q * 2000) == pytest.approx(0.05108256237659907, abs=1e-15)  # counts are normalised


def test_psi_of_identical_distributions_is_zero_and_of_a_shift_large():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(p, p) == 0.0
    assert psi(p, np.array([0.4, 0.3, 0.2, 0.1])) > 0.25
    with pytest.raises(ValueError):
        psi(p, p[:3])


def test_an_empty_bin_is_floored_at_epsilon():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.5, 0.4, 0.1])
    eps = PSI_EPSILON
    hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - eps) * math.log(0.1 / eps)
    assert psi(p, q) == pytest.approx(hand, rel=1e-12)
    assert math.isfinite(psi(np.array([0.0, 1.0]), np.array([1.0, 0.0])))


def test_numeric_reference_uses_quantile_bins_by_hand():
    ref = np.arange(1.0, 101.0)  # 1..100: deciles at 10.9, 20.8, ... -> 10 bins of 10
    edges = quantile_edges(ref, 10)
    np.testing.assert_array_equal(edges, np.quantile(ref, np.linspace(0.1, 0.9, 9)))
    feature = FeatureReference.numeric_from_values("x", ref)
    np.testing.assert_array_equal(feature.edges, edges)
    np.testing.assert_allclose(feature.expected, 0.1)
    # Current: 30 values in the first decile, 10 in 7 of the other 9 bins (2 bins empty).
    cur = np.concatenate([np.linspace(1, 10, 30), np.arange(11.0, 81.0)])
    assert feature.counts(feature.codes(cur)).tolist() == [30] + [10] * 7 + [0, 0]
    eps = PSI_EPSILON
    hand = (0.3 - 0.1) * math.log(3) + 2 * (eps - 0.1) * math.log(eps / 0.1)
    assert feature.psi(cur) == pytest.approx(hand, rel=1e-12)


def test_values_outside_the_reference_fall_in_the_outer_bins_and_non_finite_are_not_counted():
    feature = FeatureReference.numeric_from_values("x", np.r_[np.arange(1.0, 101.0), np.nan, np.inf])
    eps = PSI_EPSILON
    # All mass in one outer bin: 0.9 of the reference mass moved to eps, 0.1 -> 1.0 in the outer bin.
    hand = (1.0 - 0.1) * math.log(1.0 / 0.1) + 9 * (eps - 0.1) * math.log(eps / 0.1)
    assert feature.psi(np.full(100, -1e6)) == pytest.approx(hand, rel=1e-12)
    assert feature.psi(np.r_[np.full(100, 1e6), np.nan, -np.inf]) == pytest.approx(hand, rel=1e-12)
    assert math.isnan(feature.psi(np.array([np.nan])))


def test_categories_by_hand_with_every_unseen_category_in_one_bin():
    feature = FeatureReference.categorical_from_values("c", np.array(["b"] * 40 + ["a"] * 60))
    assert feature.categories.tolist() == ["a", "b"] and feature.n_bins == 3
    eps = PSI_EPSILON
    cur = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 12 + ["d"] * 8)
    hand = (0.5 - 0.6) * math.log(0.5 / 0.6) + (0.3 - 0.4) * math.log(0.3 / 0.4) + (0.2 - eps) * math.log(0.2 / eps)
    assert feature.psi(cur) == pytest.approx(hand, rel=1e-12)
    assert feature.codes(np.array([1, "a"], dtype=object)).tolist() == [2, 0]  # compared as str


def test_profile_round_trips_through_json():
    features = [
        FeatureReference.numeric_from_values("tenure", np.arange(60.0)),
        FeatureReference.categorical("contract", ["Two year", "Month-to-month"], [0.25, 0.75]),
    ]
    profile = json.loads(json.dumps(profile_from_features(features, 60)))
    assert profile["n_rows"] == 60
    assert profile["categorical"]["contract"] == {
        "categories": ["Month-to-month", "Two year"],
        "proportions": [0.75, 0.25],
    }
    back = features_from_profile(profile)
    for a, b in zip(features, back):
        assert (a.name, a.numeric) == (b.name, b.numeric)
        np.testing.assert_array_equal(a.edges, b.edges)
        np.testing.assert_array_equal(a.expected, b.expected)
    with pytest.raises(ValueError, match="edges need"):
        features_from_profile({"numeric": {"x": {"edges": [1.0], "proportions": [1.0]}}})
