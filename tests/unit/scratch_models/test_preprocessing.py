"""TabularPreprocessor: median imputation, scaling, one-hot with sorted categories and unknowns."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scratch_models import NotFittedError, TabularPreprocessor


def columns() -> dict[str, np.ndarray]:
    return {
        "tenure": np.array([1.0, np.nan, 10.0, 4.0, np.nan, 30.0]),
        "charges": np.array([20.0, 50.0, 80.0, 35.0, 60.0, 99.0]),
        "contract": np.array(["Two year", "Month", "One year", "Month", "Two year", "Month"]),
        "gender": np.array(["M", "F", "F", "M", "F", "F"]),
    }


def make(scale: bool = True) -> TabularPreprocessor:
    return TabularPreprocessor(["tenure", "charges"], ["contract", "gender"], scale=scale)


def test_init_stores_parameters_and_computes_nothing():
    pre = make()
    assert pre.numeric_features == ["tenure", "charges"]
    assert pre.categorical_features == ["contract", "gender"]
    assert pre.scale is True
    assert not hasattr(pre, "median_")
    assert pre.feature_names_in_ == ["tenure", "charges", "contract", "gender"]


def test_fit_returns_self_and_learns_medians_means_scales():
    cols = columns()
    pre = make()
    assert pre.fit(cols) is pre
    np.testing.assert_array_equal(pre.median_, [7.0, 55.0])
    filled = np.array([1.0, 7.0, 10.0, 4.0, 7.0, 30.0])
    np.testing.assert_allclose(pre.mean_, [filled.mean(), cols["charges"].mean()], rtol=1e-15)
    np.testing.assert_allclose(pre.scale_, [filled.std(), cols["charges"].std()], rtol=1e-15)


def test_nan_is_imputed_with_training_median_then_scaled():
    pre = make().fit(columns())
    X = pre.transform(columns())
    expected = (np.array([1.0, 7.0, 10.0, 4.0, 7.0, 30.0]) - pre.mean_[0]) / pre.scale_[0]
    np.testing.assert_allclose(X[:, 0], expected, rtol=1e-15)
    # A NaN at scoring time takes the *training* median too.
    new = columns()
    new["tenure"] = np.full(6, np.nan)
    assert np.all(pre.transform(new)[:, 0] == (7.0 - pre.mean_[0]) / pre.scale_[0])
    assert not np.isnan(pre.transform(new)).any()


def test_scaled_columns_have_zero_mean_unit_std_on_training_data():
    pre = make().fit(columns())
    X = pre.transform(columns())
    np.testing.assert_allclose(X[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X[:, :2].std(axis=0), 1.0, atol=1e-12)


def test_scale_false_leaves_numbers_unscaled_but_imputed():
    pre = make(scale=False).fit(columns())
    X = pre.transform(columns())
    np.testing.assert_array_equal(X[:, 0], [1.0, 7.0, 10.0, 4.0, 7.0, 30.0])
    np.testing.assert_array_equal(X[:, 1], columns()["charges"])


def test_constant_column_is_only_centred():
    cols = columns()
    cols["charges"] = np.full(6, 5.0)
    pre = make().fit(cols)
    assert pre.scale_[1] == 1.0
    np.testing.assert_array_equal(pre.transform(cols)[:, 1], 0.0)


def test_one_hot_order_is_sorted_categories():
    pre = make().fit(columns())
    assert [c.tolist() for c in pre.categories_] == [["Month", "One year", "Two year"], ["F", "M"]]
    assert pre.feature_names_out_ == [
        "tenure",
        "charges",
        "contract=Month",
        "contract=One year",
        "contract=Two year",
        "gender=F",
        "gender=M",
    ]
    X = pre.transform(columns())
    assert X.shape == (6, 7) and X.dtype == np.float64
    np.testing.assert_array_equal(
        X[:, 2:],
        [
            [0, 0, 1, 0, 1],
            [1, 0, 0, 1, 0],
            [0, 1, 0, 1, 0],
            [1, 0, 0, 0, 1],
            [0, 0, 1, 1, 0],
            [1, 0, 0, 1, 0],
        ],
    )
    assert pre.last_unknown_counts_ == {"contract": 0, "gender": 0}


def test_unseen_category_encodes_as_all_zeros_and_is_counted():
    pre = make().fit(columns())
    new = columns()
    # Below, between and above the sorted categories, so every searchsorted branch is hit.
    new["contract"] = np.array(["Aaa", "Month", "Ten year", "Zzz", "One year", "Monthly"])
    new["gender"] = np.array(["F", "X", "M", "F", "F", "M"])
    X = pre.transform(new)
    contract = X[:, 2:5]
    np.testing.assert_array_equal(contract.sum(axis=1), [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(contract[1], [1, 0, 0])
    np.testing.assert_array_equal(contract[4], [0, 1, 0])
    np.testing.assert_array_equal(X[1, 5:], [0, 0])
    assert pre.last_unknown_counts_ == {"contract": 4, "gender": 1}
    # Numeric part is unaffected by the unknown categories.
    np.testing.assert_array_equal(X[:, :2], pre.transform(columns())[:, :2])


def test_known_codes_encode_as_the_text_does_unseen_ones_too():
    pre = make().fit(columns())
    new = dict(columns(), contract=np.array(["Aaa", "Month", "Ten year", "Zzz", "One year", "Two year"]))
    X = pre.transform(new)
    counts = pre.last_unknown_counts_
    codes = {"contract": np.array([-1, 0, -1, -1, 1, 2])}
    # The coded column's text is not read: only its codes.
    without_text = {k: v for k, v in new.items() if k != "contract"}
    np.testing.assert_array_equal(pre.transform(without_text, codes=codes), X)
    assert pre.last_unknown_counts_ == counts == {"contract": 3, "gender": 0}
    both = {"contract": codes["contract"], "gender": np.array([1, 0, 0, 1, 0, 0])}
    np.testing.assert_array_equal(pre.transform(new, codes=both), X)
    assert pre.transform({k: v[:0] for k, v in new.items()}, codes={"contract": codes["contract"][:0]}).shape == (0, 7)
    for bad in (np.array([0, 0, 0, 0, 0, 3]), np.array([0, 0, 0, 0, 0, -2]), np.array([0, 1])):
        with pytest.raises(ValueError, match="codes of 'contract': expected 6 indices in -1 .. 2"):
            pre.transform(new, codes={"contract": bad})


def test_blocks_shared_with_another_preprocessor_are_copied_alike():
    base = columns()
    clf = make().fit(base)
    other = dict(base, gender=np.array(["F", "M", "F", "F", "X", "M"]))  # gender categories differ
    value = TabularPreprocessor(["tenure"], ["gender", "contract"]).fit(other)
    new = dict(base, contract=np.array(["Aaa", "Month", "Ten year", "Two year", "One year", "Monthly"]))
    X = clf.transform(new)
    alone = value.transform(new)
    counts = value.last_unknown_counts_
    # The shared contract block comes from X (its column may be absent); gender is encoded here.
    rows = {k: v for k, v in new.items() if k != "contract"}
    np.testing.assert_array_equal(value.transform(rows, shared=(clf, X)), alone)
    assert value.last_unknown_counts_ == counts == {"gender": 0, "contract": 3}
    assert value._shared_blocks(clf) == {"contract": 2}
    only_categories = TabularPreprocessor([], ["contract"]).fit(base)
    np.testing.assert_array_equal(only_categories.transform({}, shared=(clf, X)), only_categories.transform(new))


def test_matches_sklearn_reference():
    cols = columns()
    pre = make().fit(cols)
    ref = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [0, 1]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [2, 3]),
        ]
    )
    table = np.column_stack([cols["tenure"], cols["charges"], cols["contract"], cols["gender"]]).astype(object)
    table[:, :2] = table[:, :2].astype(float)
    expected = ref.fit_transform(table)
    np.testing.assert_allclose(pre.transform(cols), expected.astype(float), atol=1e-12)
    new = columns()
    new["contract"] = np.array(["Ten year"] * 6)
    new_table = table.copy()
    new_table[:, 2] = "Ten year"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the unknown category
        np.testing.assert_allclose(pre.transform(new), ref.transform(new_table).astype(float), atol=1e-12)


def test_input_is_not_mutated():
    cols = columns()
    before = {k: v.copy() for k, v in cols.items()}
    make().fit_transform(cols)
    for k in cols:
        np.testing.assert_array_equal(cols[k], before[k])


def test_fit_transform_equals_fit_then_transform():
    np.testing.assert_array_equal(make().fit_transform(columns()), make().fit(columns()).transform(columns()))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinity_is_rejected_in_fit_and_transform(value):
    bad = columns()
    bad["charges"] = bad["charges"].copy()
    bad["charges"][2] = value
    with pytest.raises(ValueError, match="infinity"):
        make().fit(bad)
    pre = make().fit(columns())
    with pytest.raises(ValueError, match="infinity"):
        pre.transform(bad)


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_all_nan_numeric_column_cannot_be_fitted():
    bad = columns()
    bad["tenure"] = np.full(6, np.nan)
    with pytest.raises(ValueError, match=r"\['tenure'\] have no values"):
        make().fit(bad)


@pytest.mark.parametrize("missing", ["tenure", "contract"])
def test_missing_column_raises_naming_it(missing):
    cols = columns()
    del cols[missing]
    with pytest.raises(ValueError, match=f"missing (numeric|categorical) column '{missing}'"):
        make().fit(cols)
    pre = make().fit(columns())
    with pytest.raises(ValueError, match=f"missing (numeric|categorical) column '{missing}'"):
        pre.transform(cols)


def test_not_fitted_raises():
    pre = make()
    with pytest.raises(NotFittedError, match="not fitted"):
        pre.transform(columns())
    with pytest.raises(NotFittedError):
        pre.get_state()


def test_state_round_trip():
    pre = make().fit(columns())
    meta, arrays = pre.get_state()
    back = TabularPreprocessor.from_state(meta, arrays)
    assert back.feature_names_out_ == pre.feature_names_out_
    assert back.feature_names_in_ == pre.feature_names_in_
    new = columns()
    new["contract"][0] = "Unseen"
    np.testing.assert_array_equal(back.transform(new), pre.transform(new))
    assert back.last_unknown_counts_ == pre.last_unknown_counts_ == {"contract": 1, "gender": 0}


def test_only_numeric_or_only_categorical():
    cols = columns()
    num = TabularPreprocessor(["charges"], []).fit(cols)
    assert num.transform(cols).shape == (6, 1)
    cat = TabularPreprocessor([], ["gender"]).fit(cols)
    X = cat.transform(cols)
    assert X.shape == (6, 2)
    np.testing.assert_array_equal(X.sum(axis=1), 1.0)
