"""``churn bench batch`` on real servers: a small retail cycle, its figures in the table and the JSON."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration


def test_bench_batch_small_retail_cycle_reports_real_figures(stack_settings, tmp_path, monkeypatch):
    from churn_stream import cli

    # The CLI reads settings from the environment: point it at the test stack.
    monkeypatch.setattr(cli.Settings, "from_env", classmethod(lambda cls, environ=None: stack_settings))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli.main,
        [
            "--log-level",
            "WARNING",
            "bench",
            "batch",
            "--dataset",
            "retail",
            "--rows",
            "3000",
            "--seed",
            "7",
            "--only",
            "logistic_regression",
            "--only",
            "svm",
            "--only",
            "linear_regression",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["dataset"] == "retail" and figures["rows"] == 3000
    assert figures["source"] == "generated(seed=7)" and figures["generate_s"] > 0
    stages = figures["stages_s"]
    for stage in (
        "ingest",
        "features",
        "quality",
        "train_classification",
        "train_regression",
        "promote",
        "fit",
        "tune_threshold",
        "evaluate",
        "log_models",
    ):
        assert stages[stage] > 0, stage
    assert figures["cycle_s"] >= sum(
        stages[s] for s in ("ingest", "features", "quality", "train_classification", "train_regression", "promote")
    )
    assert figures["cpu_s"] > 0
    # A Python process holding numpy, pandas, pyarrow and MLflow: well above 100 MB, far below 6 GB.
    assert 0.1 < figures["peak_rss_gb"] < 6.0
    assert set(figures["models"]) == {"logistic_regression", "svm", "linear_regression"}
    lr = figures["models"]["logistic_regression"]
    # 3,000 rows: 2,400 training rows, below every cap, so 5-fold out-of-fold thresholds and all rows fitted.
    assert lr["task"] == "classification" and lr["fit_rows"] == 2400
    assert lr["fit_s"] > 0 and lr["fit_cpu_s"] > 0 and lr["tune_s"] > 0 and lr["eval_s"] > 0
    assert 0.6 < lr["score"] < 1.0
    assert figures["models"]["linear_regression"]["task"] == "regression"
    assert figures["models"]["linear_regression"]["score"] > 0.5
    assert figures["targets"]["applies"] is False and figures["targets"]["cycle_met"] is None
    assert figures["targets"]["cycle_s"] == 900.0 and figures["targets"]["peak_rss_gb"] == 6.0
    assert figures["settings"]["batch_oof_max_rows"] == stack_settings.batch_oof_max_rows
    assert len(figures["load_average"]) == 3
    # The table shows the same figures beside the targets.
    assert "full cycle, wall s" in result.output and "< 900" in result.output and "< 6" in result.output
    assert f"{figures['peak_rss_gb']:.2f}" in result.output
    assert "logistic_regression" in result.output and "2,400" in result.output


def test_bench_batch_caps_the_ensembles_and_logs_fit_rows(stack_settings, tmp_path, monkeypatch):
    from churn_stream import cli
    from plumbing.clients import make_tracker

    # 3,000 rows -> 2,400 training rows; caps below that so every bounded model samples.
    capped = stack_settings.with_overrides(batch_ensemble_max_rows=1000, batch_poly_max_rows=600)
    monkeypatch.setattr(cli.Settings, "from_env", classmethod(lambda cls, environ=None: capped))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli.main,
        [
            "--log-level",
            "WARNING",
            "bench",
            "batch",
            "--dataset",
            "retail",
            "--rows",
            "3000",
            "--seed",
            "8",
            "--only",
            "random_forest",
            "--only",
            "gradient_boosting_regressor",
            "--only",
            "polynomial_regression",
            "--only",
            "linear_regression",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["settings"]["batch_ensemble_max_rows"] == 1000
    models = figures["models"]
    # Stratified samples: each class's share rounded, so the total is within one row of the cap.
    assert abs(models["random_forest"]["fit_rows"] - 1000) <= 1
    assert abs(models["gradient_boosting_regressor"]["fit_rows"] - 1000) <= 1
    assert abs(models["polynomial_regression"]["fit_rows"] - 600) <= 1
    assert models["linear_regression"]["fit_rows"] == 2400
    assert models["random_forest"]["score"] > 0.7
    # The regressors' samples are stratified on churn, not on the continuous sales target, so a
    # sampled regressor still learns (it fitted a few dozen rows when sales were the strata).
    assert models["gradient_boosting_regressor"]["score"] > 0.4
    tracker = make_tracker(stack_settings)
    runs = tracker.search_runs(
        [tracker.get_experiment_by_name("churn-retail").experiment_id],
        filter_string=f"tags.cycle_id = '{figures['cycle_id']}'",
    )
    logged = {r.data.tags.get("model"): r.data.params for r in runs if r.data.tags.get("model")}
    assert int(logged["random_forest"]["fit_rows"]) == models["random_forest"]["fit_rows"]
    assert int(logged["gradient_boosting_regressor"]["fit_rows"]) == models["gradient_boosting_regressor"]["fit_rows"]
    parent = [r for r in runs if r.info.run_name == f"cycle-{figures['cycle_id']}"]
    assert parent and parent[0].data.params["batch_ensemble_max_rows"] == "1000"
