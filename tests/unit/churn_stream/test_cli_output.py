"""What the CLI prints: --version, quiet tools by default (-v for details), MLflow's own output off,
and the demo's summary and rates saying what they measure."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from churn_stream.cli import main
from churn_stream.cli.app import MLFLOW_QUIET_DEFAULTS, _quiet_mlflow, tool_output
from churn_stream.demo import produced_line, summary_lines
from plumbing.progress import PROGRESS_LOGGER


def test_version_comes_from_the_package_metadata():
    result = subprocess.run(
        [sys.executable, "-m", "churn_stream.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"churn {importlib.metadata.version('churn-stream')}\n"


def test_mlflow_run_links_and_download_bars_are_off_unless_the_environment_says():
    env: dict[str, str] = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true"}
    _quiet_mlflow(env)
    assert env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"  # the user's choice stands
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    verbose: dict[str, str] = {}
    _quiet_mlflow(verbose, verbose=1)
    assert "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT" not in verbose  # -v keeps the links
    assert (
        verbose["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == MLFLOW_QUIET_DEFAULTS["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]
    )


def _levels_after(args: list[str], monkeypatch) -> dict[str, int]:
    """Run ``churn <args> probe`` (a command calling tool_output) and return the levels it left."""
    seen: dict[str, int] = {}
    env: dict[str, str] = {}

    @main.command("probe-output", hidden=True)
    def probe() -> None:
        tool_output(env)
        seen["root"] = logging.getLogger().level
        seen["progress"] = logging.getLogger(PROGRESS_LOGGER).getEffectiveLevel()
        seen["mlflow_env"] = int("MLFLOW_LOGGING_LEVEL" in env)

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures afresh
    monkeypatch.setattr(root, "level", root.level)
    try:
        result = CliRunner().invoke(main, [*args, "probe-output"])
        assert result.exit_code == 0, result.output
    finally:
        main.commands.pop("probe-output")
        logging.getLogger(PROGRESS_LOGGER).setLevel(logging.NOTSET)
    return seen


def test_tools_show_progress_and_warnings_by_default(monkeypatch):
    levels = _levels_after([], monkeypatch)
    assert levels == {"root": logging.WARNING, "progress": logging.INFO, "mlflow_env": 1}


def test_verbose_or_a_chosen_level_keeps_details(monkeypatch):
    assert _levels_after(["-v"], monkeypatch)["root"] == logging.INFO
    assert _levels_after(["-vv"], monkeypatch)["root"] == logging.DEBUG
    chosen = _levels_after(["--log-level", "DEBUG"], monkeypatch)
    assert chosen["root"] == logging.DEBUG and chosen["mlflow_env"] == 0


def _bench_stream_output(
    args: list[str], monkeypatch, command: tuple[str, ...] = ("stream", "--contenders", "relay")
) -> tuple[str, dict[str, object]]:
    """Run ``churn <args> bench <command>`` with a stand-in run that logs as the real one does."""
    from churn_stream.bench import score, stream

    seen: dict[str, object] = {}

    def run(settings, **kwargs) -> None:
        logging.getLogger("batch.ingest").info("blank TotalCharges read as 0.0 count=11")
        logging.getLogger("churn_stream.bench.stream_phases").warning("bench topic not deleted topic=t")
        print("collector: 2,000 scores read again", file=sys.stderr)
        seen["mlflow_env"] = os.environ.get("MLFLOW_LOGGING_LEVEL")

    monkeypatch.setattr(stream, "run_bench_stream", run)
    monkeypatch.setattr(score, "run_bench_score", run)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "")
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL")  # restored (unset) after the test
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures afresh, on the runner's stderr
    monkeypatch.setattr(root, "level", root.level)
    try:
        result = CliRunner().invoke(main, [*args, "bench", *command])
    finally:
        logging.getLogger(PROGRESS_LOGGER).setLevel(logging.NOTSET)
    assert result.exit_code == 0, result.output
    return result.output, seen


@pytest.mark.parametrize("command", [("stream", "--contenders", "relay"), ("score",)], ids=["stream", "score"])
def test_bench_shows_its_report_and_warnings_only_by_default(monkeypatch, command):
    output, seen = _bench_stream_output([], monkeypatch, command)
    assert output.splitlines() == [
        "warning: churn_stream.bench.stream_phases: bench topic not deleted topic=t",
        "collector: 2,000 scores read again",
    ]
    assert seen["mlflow_env"] == "WARNING"  # MLflow's "Waiting up to 300 seconds" is INFO


def test_bench_stream_with_verbose_logs_info_again(monkeypatch):
    output, seen = _bench_stream_output(["-v"], monkeypatch)
    assert " INFO batch.ingest blank TotalCharges read as 0.0 count=11" in output
    assert " WARNING churn_stream.bench.stream_phases bench topic not deleted topic=t" in output
    assert seen["mlflow_env"] is None


def test_progress_interval_must_be_positive():
    result = CliRunner().invoke(main, ["--progress-interval", "0", "schemas", "--help"])
    assert result.exit_code == 2


def test_rates_say_what_they_measure():
    assert produced_line(7043, 38.2) == "produced 7,043 events in 38.2 s (184 events/s, producer acknowledged)"
    summary = {
        "dataset": "telco",
        "source": "data/telco_customer_churn.csv",
        "first_score_s": 192.693,
        "produced": 7043,
        "scored": 7043,
        "alerts": 2474,
        "duplicates": 0,
        "events_per_s": 5215.3,
        "scoring_s": 1.35,
        "elapsed_s": 194.047,
        "model_name": "churn-classifier",
        "model_version": "12",
        "champion_roc_auc": 0.84809,
        "champion_f1": 0.62416,
        "champion_model": "gradient_boosting",
    }
    lines = summary_lines(summary, threshold=0.318)
    assert 3 <= len(lines) <= 6
    text = "\n".join(lines)
    assert "gradient_boosting v12: ROC-AUC 0.848, F1 0.624 at threshold 0.318" in text
    assert "7,043 produced, 7,043 scored, 2,474 churn alerts" in text
    assert "5,215 events/s scored (worker throughput, end to end" in text
    assert "first score 192.7 s after the demo started" in text
    assert summary_lines({**summary, "events_per_s": None, "first_score_s": None, "champion_f1": None})


def test_click_group_has_verbose_and_version_options():
    names = {p.name for p in main.params if isinstance(p, click.Option)}
    assert {"verbose", "log_level", "progress_interval", "version"} <= names
