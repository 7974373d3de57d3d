"""``churn batch serve``: the scheduled batch cycle, plus a watcher for new CSVs in S3.

Two APScheduler 3 jobs share one single-thread executor: a cron job
(``CHURN_BATCH_CRON``, UTC) runs a cycle on the configured source, and a watcher
(every ``CHURN_BATCH_WATCH_S`` seconds) runs one on the CSVs that landed under
``s3://raw-data/<CHURN_BATCH_INCOMING_PREFIX>``, each file judged on its own
(:mod:`batch.landing`). Never two cycles at once: within a process each job has
``max_instances=1`` and ``coalesce=True`` and the executor has one thread; across
processes every cycle runs under :class:`batch.lock.S3Lock`. Accepted files move to
``incoming-done/<cycle_id>/``, files the data-quality gate rejects to
``incoming-rejected/<cycle_id>/``, bad files to ``incoming-quarantine/``; after an
S3 or MLflow outage (:class:`batch.cycle.CycleError`) they stay and are retried.
Cycles skip an input identical to the last accepted one ("unchanged input").

**Each cycle runs in a child process** (``multiprocessing`` "spawn"), and
``CHURN_BATCH_CYCLE_TIMEOUT_S`` cuts it off: the scheduler thread waits for the
child's outcome until the deadline, then kills the child, reports the cycle
``failed`` and releases the S3 lock, so the next tick runs. A thread cannot be
stopped from outside, and a deadline checked between stages cannot end a stage that
hangs (an S3 read without a timeout, a fit that never converges); a killed process
leaves no half-held state in this one. Aliases move only at the end of a cycle, so a
cycle killed before promotion changes no champion; its MLflow run stays ``RUNNING``.
The child builds its own S3 and MLflow clients from the same settings (clients do
not cross processes) and sends its log records and outcome back over a queue. It
ignores SIGINT: SIGTERM or SIGINT stops the scheduler and lets a running cycle finish.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch import landing
from batch.cycle import CycleError, CycleResult, InsufficientRowsError, run_cycle
from batch.cycle_input import default_source
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
        ``finished``, ``unchanged`` (input identical to the last accepted one: nothing
        registered), ``rejected`` (data-quality gate, too few rows per class on the scheduled
        source, or every incoming file quarantined), ``failed`` (S3/MLflow outage, timeout,
        a crash), ``skipped`` (another process holds the lock, nothing new arrived, or the
        incoming files have too few rows per class yet: they wait for more).
    cycle_id : str or None
    detail : str
    sources : list of str
        Incoming keys the cycle ingested.
    quarantined : list of dict
        Incoming files quarantined by this look: ``source``, ``reason``, ``row``, ``key``.
    input_sha256 : str
        Content hash of the input (names its data objects in S3); empty when not read.
    """

    reason: str
    status: str
    cycle_id: str | None = None
    detail: str = ""
    sources: list[str] = field(default_factory=list)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    input_sha256: str = ""


@dataclass(frozen=True)
class CycleJob:
    """What a cycle's child process needs; picklable (``run`` must be a module-level function).

    Attributes
    ----------
    reason : str
    settings : plumbing.settings.Settings
    dataset : str
    source : path or None
        The scheduled cycle's CSV; ignored when ``incoming``.
    incoming : bool
        Run on the files under the incoming prefix instead of ``source``.
    cycle_kwargs : dict
    run : callable
    log_level : int
        Least level of the records the child sends back.
    """

    reason: str
    settings: Any
    dataset: str
    source: str | Path | None
    incoming: bool
    cycle_kwargs: dict[str, Any]
    run: Callable[..., CycleResult]
    log_level: int = logging.INFO


class _QueueLog(logging.handlers.QueueHandler):
    """Sends the child's log records to the parent, tagged apart from the outcome."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(("log", record))


def _child_main(channel, job: CycleJob) -> None:
    """Entry point of a cycle's child process: run it, send back its :class:`CycleOutcome`."""
    from plumbing.clients import make_storage, make_tracker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    root = logging.getLogger()
    root.handlers[:] = [_QueueLog(channel)]
    root.setLevel(job.log_level)
    try:
        storage, tracker = make_storage(job.settings), make_tracker(job.settings)
        outcome = (incoming_cycle if job.incoming else scheduled_cycle)(job, storage, tracker)
    except Exception as exc:  # a bug or an unexpected failure: report it, with its traceback in the log
        logger.exception("cycle crashed reason=%s", job.reason)
        outcome = CycleOutcome(job.reason, "failed", detail=f"{type(exc).__name__}: {exc}")
    channel.put(("outcome", outcome))


def _run_cycle_job(job: CycleJob, storage, tracker, source, **extra: Any) -> tuple[CycleOutcome, CycleResult | None]:
    kwargs = {"skip_unchanged": True, **job.cycle_kwargs, **extra}
    try:
        result = job.run(job.settings, storage, tracker, dataset=job.dataset, source=source, **kwargs)
    except DataQualityError as err:
        return CycleOutcome(job.reason, "rejected", err.report.cycle_id, str(err)), None
    except InsufficientRowsError as err:
        return CycleOutcome(job.reason, "rejected", None, str(err)), None
    except CycleError as err:
        return CycleOutcome(job.reason, "failed", None, str(err)), None
    if result.unchanged_since:
        detail = f"unchanged input: same as cycle {result.unchanged_since}; nothing registered"
        return CycleOutcome(job.reason, "unchanged", result.cycle_id, detail, input_sha256=result.input_sha256), result
    promoted = {k: (v["model"], v["model_version"], v["alias"]) for k, v in result.promoted.items()}
    held = {k: v["promotion_rules"] for k, v in result.promoted.items() if "promotion_rules" in v}
    detail = f"promoted={promoted}" + (f" held_by={held}" if held else "")
    return CycleOutcome(job.reason, "finished", result.cycle_id, detail, input_sha256=result.input_sha256), result


def scheduled_cycle(job: CycleJob, storage, tracker) -> CycleOutcome:
    """One cycle on ``job.source`` (the cron and manual jobs' body, run in the child).

    Parameters
    ----------
    job : CycleJob
    storage : minio.Minio
    tracker : mlflow.MlflowClient

    Returns
    -------
    CycleOutcome
    """
    return _run_cycle_job(job, storage, tracker, job.source)[0]


def incoming_cycle(job: CycleJob, storage, tracker) -> CycleOutcome:
    """One cycle on the files under the incoming prefix, each judged on its own (run in the child).

    Bad files are quarantined (:func:`batch.landing.screen_incoming`); the accepted ones
    are trained on together. When they hold fewer than ``CHURN_BATCH_MIN_ROWS_PER_CLASS``
    rows of a class, they stay where they are, waiting for more files (``skipped``).

    Parameters
    ----------
    job : CycleJob
    storage : minio.Minio
    tracker : mlflow.MlflowClient

    Returns
    -------
    CycleOutcome
    """
    prefix = job.settings.batch_incoming_prefix
    objects = landing.list_incoming(storage, prefix)  # again, under the lock: another process may have taken them
    if not objects:
        return CycleOutcome(job.reason, "skipped", detail="no new files")
    screened = landing.screen_incoming(storage, objects, get_profile(job.dataset), prefix)
    quarantined = [q.to_dict() for q in screened.quarantined]
    if screened.frame is None:
        detail = f"every incoming file quarantined: {[(q.source, q.reason) for q in screened.quarantined]}"
        return CycleOutcome(job.reason, "rejected", None, detail, quarantined=quarantined)
    names = ", ".join(Path(k).name for k in screened.accepted)
    outcome, _ = _run_cycle_job(
        job, storage, tracker, f"incoming: {names}", frame=screened.frame, source_time=screened.newest
    )
    outcome.sources, outcome.quarantined = list(screened.accepted), quarantined
    if outcome.status == "rejected" and outcome.cycle_id is None:  # too few rows per class: wait for more
        outcome.status, outcome.detail = "skipped", f"waiting for more rows: {outcome.detail}"
    elif outcome.status in ("finished", "unchanged", "rejected"):
        folder = "incoming-rejected" if outcome.status == "rejected" else "incoming-done"
        landing.archive(storage, screened.accepted, folder, outcome.cycle_id or "unknown", prefix)
    return outcome


class BatchService:
    """The scheduler around :func:`batch.cycle.run_cycle`.

    Parameters
    ----------
    settings : plumbing.settings.Settings
        ``batch_cron``, ``batch_watch_interval_s``, ``batch_incoming_prefix``, ``batch_lock_ttl_s``.
    storage : minio.Minio
    tracker : mlflow.MlflowClient
    dataset : str, default "telco"
        A shipped profile's name or a profile file's path.
    source : path, optional
        CSV of the scheduled (cron) cycle; default the shipped file (Telco only: other datasets need one).
    cycle_kwargs : dict, optional
        Extra keyword arguments of ``run_cycle`` (``only``, ``announce``, ``margin``, ``quality_config``,
        ``skip_unchanged``: default True here).
    owner : str, optional
        Lock owner name; default host, pid and a random suffix.
    run : callable, default :func:`batch.cycle.run_cycle`
        Called in the cycle's child process, so a module-level function.

    Notes
    -----
    ``storage`` serves the lock and the watcher's look for new files in this process;
    the cycle's child builds its own clients from ``settings``.
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

        # An unknown data set, or one without a source, fails here, not at the first scheduled cycle.
        default_source(get_profile(dataset).name, source)
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
        self._waiting: frozenset[tuple[str, str]] | None = None  # incoming files short of rows, as last seen

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
        return self._exclusive(reason, lambda: self._in_child(self._job(reason, incoming=False)))

    def poll_incoming(self) -> CycleOutcome | None:
        """One cycle on the CSVs under the incoming prefix, when there are new ones.

        Files that were too few rows per class at the last look, and have not changed
        since, are not looked at again until another file arrives.
        """
        objects = landing.list_incoming(self.storage, self.prefix)
        seen = frozenset((o.object_name, o.etag or "") for o in objects)
        if not objects or seen == self._waiting:
            return None
        outcome = self._exclusive("incoming", lambda: self._in_child(self._job("incoming", incoming=True)))
        waiting = outcome.status == "skipped" and outcome.detail.startswith("waiting for more rows")
        self._waiting = frozenset((k, e) for k, e in seen if k in outcome.sources) if waiting else None
        return outcome

    def _job(self, reason: str, *, incoming: bool) -> CycleJob:
        return CycleJob(
            reason=reason,
            settings=self.settings,
            dataset=self.dataset,
            source=self.source,
            incoming=incoming,
            cycle_kwargs=self.cycle_kwargs,
            run=self._run,
            log_level=min(logging.INFO, logging.getLogger().getEffectiveLevel()),
        )

    def _in_child(self, job: CycleJob) -> CycleOutcome:
        """Run ``job`` in a child process; kill it after ``batch_cycle_timeout_s`` (0: no limit)."""
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with scheduler and lock threads
        channel = ctx.Queue()
        proc = ctx.Process(target=_child_main, args=(channel, job), name=f"churn-cycle-{job.reason}")
        timeout_s = float(self.settings.batch_cycle_timeout_s)
        proc.start()
        logger.info("cycle started reason=%s pid=%s timeout_s=%g", job.reason, proc.pid, timeout_s)
        deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
        outcome: CycleOutcome | None = None
        try:
            while outcome is None:
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    outcome = self._receive(channel, wait)
                except queue.Empty:
                    if not proc.is_alive():
                        outcome = self._drain(channel)
                        break
            if outcome is None and proc.is_alive():
                proc.kill()  # SIGKILL: a hung stage may be in C code that a SIGTERM handler never reaches
                proc.join(30)
                return CycleOutcome(
                    job.reason,
                    "failed",
                    detail=f"timed out after {timeout_s:g} s (CHURN_BATCH_CYCLE_TIMEOUT_S): cycle process "
                    f"pid={proc.pid} killed; no alias moved unless it was promoting",
                )
            if outcome is None:
                proc.join(30)
                return CycleOutcome(
                    job.reason, "failed", detail=f"cycle process exited with code {proc.exitcode} and no outcome"
                )
            proc.join(30)
            self._drain(channel)
            return outcome
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join(30)
            channel.close()
            channel.cancel_join_thread()

    @staticmethod
    def _receive(channel, wait: float) -> CycleOutcome | None:
        kind, payload = channel.get(timeout=wait)
        if kind == "outcome":
            return payload
        record: logging.LogRecord = payload
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
        return None

    def _drain(self, channel) -> CycleOutcome | None:
        outcome = None
        while True:
            try:
                outcome = self._receive(channel, 0.2) or outcome
            except (queue.Empty, EOFError, OSError):
                return outcome

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
        log = logger.info if outcome.status in ("finished", "unchanged", "skipped") else logger.error
        log(
            "cycle outcome reason=%s status=%s cycle_id=%s quarantined=%d %s",
            outcome.reason,
            outcome.status,
            outcome.cycle_id,
            len(outcome.quarantined),
            outcome.detail,
        )
        return outcome
