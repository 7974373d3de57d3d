"""Every user error of the ``churn`` command line is one line on stderr with a non-zero exit (issue 18, point 8).

Each subcommand runs with one bad value; none may print a traceback, click's four-line usage
block, or start anything. The table must name every subcommand: a new command without a case
fails :func:`test_every_subcommand_has_a_bad_value_case`.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from churn_stream import cli
from churn_stream.cli import main


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _leaves(cmd, (*path, name))
        else:
            out.append(" ".join((*path, name)))
    return out


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A path whose folder cannot be created: its would-be parent is a file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker / "sub"


#: subcommand -> (arguments after it, text the one line must contain). ``{bad}`` is a path that
#: cannot be written; ``{profile}`` a profile file that does not validate.
CASES: dict[str, tuple[list[str], str]] = {
    "schemas export": (["{bad}"], "Not a directory"),
    "schemas asyncapi": (["--dataset", "foo"], "foo"),
    "batch run": (["--dataset", "foo"], "unknown dataset 'foo'"),
    "batch serve": (["--dataset", "{profile}"], "bad.yaml"),
    "data generate": (["telco", "--out", "x.csv"], "only retail has a generator"),
    "bench models": (["--dataset", "foo"], "unknown dataset 'foo'"),
    "bench fit": (["--rows", "5"], "'--rows'"),
    "bench gbm-cv": (["--json", "{bad}/x.json"], "does not exist"),
    "bench models-cv": (["--repeats", "0"], "'--repeats'"),
    "bench stream": (["--dataset", "foo"], "unknown dataset 'foo'"),
    "bench api": (["--rate", "0"], "'--rate'"),
    "bench dashboard": (["--rate", "0"], "'--rate'"),
    "bench batch": (["--dataset", "nope.yaml"], "no such profile file"),
    "bench batch-curve": (["--sizes", "ten"], "invalid literal"),
    "bench faults": (["--events", "0"], "'--events'"),
    "bench score": (["--batch", "0"], "'--batch'"),
    "stack up": (["--ephemeral=yes"], "does not take a value"),
    "stack down": (["extra"], "unexpected extra argument"),
    "stack status": (["extra"], "unexpected extra argument"),
    "demo": (["--dataset", "foo"], "unknown dataset 'foo'"),
    "worker": (["--web-port", "0"], "'--web-port'"),
    "produce": (["no-such.csv"], "does not exist"),
    "consume": (["customers", "--limit", "-1"], "'--limit'"),
    "dlq replay": (["--since", "yesterday-ish"], "--since"),
    "api": (["--port", "70000"], "'--port'"),
    "api keys create": (["--name", "x", "--scope", "root"], "'--scope'"),
    "api keys list": (["extra"], "unexpected extra argument"),
    "api keys revoke": (["nobody"], "no active key named 'nobody'"),
    "dashboard": (["--port", "0"], "'--port'"),
    "profile infer": (["no-such.csv", "--label", "churn"], "no such file"),
    "profile check": (["{profile}"], "bad.yaml"),
    "profile schema": (["extra"], "unexpected extra argument"),
}


def test_every_subcommand_has_a_bad_value_case():
    missing = sorted(set(_leaves(main)) - set(CASES))
    assert not missing, f"add a bad-value case for: {missing}"


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_bad_value_is_one_line_on_stderr_and_a_non_zero_exit(command, tmp_path, unwritable, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile = tmp_path / "bad.yaml"
    profile.write_text("format_version: 1\nname: Bad Name\n")
    args, expected = CASES[command]
    args = [a.replace("{bad}", str(unwritable)).replace("{profile}", str(profile)) for a in args]
    result = CliRunner().invoke(main, [*command.split(), *args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"{type(result.exception).__name__}: {result.exception}"
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_churn_dataset_from_the_environment_is_checked_too(monkeypatch):
    settings = cli.Settings(dataset="shop")
    monkeypatch.setattr(cli.Settings, "from_env", classmethod(lambda cls, environ=None: settings))
    result = CliRunner().invoke(main, ["batch", "run"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: Invalid value for --dataset (or CHURN_DATASET): unknown dataset")


def test_a_dataset_without_a_source_needs_one(tmp_path):
    result = CliRunner().invoke(main, ["batch", "run", "--dataset", "retail"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --source is required for --dataset retail: dataset 'retail' has no")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "runner"),
    [
        (["api", "--port", "{port}"], "stream_app.api.run_api"),
        (["dashboard", "--port", "{port}"], "dashboard.app.run_dashboard"),
        (["worker", "--web-port", "{port}"], "stream_app.worker.run_worker"),
    ],
    ids=["api", "dashboard", "worker"],
)
def test_a_busy_port_fails_before_anything_is_loaded(command, runner, monkeypatch):
    started = []
    module, name = runner.rsplit(".", 1)
    monkeypatch.setattr(__import__(module, fromlist=[name]), name, lambda *a, **k: started.append(a))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, [a.replace("{port}", str(port)) for a in command])
    assert started == [], "the service started although its port was taken"
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: 127.0.0.1:{port} for ") and "not available" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "served"), [([], "telco"), (["--dataset", "retail"], "retail")])
def test_dashboard_serves_the_dataset_named_by_dataset(args, served, monkeypatch):
    import dashboard.app

    started = []
    monkeypatch.setattr(dashboard.app, "run_dashboard", lambda settings, **kw: started.append(settings.dataset))
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(main, ["dashboard", "--port", str(port), *args])
    assert result.exit_code == 0, result.output
    assert started == [served]
    bad = CliRunner().invoke(main, ["dashboard", "--dataset", "foo"])
    assert bad.exit_code == 2 and "unknown dataset 'foo'" in bad.stderr


def test_too_few_rows_per_class_is_one_line():
    """A new user's 1-row table reached `churn demo` and `churn batch run` as a 44-line traceback."""
    import click

    from batch.cycle_input import InsufficientRowsError

    @click.command("too-few-rows")
    def too_few_rows() -> None:
        raise InsufficientRowsError({"churned": 1, "retained": 0}, 100)

    main.add_command(too_few_rows)
    try:
        result = CliRunner().invoke(main, ["too-few-rows"])
    finally:
        main.commands.pop("too-few-rows")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: InsufficientRowsError: too few rows per class"), lines[0]
