"""A full batch cycle on real servers: every zoo model trained, logged, registered; champions promoted."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from batch import zoo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def full_cycle(stack_settings):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    return run_cycle(stack_settings, storage, tracker), storage, tracker


def test_every_model_is_trained_logged_and_registered(full_cycle):
    result, _, tracker = full_cycle
    names = {m.name for m in result.models}
    assert names == set(zoo.classifiers()) | set(zoo.regressors())
    assert len(zoo.classifiers()) == 12 and len(zoo.regressors()) == 4  # 11 classifiers + GBM, 4 regressors
    cycle_id = result.cycle_id
    runs = tracker.search_runs(
        [tracker.get_experiment_by_name("churn-telco").experiment_id],
        filter_string=f"tags.cycle_id = '{cycle_id}'",
        max_results=100,
    )
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.tags["model"] for r in children} == names
    for run in children:
        assert tracker.list_artifacts(run.info.run_id, "model")[0].path == "model/pipeline.npz"
    for registered in ("churn-classifier", "sales-regressor"):
        versions = tracker.search_model_versions(f"name = '{registered}'")
        this_cycle = {v.tags.get("model") for v in versions if v.run_id in {r.info.run_id for r in children}}
        expected = set(zoo.classifiers()) if registered == "churn-classifier" else set(zoo.regressors())
        assert this_cycle == expected


def test_champions_are_the_best_models_and_metrics_are_sane(full_cycle):
    result, _, tracker = full_cycle
    cls = {m.name: m.metrics for m in result.models if "roc_auc" in m.metrics}
    reg = {m.name: m.metrics for m in result.models if "r2" in m.metrics}
    best_cls = max(cls, key=lambda n: cls[n]["roc_auc"])
    best_reg = max(reg, key=lambda n: reg[n]["r2"])
    assert result.promoted["churn-classifier"]["model"] == best_cls
    assert result.promoted["sales-regressor"]["model"] == best_reg
    champ = tracker.get_model_version_by_alias("churn-classifier", "champion")
    assert champ.version == result.promoted["churn-classifier"]["model_version"]
    assert cls[best_cls]["roc_auc"] > 0.84
    assert reg[best_reg]["r2"] > 0.99
    for m in cls.values():
        assert 0.7 < m["roc_auc"] < 1.0 and 0.0 < m["threshold"] < 1.0
    assert "| gradient_boosting |" in result.report and "Best classifier" in result.report


def test_raw_and_processed_parquet_in_s3(full_cycle):
    result, storage, _ = full_cycle
    key = f"telco/{result.input_sha256[:16]}"  # keyed by the input's content
    assert result.raw_uri == f"s3://raw-data/{key}/customers.parquet"
    raw = storage.get_object("raw-data", f"{key}/customers.parquet").read()
    table = pq.read_table(io.BytesIO(raw))
    assert table.num_rows == 7043
    assert table.schema.field("total_charges_usd").type == "double"
    assert table.column("total_charges_usd").null_count == 0
    processed = storage.get_object("processed-data", f"{key}/classification_train.parquet").read()
    assert pq.read_table(io.BytesIO(processed)).num_rows == 5634


def test_evaluation_artifacts_logged_per_model(full_cycle):
    result, _, tracker = full_cycle
    champ = result.promoted["churn-classifier"]
    files = {a.path for a in tracker.list_artifacts(champ["run_id"], "eval")}
    assert {
        "eval/roc_curve.json",
        "eval/pr_curve.json",
        "eval/confusion_matrix.json",
        "eval/roc.png",
        "eval/pr.png",
        "eval/confusion_matrix.png",
    } <= files
    m = tracker.get_run(champ["run_id"]).data.metrics
    assert m["tn"] + m["fp"] + m["fn"] + m["tp"] == 1409  # the hold-out
    reg = result.promoted["sales-regressor"]
    reg_files = {a.path for a in tracker.list_artifacts(reg["run_id"], "eval")}
    assert {"eval/residuals.png", "eval/predicted_vs_actual.png"} <= reg_files
