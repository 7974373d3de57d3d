"""``churn batch serve``: the scheduled batch cycle, plus a watcher for new CSVs in S3.

Two APScheduler 3 jobs share one single-thread executor: a cron job
(``CHURN_BATCH_CRON``, UTC) runs a cycle on the configured source, and a watcher
(every ``CHURN_BATCH_WATCH_S`` seconds) runs one on the CSVs that landed under
``s3://raw-data/<CHURN_BATCH_INCOMING_PREFIX>`` (several files are concatenated).
Never two cycles at once: within a process each job has ``max_instances=1`` and
``coalesce=True`` and the executor has one thread; across processes every cycle runs
under :class:`batch.lock.S3Lock`. Consumed files move to ``incoming-done/<cycle_id>/``,
files the data-quality gate rejects to ``incoming-rejected/<cycle_id>/``; after an
S3 or MLflow outage (:class:`batch.cycle.CycleError`) they stay and are retried.
SIGTERM or SIGINT stops the scheduler and lets a running cycle finish.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch.cycle import DEFAULT_SOURCES, CycleError, CycleResult, run_cycle
from batch.lock import S3Lock
from batch.quality import DataQualityError
from schemas.profiles import get_profile

logger = logging.getLogger(__name__)

#: Seconds a missed run may be late and still run (once: missed runs are coalesced).
MISFIRE_GRACE_S = 600


@dataclass
class CycleOutcome:
    """What one attempt of the service did.

    Attributes
    ----------
    reason : str
        ``cron``, ``incoming`` or ``manual``.
    status : str
        ``finished``, ``rejected`` (data-quality gate), ``failed`` (S3/MLflow outage),
        ``skipped`` (another process holds the lock, or nothing new arrived).
    cycle_id : str or None
    detail : str
    sources : list of str
        Incoming keys the cycle ingested.
    """

    reason: str
    status: str
    cycle_id: str | None = None
    detail: str = ""
    sources: list[str] = field(default_factory=list)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def incoming_csv_keys(names: list[str], prefix: str) -> list[str]:
    """Object names under ``prefix`` that are CSV files, sorted (folders and other files ignored)."""
    return sorted(n for n in names if n.startswith(prefix) and n.lower().endswith(".csv") and not n.endswith("/"))


def concatenate_csvs(parts: list[bytes]) -> bytes:
    """One CSV from several with the same header: the first header, every data row.

    Works on bytes, so ingestion still sees and judges the exact content (encoding,
    blanks); a later file whose header differs keeps it as a row, which ingestion rejects.
    """
    out: list[bytes] = []
    header: bytes | None = None
    for raw in parts:
        text = raw.removeprefix(b"\xef\xbb\xbf")
        first, _, rest = text.partition(b"\n")
        if header is None:
            header = first.rstrip(b"\r")
            out.append(text)
        elif first.rstrip(b"\r").strip() == header.strip():
            out.append(rest)
        else:
            out.append(text)
        if out[-1] and not out[-1].endswith(b"\n"):
            out.append(b"\n")
    return b"".join(out)


class BatchService:
    """The scheduler around :func:`batch.cycle.run_cycle`.

    Parameters
    ----------
    settings : plumbing.settings.Settings
        ``batch_cron``, ``batch_watch_interval_s``, ``batch_incoming_prefix``, ``batch_lock_ttl_s``.
    storage : minio.Minio
    tracker : mlflow.MlflowClient
    dataset : str, default "telco"
    source : path, optional
        CSV of the scheduled (cron) cycle; default the shipped file (Telco only: retail needs one).
    cycle_kwargs : dict, optional
        Extra keyword arguments of ``run_cycle`` (``only``, ``announce``, ``margin``, ``quality_config``).
    owner : str, optional
        Lock owner name; default host, pid and a random suffix.
    run : callable, default :func:`batch.cycle.run_cycle`
    """

    def __init__(
        self,
        settings,
        storage,
        tracker,
        *,
        dataset: str = "telco",
        source: str | Path | None = None,
        cycle_kwargs: dict[str, Any] | None = None,
        owner: str | None = None,
        run: Callable[..., CycleResult] = run_cycle,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        get_profile(dataset)  # an unknown data set fails here, not at the first scheduled cycle
        if source is None and dataset not in DEFAULT_SOURCES:
            raise ValueError(f"source: data set {dataset!r} has no shipped file; pass the CSV of its scheduled cycle")
        self.settings = settings
        self.storage = storage
        self.tracker = tracker
        self.dataset = dataset
        self.source = source
        self.cycle_kwargs = dict(cycle_kwargs or {})
        self.prefix = settings.batch_incoming_prefix
        self.lock = S3Lock(storage, ttl_s=settings.batch_lock_ttl_s, owner=owner)
        self._run = run
        self._local = threading.Lock()  # also covers direct calls that bypass the scheduler
        self.outcomes: list[CycleOutcome] = []
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
        )
        self._stop = threading.Event()

    # ------------------------------------------------------------- scheduling
    def add_jobs(self) -> None:
        """The cron job and the incoming watcher (not started)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.add_job(
            self.run_scheduled,
            CronTrigger.from_crontab(self.settings.batch_cron, timezone=UTC),
            id="cycle-cron",
            name="scheduled cycle",
            replace_existing=True,
        )
        self.scheduler.add_job(
            self.poll_incoming,
            IntervalTrigger(seconds=self.settings.batch_watch_interval_s, timezone=UTC),
            id="incoming-watch",
            name="incoming watcher",
            replace_existing=True,
        )
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)

    def _on_event(self, event) -> None:
        """Log one scheduler event in the project's own words.

        Handles every event type: APScheduler sends a ``JobExecutionEvent`` (one
        ``scheduled_run_time``) for a missed or failed run but a ``JobSubmissionEvent``
        (a list, ``scheduled_run_times``) when a run is skipped because the previous one
        still runs, so neither attribute is assumed. A listener that raises makes
        APScheduler log "Error notifying listener" with a traceback on every tick.

        Parameters
        ----------
        event : apscheduler.events.SchedulerEvent
            Any event; those other than missed, skipped and failed runs are logged at debug.
        """
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        job_id = getattr(event, "job_id", None)
        times = getattr(event, "scheduled_run_times", None) or [getattr(event, "scheduled_run_time", None)]
        scheduled = ",".join(t.isoformat() if isinstance(t, datetime) else str(t) for t in times)
        if event.code == EVENT_JOB_MISSED:
            logger.warning(
                "misfire job=%s scheduled_at=%s missed by more than %d s; coalesced into the next run",
                job_id,
                scheduled,
                MISFIRE_GRACE_S,
            )
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            logger.warning("skipped job=%s scheduled_at=%s: its previous run is still going", job_id, scheduled)
        elif event.code == EVENT_JOB_ERROR:
            logger.error("job=%s failed: %r", job_id, getattr(event, "exception", None))
        else:
            logger.debug("scheduler event code=%s job=%s", event.code, job_id)

    def start(self) -> None:
        """Add the jobs and start the scheduler in the background."""
        self.add_jobs()
        self.scheduler.start()
        for job in self.scheduler.get_jobs():
            logger.info("scheduled job=%s next_run=%s trigger=%s", job.id, job.next_run_time, job.trigger)

    def trigger(self, reason: str = "manual") -> None:
        """Queue one cycle on the default source now, through the scheduler (same guards as cron)."""
        self.scheduler.add_job(
            self.run_scheduled, kwargs={"reason": reason}, id=f"cycle-{reason}", replace_existing=True
        )

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` a running cycle finishes first."""
        if self.scheduler.running:
            logger.info("scheduler stopping wait=%s", wait)
            self.scheduler.shutdown(wait=wait)
            logger.info("scheduler stopped")

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT, then stop after the running cycle (if any) finishes."""

        def _signal(signum, _frame) -> None:
            logger.info("signal=%s received: finishing the running cycle, then exiting", signal.Signals(signum).name)
            self._stop.set()

        previous = {s: signal.signal(s, _signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self._stop.wait(1.0):
                pass
        finally:
            self.shutdown(wait=True)
            for s, handler in previous.items():
                signal.signal(s, handler)

    # ------------------------------------------------------------------- jobs
    def run_scheduled(self, reason: str = "cron") -> CycleOutcome:
        """One cycle on the configured source, if no other cycle runs anywhere."""
        return self._exclusive(reason, lambda: self._cycle(reason, self.source, []))

    def poll_incoming(self) -> CycleOutcome | None:
        """One cycle on the CSVs under the incoming prefix, when there are any."""
        if not self._incoming():
            return None
        return self._exclusive("incoming", self._incoming_cycle)

    def _incoming(self) -> list[Any]:
        objects = {o.object_name: o for o in self.storage.list_objects("raw-data", prefix=self.prefix, recursive=True)}
        return [objects[k] for k in incoming_csv_keys(list(objects), self.prefix)]

    def _exclusive(self, reason: str, body: Callable[[], CycleOutcome]) -> CycleOutcome:
        if not self._local.acquire(blocking=False):
            return self._record(CycleOutcome(reason, "skipped", detail="a cycle is running in this process"))
        try:
            if not self.lock.acquire():
                held = self.lock.read()
                holder = held[0].get("owner") if held else "?"
                return self._record(CycleOutcome(reason, "skipped", detail=f"lock held by {holder}"))
            with self.lock.held():
                return self._record(body())
        finally:
            self._local.release()

    def _record(self, outcome: CycleOutcome) -> CycleOutcome:
        self.outcomes.append(outcome)
        log = logger.info if outcome.status in ("finished", "skipped") else logger.error
        log(
            "cycle outcome reason=%s status=%s cycle_id=%s %s",
            outcome.reason,
            outcome.status,
            outcome.cycle_id,
            outcome.detail,
        )
        return outcome

    def _cycle(self, reason: str, source: str | Path | None, keys: list[str]) -> CycleOutcome:
        try:
            result = self._run(
                self.settings, self.storage, self.tracker, dataset=self.dataset, source=source, **self.cycle_kwargs
            )
        except DataQualityError as err:
            return CycleOutcome(reason, "rejected", err.report.cycle_id, str(err), keys)
        except CycleError as err:
            return CycleOutcome(reason, "failed", None, str(err), keys)
        promoted = {k: (v["model"], v["model_version"], v["alias"]) for k, v in result.promoted.items()}
        return CycleOutcome(reason, "finished", result.cycle_id, f"promoted={promoted}", keys)

    def _incoming_cycle(self) -> CycleOutcome:
        objects = self._incoming()  # again, under the lock: another process may have taken them
        if not objects:
            return CycleOutcome("incoming", "skipped", detail="no new files")
        keys = [o.object_name for o in objects]
        parts = []
        for key in keys:
            resp = self.storage.get_object("raw-data", key)
            try:
                parts.append(resp.read())
            finally:
                resp.close()
                resp.release_conn()
        newest = max(o.last_modified for o in objects)
        logger.info("incoming files=%d newest=%s keys=%s", len(keys), newest.isoformat(), keys)
        with tempfile.TemporaryDirectory(prefix="churn-incoming-") as tmp:
            path = Path(tmp) / ("incoming.csv" if len(keys) > 1 else Path(keys[0]).name)
            path.write_bytes(parts[0] if len(parts) == 1 else concatenate_csvs(parts))
            # The gate's freshness check reads the file's mtime: make it the newest object's time.
            os.utime(path, (newest.timestamp(), newest.timestamp()))
            outcome = self._cycle("incoming", path, keys)
        if outcome.status in ("finished", "rejected"):
            self._archive(
                keys,
                "incoming-done" if outcome.status == "finished" else "incoming-rejected",
                outcome.cycle_id or "unknown",
            )
        return outcome

    def _archive(self, keys: list[str], folder: str, cycle_id: str) -> None:
        from minio.commonconfig import CopySource

        for key in keys:
            dest = f"{folder}/{cycle_id}/{key[len(self.prefix) :]}"
            self.storage.copy_object("raw-data", dest, CopySource("raw-data", key))
            self.storage.remove_object("raw-data", key)
            logger.info("moved s3://raw-data/%s to s3://raw-data/%s", key, dest)
