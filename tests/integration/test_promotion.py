"""Promotion on real servers: a candidate is compared with the champion re-scored on the candidate's own
hold-out, not with the metric the champion's cycle registered on other data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_champion_is_rescored_on_the_candidates_holdout_and_falls_back_to_its_tag(stack_settings, tmp_path, telco_csv):
    from batch.cycle import run_cycle
    from batch.promotion import CLASSIFIER_NAME, REGRESSOR_NAME
    from plumbing.clients import make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    weak = run_cycle(
        stack_settings, storage, tracker, only={"naive_bayes", "linear_regression"}, margin=-1.0, announce=False
    )
    weak_cls, weak_reg = weak.promoted[CLASSIFIER_NAME], weak.promoted[REGRESSOR_NAME]
    assert weak_cls["alias"] == weak_reg["alias"] == "champion"
    # The champions' registered metrics as a cycle on easier data would have left them.
    tracker.set_model_version_tag(CLASSIFIER_NAME, weak_cls["model_version"], "roc_auc", "0.99")
    tracker.set_model_version_tag(REGRESSOR_NAME, weak_reg["model_version"], "r2", "0.99999")

    # The hold for a champion that drops on new data is off here: the tags above fake exactly such a drop.
    strong = run_cycle(
        stack_settings.with_overrides(promotion_max_champion_drop=1.0),
        storage,
        tracker,
        only={"logistic_regression", "multiple_regression"},
        margin=0.0,
        announce=False,
    )
    cls, reg = strong.promoted[CLASSIFIER_NAME], strong.promoted[REGRESSOR_NAME]
    # Against the tags (0.99) neither would have won; on the same hold-out both beat the weak models.
    assert cls["metrics"]["roc_auc"] < 0.99 and reg["metrics"]["r2"] < 0.99999
    assert cls["alias"] == reg["alias"] == "champion"
    assert cls["champion_version"] == weak_cls["model_version"]
    assert cls["champion_metric_source"] == reg["champion_metric_source"] == "this hold-out"
    # Same source, same split: the re-scored champion reproduces its own cycle's hold-out metric.
    assert cls["champion_roc_auc"] == pytest.approx(weak_cls["metrics"]["roc_auc"], abs=1e-9)
    assert reg["champion_r2"] == pytest.approx(weak_reg["metrics"]["r2"], abs=1e-9)
    assert cls["metrics"]["roc_auc"] > cls["champion_roc_auc"]

    # A champion whose artifact cannot be verified is compared by its registered tag, and says so.
    real_sha = cls["sha256"]
    tracker.set_model_version_tag(CLASSIFIER_NAME, cls["model_version"], "sha256", "0" * 64)
    try:
        again = run_cycle(
            stack_settings, storage, tracker, only={"naive_bayes", "linear_regression"}, margin=0.0, announce=False
        )
    finally:
        tracker.set_model_version_tag(CLASSIFIER_NAME, cls["model_version"], "sha256", real_sha)
    fallback = again.promoted[CLASSIFIER_NAME]
    assert fallback["champion_metric_source"] == "registered tag"
    assert fallback["champion_roc_auc"] == pytest.approx(cls["metrics"]["roc_auc"], abs=1e-12)
    assert fallback["alias"] == "challenger"
    assert tracker.get_model_version_by_alias(CLASSIFIER_NAME, "champion").version == cls["model_version"]

    # Rule-based label corruption: every customer paying by mailed check on a term contract "churned".
    import pandas as pd

    raw = pd.read_csv(telco_csv, dtype=str, keep_default_na=False)
    rule = (raw["PaymentMethod"] == "Mailed check") & (raw["Contract"] != "Month-to-month")
    raw.loc[rule, "Churn"] = "Yes"
    flipped = tmp_path / "telco_flipped.csv"
    raw.to_csv(flipped, index=False)
    corrupt = run_cycle(
        stack_settings,
        storage,
        tracker,
        only={"logistic_regression", "linear_regression"},
        source=flipped,
        margin=0.0,
        announce=False,
    )
    on_flipped = corrupt.promoted[CLASSIFIER_NAME]
    assert on_flipped["champion_metric_source"] == "this hold-out"
    # The same champion, other labels: a drop against its own registered metric (measured 0.842 -> 0.650).
    assert on_flipped["champion_registered_roc_auc"] == pytest.approx(cls["metrics"]["roc_auc"], abs=1e-12)
    assert on_flipped["champion_roc_auc"] < on_flipped["champion_registered_roc_auc"] - 0.05
    # The candidate beats the champion on the corrupt hold-out (0.81), but is held back for review.
    assert on_flipped["metrics"]["roc_auc"] > on_flipped["champion_roc_auc"]
    assert on_flipped["alias"] == "challenger" and "not promoted automatically" in on_flipped["promotion_held"]
    assert tracker.get_model_version_by_alias(CLASSIFIER_NAME, "champion").version == cls["model_version"]
    # With the hold switched off the same data promotes (the old behaviour, e.g. for real concept drift).
    loose = run_cycle(
        stack_settings.with_overrides(promotion_max_champion_drop=1.0),
        storage,
        tracker,
        only={"logistic_regression", "linear_regression"},
        source=flipped,
        margin=0.0,
        announce=False,
    )
    assert loose.promoted[CLASSIFIER_NAME]["alias"] == "champion"
    assert "promotion_held" not in loose.promoted[CLASSIFIER_NAME]

    # Leave the session's registry as other tests expect it: champions trained on the real labels. Those
    # fall far on the real data from the flipped model's registered metric, so the hold is off here too.
    restored = run_cycle(
        stack_settings.with_overrides(promotion_max_champion_drop=1.0),
        storage,
        tracker,
        only={"logistic_regression", "multiple_regression"},
        margin=-1.0,
        announce=False,
    )
    assert restored.promoted[CLASSIFIER_NAME]["alias"] == "champion"


def test_a_tie_with_the_champion_is_not_a_promotion(stack_settings, caplog):
    """The same models retrained on the same input score exactly what the champion scores on this hold-out."""
    import logging

    from batch.cycle import run_cycle
    from batch.promotion import CLASSIFIER_NAME, REGRESSOR_NAME
    from plumbing.clients import make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    only = {"logistic_regression", "multiple_regression"}
    first = run_cycle(stack_settings, storage, tracker, only=only, margin=-1.0, announce=False)
    with caplog.at_level(logging.INFO, logger="batch.promotion"):
        again = run_cycle(stack_settings, storage, tracker, only=only, margin=0.0, announce=False)
    for name in (CLASSIFIER_NAME, REGRESSOR_NAME):
        held = again.promoted[name]
        assert held["alias"] == "challenger" and held["promotion_rules"] == ["tie"], held
        assert held["promotion_held"].startswith("tie: ")
        assert tracker.get_model_version_by_alias(name, "champion").version == first.promoted[name]["model_version"]
    promoted_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("promoted ")]
    assert promoted_lines == []
    assert "not promoted model=churn-classifier" in caplog.text and "rules=tie" in caplog.text


def test_a_candidate_below_the_recall_floor_is_held_and_the_summary_says_so(stack_settings):
    from batch.cycle import run_cycle
    from batch.promotion import CLASSIFIER_NAME
    from plumbing.clients import make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    cycle = {"margin": 0.0, "announce": False}
    weak = run_cycle(
        stack_settings, storage, tracker, only={"naive_bayes", "linear_regression"}, **(cycle | {"margin": -1.0})
    )
    champion = weak.promoted[CLASSIFIER_NAME]
    # Default floor 0.9 x the champion's recall on this hold-out: the better model passes it.
    strong = run_cycle(stack_settings, storage, tracker, only={"logistic_regression", "multiple_regression"}, **cycle)
    cls = strong.promoted[CLASSIFIER_NAME]
    assert cls["champion_recall"] == pytest.approx(champion["metrics"]["recall"], abs=1e-9)
    assert cls["recall_floor"] == pytest.approx(0.9 * cls["champion_recall"], abs=1e-12)
    assert cls["metrics"]["recall"] >= cls["recall_floor"] and cls["alias"] == "champion"

    # A floor above the candidate's recall holds back a model that beats the champion's ROC-AUC.
    weak = run_cycle(
        stack_settings, storage, tracker, only={"naive_bayes", "linear_regression"}, **(cycle | {"margin": -1.0})
    )
    strict = stack_settings.with_overrides(promotion_min_recall_ratio=1.5)
    held = run_cycle(strict, storage, tracker, only={"logistic_regression", "multiple_regression"}, **cycle)
    cls = held.promoted[CLASSIFIER_NAME]
    assert cls["metrics"]["roc_auc"] > cls["champion_roc_auc"]
    assert cls["alias"] == "challenger" and cls["promotion_rules"] == ["recall_floor"]
    assert "below the floor" in cls["promotion_held"] and "1.5 x the champion's" in cls["promotion_held"]
    assert held.summary()["promoted"][CLASSIFIER_NAME]["promotion_rules"] == ["recall_floor"]
    assert (
        tracker.get_model_version_by_alias(CLASSIFIER_NAME, "champion").version
        == weak.promoted[CLASSIFIER_NAME]["model_version"]
    )
    # Leave the registry with a champion trained on the real labels by a strong model.
    run_cycle(
        stack_settings,
        storage,
        tracker,
        only={"logistic_regression", "multiple_regression"},
        margin=-1.0,
        announce=False,
    )
