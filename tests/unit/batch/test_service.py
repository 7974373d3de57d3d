"""The batch service without servers: job guards, scheduler events, the in-process guard, the cycle timeout."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from batch.landing import incoming_csv_keys
from batch.service import MISFIRE_GRACE_S, BatchService
from plumbing.settings import Settings


@pytest.fixture
def service():
    # No request reaches a server in these tests: storage and tracker are never called.
    svc = BatchService(Settings(batch_cron="*/5 * * * *", batch_watch_interval_s=7), storage=None, tracker=None)
    yield svc
    svc.shutdown(wait=False)


def test_jobs_are_single_instance_coalesced_with_misfire_grace(service):
    service.add_jobs()
    service.scheduler.start(paused=True)
    jobs = {j.id: j for j in service.scheduler.get_jobs()}
    assert set(jobs) == {"cycle-cron", "incoming-watch"}
    for job in jobs.values():
        assert job.max_instances == 1 and job.coalesce and job.misfire_grace_time == MISFIRE_GRACE_S
    cron = jobs["cycle-cron"].trigger
    assert isinstance(cron, CronTrigger) and str(cron.timezone) == "UTC"
    assert str(cron) == str(CronTrigger.from_crontab("*/5 * * * *", timezone=UTC))
    assert isinstance(jobs["incoming-watch"].trigger, IntervalTrigger)
    assert jobs["incoming-watch"].trigger.interval.total_seconds() == 7
    assert service.scheduler._executors["default"]._pool._max_workers == 1


def test_default_schedule_is_daily_at_two_utc():
    assert Settings().batch_cron == "0 2 * * *"
    trigger = CronTrigger.from_crontab(Settings().batch_cron, timezone=UTC)
    nxt = trigger.get_next_fire_time(None, datetime(2026, 1, 1, 3, 0, tzinfo=UTC))
    assert nxt == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)


def test_misfire_is_logged(service, caplog):
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    when = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="batch.service"):
        service._on_event(JobExecutionEvent(EVENT_JOB_MISSED, "cycle-cron", "default", when))
    assert "misfire job=cycle-cron" in caplog.text and "coalesced" in caplog.text


def test_a_skipped_tick_is_logged_without_a_listener_error(caplog):
    """A real APScheduler tick skipped because the previous run still goes (EVENT_JOB_MAX_INSTANCES)."""
    svc = BatchService(Settings(batch_cron="0 0 1 1 *", batch_watch_interval_s=1), storage=None, tracker=None)
    started, release = threading.Event(), threading.Event()

    def slow_poll():
        started.set()
        release.wait(10)

    svc.poll_incoming = slow_poll  # the watcher job's body: blocks past the next tick
    with caplog.at_level(logging.DEBUG):
        svc.add_jobs()
        svc.scheduler.start()
        try:
            assert started.wait(5)
            deadline = time.monotonic() + 5
            while "skipped job=incoming-watch" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            release.set()
            svc.shutdown(wait=True)
    assert "skipped job=incoming-watch scheduled_at=20" in caplog.text
    assert "its previous run is still going" in caplog.text
    assert "Error notifying listener" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def test_a_second_cycle_in_the_same_process_is_skipped(service):
    service._local.acquire()
    try:
        outcome = service.run_scheduled()
    finally:
        service._local.release()
    assert outcome.status == "skipped" and "this process" in outcome.detail


def test_incoming_keys_are_csv_files_under_the_prefix():
    names = ["incoming/a.csv", "incoming/sub/b.CSV", "incoming/", "incoming/notes.txt", "other/c.csv", "incoming/sub/"]
    assert incoming_csv_keys(names, "incoming/") == ["incoming/a.csv", "incoming/sub/b.CSV"]


def test_shutdown_waits_for_the_running_job(service):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def job():
        started.set()
        release.wait(5)
        finished.set()

    service.scheduler.start()
    service.scheduler.add_job(job)
    assert started.wait(5)
    threading.Timer(0.3, release.set).start()
    service.shutdown(wait=True)
    assert finished.is_set()


def test_a_cycle_without_reachable_servers_fails_with_a_cycle_error(telco_csv):
    """Nothing listens on these ports: the cycle names the service, its endpoint and the stage."""
    from batch.cycle import CycleError, run_cycle, unreachable_services
    from churn_stream.stack import LocalStack
    from plumbing.clients import make_storage, make_tracker

    s3_port, mlflow_port = LocalStack.free_ports(2)
    settings = Settings(minio_endpoint=f"127.0.0.1:{s3_port}", mlflow_tracking_uri=f"http://127.0.0.1:{mlflow_port}")
    assert unreachable_services(settings) == [
        ("S3", f"http://127.0.0.1:{s3_port}"),
        ("MLflow", f"http://127.0.0.1:{mlflow_port}"),
    ]
    with pytest.raises(CycleError) as info:
        run_cycle(
            settings,
            make_storage(settings),
            make_tracker(settings),
            source=telco_csv,
            only={"logistic_regression"},
            announce=False,
        )
    assert info.value.stage == "ingest" and info.value.service == "S3"
    assert str(info.value).startswith(f"S3 unreachable at http://127.0.0.1:{s3_port} during ingest: ")


def test_retail_service_needs_a_source_and_keeps_it(tmp_path):
    with pytest.raises(ValueError, match="'retail' has no shipped file"):
        BatchService(Settings(), storage=None, tracker=None, dataset="retail")
    with pytest.raises(KeyError, match="unknown dataset 'shop'"):
        BatchService(Settings(), storage=None, tracker=None, dataset="shop", source=tmp_path / "x.csv")
    svc = BatchService(Settings(), storage=None, tracker=None, dataset="retail", source=tmp_path / "r.csv")
    try:
        assert (svc.dataset, svc.source) == ("retail", tmp_path / "r.csv")
    finally:
        svc.shutdown(wait=False)


def test_cli_batch_serve_accepts_retail_only_with_a_source():
    from click.testing import CliRunner

    from churn_stream.cli import main

    result = CliRunner().invoke(main, ["batch", "serve", "--dataset", "retail"])
    assert result.exit_code == 2
    assert "--source is required for --dataset retail" in result.output
    result = CliRunner().invoke(main, ["batch", "serve", "--dataset", "shop"])
    assert result.exit_code == 2 and "unknown dataset 'shop'" in result.output


def hang_forever(*args, **kwargs):
    """A cycle that never returns (runs in the cycle's child process)."""
    time.sleep(3600)


def crash(*args, **kwargs):
    raise RuntimeError("boom in the cycle")


def test_a_hung_cycle_is_killed_at_the_timeout_and_reported_failed(caplog):
    svc = BatchService(Settings(batch_cycle_timeout_s=2), storage=None, tracker=None, run=hang_forever)
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="batch.service"):
        outcome = svc._in_child(svc._job("manual", incoming=False))
    took = time.monotonic() - t0
    assert outcome.status == "failed" and "timed out after 2 s (CHURN_BATCH_CYCLE_TIMEOUT_S)" in outcome.detail
    assert took < 30  # spawn start-up plus the 2 s limit; the hung child does not hold the thread
    assert "cycle started reason=manual" in caplog.text


def test_a_crashing_cycle_is_reported_failed_with_its_traceback_in_the_log(caplog):
    svc = BatchService(Settings(batch_cycle_timeout_s=60), storage=None, tracker=None, run=crash)
    with caplog.at_level(logging.INFO):
        outcome = svc._in_child(svc._job("manual", incoming=False))
    assert outcome.status == "failed" and outcome.detail == "RuntimeError: boom in the cycle"
    # The child's log records reach this process's loggers.
    assert "cycle crashed reason=manual" in caplog.text and "boom in the cycle" in caplog.text
