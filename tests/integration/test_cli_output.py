"""`churn batch run` as a person and as a script see it, on real servers: a leaderboard, the promotion
decision in words, an MLflow link that opens on model training, a bar on a terminal and a periodic line in
a pipe, MLflow's own chatter silenced, one JSON line on stdout. Experiments are tagged to open on MLflow's
model-training view."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration

#: Two models of the retail dataset: a cycle of seconds, in a namespace no other test's champion lives in.
ONLY = ["--only", "logistic_regression", "--only", "multiple_regression"]


@pytest.fixture(scope="module")
def retail_csv(tmp_path_factory) -> Path:
    from churn_stream import cli

    path = tmp_path_factory.mktemp("cli-output") / "retail.csv"
    made = CliRunner().invoke(
        cli.main, ["data", "generate", "retail", "--rows", "3000", "--seed", "7", "--out", str(path)]
    )
    assert made.exit_code == 0, made.output
    return path


@pytest.fixture(scope="module")
def env(stack_settings) -> dict[str, str]:
    from plumbing.settings import Settings

    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_", "MINIO_", "MLFLOW_", "AWS_"))}
    for name, var in Settings._ENV.items():
        value = getattr(stack_settings, name)
        if value is not None:
            base[var] = str(value)
    return base


def _churn() -> list[str]:
    return [str(Path(sys.executable).with_name("churn"))]


def _batch_run(retail_csv: Path) -> list[str]:
    return ["batch", "run", "--dataset", "retail", "--source", str(retail_csv), *ONLY, "--force"]


def test_batch_run_in_a_pipe_prints_periodic_lines_a_leaderboard_and_the_decision(env, retail_csv):
    run = subprocess.run(
        [*_churn(), "--progress-interval", "0.5", *_batch_run(retail_csv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = run.stdout.splitlines()
    assert len(out) == 1 and json.loads(out[0])["status"] == "trained"  # stdout: the JSON line alone
    err = run.stderr
    # Not a terminal: no bar redraws, a progress line every interval naming the stage and the model.
    assert "\r" not in err
    assert re.search(r"^retail cycle: \d/\d stages \(\d+ %\), \w+", err, re.M), err
    assert re.search(r"retail classification: \d/1 models \(\d+ %\), logistic_regression, \d+ s$", err, re.M), err
    # MLflow's own output stays out (run links, download bars, "Waiting up to 300 seconds ...").
    assert "View run" not in run.stdout + err and "Downloading artifacts" not in err and "Waiting up to" not in err
    # The leaderboard and the decision in words.
    assert re.search(r"^model\s+task\s+ROC-AUC\s+F1\s+R²\s+RMSE\s+fit s$", err, re.M), err
    assert re.search(
        r"^logistic_regression\s+churn\s+0\.\d{3}\s+0\.\d{3}\s+\d+\.\d\d\s+(champion|challenger) v\d+$", err, re.M
    )
    assert re.search(r"^multiple_regression\s+value\s+", err, re.M)
    assert re.search(
        r"^retail-churn-classifier: logistic_regression v\d+ "
        r"(promoted to champion: ROC-AUC 0\.\d{3}|held as challenger)",
        err,
        re.M,
    ), err
    link = re.search(r"^MLflow: (http://\S+/#/experiments/\d+)\?workflowType=machine_learning$", err, re.M)
    assert link, err


def _run_in_terminal(args: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal; return (exit code, everything written)."""
    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, where tqdm draws nothing: give it a terminal's size.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, b"".join(chunks).decode(errors="replace")


def test_batch_run_in_a_terminal_draws_bars_that_clear_themselves(env, retail_csv):
    code, text = _run_in_terminal([*_churn(), *_batch_run(retail_csv)], env, timeout_s=600)
    assert code == 0, text[-4000:]
    # tqdm redraws in place (carriage returns) and names the stage and the model.
    assert "\r" in text and "retail cycle" in text and "retail classification" in text
    assert not re.search(r"^retail cycle: \d/\d stages \(", text, re.M)  # no periodic lines on a terminal
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    assert json.loads(lines[-1].split("\r")[-1])["status"] == "trained"  # the JSON line stays last


def test_experiments_open_on_the_model_training_view(stack_settings, env, retail_csv):
    from batch.run_log import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment
    from plumbing.clients import make_tracker

    tracker = make_tracker(stack_settings)
    suffix = str(time.time_ns())
    created = ensure_experiment(tracker, f"h16-new-{suffix}")
    assert tracker.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    # An experiment created before the tag existed gets it; one a person switched to GenAI keeps it.
    old = tracker.create_experiment(f"h16-old-{suffix}")
    assert EXPERIMENT_KIND_TAG not in tracker.get_experiment(old).tags
    assert ensure_experiment(tracker, f"h16-old-{suffix}") == old
    assert tracker.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    chosen = tracker.create_experiment(f"h16-genai-{suffix}", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    ensure_experiment(tracker, f"h16-genai-{suffix}")
    assert tracker.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    # The cycle's experiment, whichever test created it.
    run = subprocess.run([*_churn(), *_batch_run(retail_csv)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert tracker.get_experiment_by_name("churn-retail").tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_produce_in_a_pipe_reports_progress_and_what_its_rate_measures(stack_settings, env, telco_csv):
    import asyncio

    from plumbing.clients import create_missing_topics

    topic = f"h16-produce-{time.time_ns()}"
    asyncio.run(create_missing_topics(stack_settings, {topic: 1}))
    args = ["--progress-interval", "0.2", "produce", str(telco_csv), "--rate", "40", "--limit", "60", "--topic", topic]
    run = subprocess.run([*_churn(), *args], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.splitlines() == ['{"produced": 60}']
    # About 1.5 s at 40 events/s: a line every 0.2 s, counting acknowledged events.
    assert re.search(r"^produce: \d+/60 events \(\d+ %\), \d+ s$", run.stderr, re.M), run.stderr
    assert re.search(r"^produced 60 events in \d+\.\d s \(\d+ events/s, producer acknowledged\)$", run.stderr, re.M), (
        run.stderr
    )
