"""batch.cycle_report: the leaderboard and the promotion decision in words."""

from __future__ import annotations

from batch.cycle_report import CycleResult, leaderboard, promotion_decisions
from batch.training import TrainedModel


def _cls(name: str, auc: float, f1: float = 0.62, fit_s: float = 1.0) -> TrainedModel:
    return TrainedModel(name, None, 0.3, {"roc_auc": auc, "f1_tuned": f1, "fit_s": fit_s})  # type: ignore[arg-type]


def _reg(name: str, r2: float, rmse: float) -> TrainedModel:
    return TrainedModel(name, None, 0.5, {"r2": r2, "rmse": rmse, "fit_s": 0.1})  # type: ignore[arg-type]


def _promoted(model: str, version: str, alias: str, metric: str, score: float, **more) -> dict:
    return {"model": model, "model_version": version, "alias": alias, "metrics": {metric: score}, **more}


def test_leaderboard_lists_best_first_and_marks_the_registered_version():
    models = [
        _cls("svm", 0.832),
        _cls("gradient_boosting", 0.848, fit_s=1.77),
        _reg("polynomial_regression", 0.999, 70.1),
    ]
    promoted = {"churn-classifier": _promoted("gradient_boosting", "7", "champion", "roc_auc", 0.848)}
    lines = leaderboard(models, promoted).splitlines()
    assert lines[0].split() == ["model", "task", "ROC-AUC", "F1", "R²", "RMSE", "fit", "s"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["gradient_boosting", "churn", "0.848", "0.620", "1.77", "champion", "v7"]
    assert lines[3].split()[:3] == ["svm", "churn", "0.832"]
    assert lines[4].split() == ["polynomial_regression", "value", "0.9990", "70.1", "0.10"]
    assert leaderboard([]) == ""


def test_promotion_decisions_in_words():
    result = CycleResult("c1", "telco", 7043)
    result.promoted = {
        "churn-classifier": _promoted(
            "gradient_boosting",
            "7",
            "champion",
            "roc_auc",
            0.8481,
            champion_version="5",
            champion_roc_auc=0.8421,
            champion_metric_source="this hold-out",
        ),
        "sales-regressor": _promoted(
            "polynomial_regression",
            "3",
            "challenger",
            "r2",
            0.999,
            champion_version="2",
            champion_r2=0.999,
            promotion_held="tie: r2 0.9990 equals the champion's (version 2)",
        ),
    }
    assert promotion_decisions(result) == [
        "churn-classifier: gradient_boosting v7 promoted to champion: ROC-AUC 0.848 beats 0.842 (v5) on this hold-out",
        "sales-regressor: polynomial_regression v3 held as challenger (champion stays v2): "
        "tie: r2 0.9990 equals the champion's (version 2)",
    ]


def test_first_champion_and_unchanged_input():
    first = CycleResult("c1", "telco", 7043)
    first.promoted = {"churn-classifier": _promoted("mlp", "1", "champion", "roc_auc", 0.8374)}
    assert promotion_decisions(first) == [
        "churn-classifier: mlp v1 promoted to champion: ROC-AUC 0.837 (no champion before)"
    ]
    unchanged = CycleResult("c2", "telco", 7043, unchanged_since="c1")
    assert promotion_decisions(unchanged) == [
        "unchanged input: same as cycle c1; nothing trained or registered (--force to retrain)"
    ]
