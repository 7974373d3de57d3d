"""Stratified splitting shared by the models and the batch protocol: pinned rows, shares, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from scratch_models.model_selection import stratified_folds, stratified_holdout, stratified_sample

#: 8 negatives, 4 positives; the pinned rows below are what the two former copies
#: (``batch.training``/``batch.features`` and ``scratch_models.linear``) returned for seed 7.
Y = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0])


def test_folds_pinned_to_the_former_batch_and_model_assignments():
    np.testing.assert_array_equal(stratified_folds(Y, 3, 7), [0, 1, 0, 0, 0, 1, 1, 0, 2, 1, 2, 2])
    np.testing.assert_array_equal(
        stratified_folds(Y, 3, np.random.default_rng(7), carry_over=True), [0, 0, 0, 0, 2, 1, 1, 2, 2, 1, 1, 2]
    )


def test_holdout_and_sample_pinned_to_the_former_rows():
    kept, held = stratified_holdout(Y, 0.25, 7)
    np.testing.assert_array_equal(kept, [1, 2, 3, 4, 5, 6, 8, 10, 11])
    np.testing.assert_array_equal(held, [0, 7, 9])
    np.testing.assert_array_equal(stratified_sample(Y, 6, 7), [1, 5, 6, 9, 10, 11])


def test_a_generator_and_its_seed_give_the_same_rows_and_the_generator_advances():
    rng = np.random.default_rng(3)
    a = stratified_folds(Y, 4, rng)
    np.testing.assert_array_equal(a, stratified_folds(Y, 4, 3))
    assert not np.array_equal(stratified_folds(Y, 4, rng), a)  # drew on


@pytest.mark.parametrize("carry_over", [False, True])
def test_every_fold_holds_each_class_within_one_row(carry_over):
    y = np.r_[np.zeros(103, dtype=int), np.ones(27, dtype=int)]
    fold = stratified_folds(y, 5, 1, carry_over=carry_over)
    for k in range(5):
        assert abs((fold[y == 1] == k).sum() - 27 / 5) < 1
        assert abs((fold[y == 0] == k).sum() - 103 / 5) < 1
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= (1 if carry_over else 2)


def test_holdout_keeps_each_class_in_both_parts():
    y = np.array([0] * 50 + [1] * 2 + [2])
    kept, held = stratified_holdout(y, 0.1, 0)
    assert np.sum(y[held] == 1) == 1 and np.sum(y[kept] == 1) == 1  # round(0.2) = 0 raised to 1
    assert np.sum(y[held] == 2) == 0  # a single row stays in the kept part
    np.testing.assert_array_equal(np.sort(np.r_[kept, held]), np.arange(y.shape[0]))
