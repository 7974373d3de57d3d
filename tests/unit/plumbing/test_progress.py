"""plumbing.progress: a tqdm bar on a terminal, a periodic line elsewhere, nested jobs in one line."""

from __future__ import annotations

import io
import logging
import time

import pytest

from plumbing.progress import PROGRESS_LOGGER, Progress, set_interval


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]


def test_not_a_terminal_logs_a_line_every_interval(caplog):
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    stream = io.StringIO()
    with Progress("telco classification", 12, unit="model", stream=stream, interval_s=0.05) as bar:
        assert not bar.tty
        bar.update(5)
        bar.set_postfix("random_forest")
        time.sleep(0.3)
    lines = _lines(caplog)
    assert len(lines) >= 2
    assert lines[-1].startswith("telco classification: 5/12 models (42 %), random_forest, ")
    assert stream.getvalue() == ""  # no bar redraws in a pipe


def test_a_job_shorter_than_the_interval_prints_nothing(caplog):
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    with Progress("produce", 10, unit="event", stream=io.StringIO(), interval_s=5) as bar:
        bar.update(10)
    assert _lines(caplog) == []


def test_no_line_after_close(caplog):
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    bar = Progress("score", None, unit="event", stream=io.StringIO(), interval_s=0.05)
    bar.update(3)
    time.sleep(0.15)
    bar.close()
    bar.close()  # idempotent
    seen = len(_lines(caplog))
    time.sleep(0.15)
    assert seen >= 1 and len(_lines(caplog)) == seen
    assert _lines(caplog)[0].startswith("score: 3 events, ")  # no total: no percentage


def test_nested_jobs_share_one_line(caplog):
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    stream = io.StringIO()
    with Progress("telco cycle", 7, unit="stage", stream=stream, interval_s=0.05) as outer:
        outer.update(3)
        outer.set_postfix("train_classification")
        with Progress("telco classification", 12, unit="model", stream=stream, interval_s=0.05) as inner:
            inner.update(1)
            time.sleep(0.3)
    nested = [line for line in _lines(caplog) if " > " in line]
    assert nested, _lines(caplog)
    assert nested[-1].startswith(
        "telco cycle: 3/7 stages (43 %), train_classification > telco classification: 1/12 models (8 %), "
    )
    # While the inner job runs, only it speaks: no bare outer line in between.
    first_nested = _lines(caplog).index(nested[0])
    assert all(" > " in line for line in _lines(caplog)[first_nested : first_nested + len(nested)])


def test_a_terminal_gets_a_tqdm_bar_that_clears_itself():
    term = _Terminal()
    with Progress("produce", 100, unit="event", stream=term) as bar:
        assert bar.tty
        bar.update(40)
        bar.set_postfix("customers")
    out = term.getvalue()
    assert "produce" in out and "\r" in out
    assert "40/100" in out


def test_set_interval_rejects_non_positive():
    with pytest.raises(ValueError, match="expected seconds > 0"):
        set_interval(0)
