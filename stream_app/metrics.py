"""The worker's operational state: Prometheus metrics, consumer lag and the health verdict.

Metrics live in one ``CollectorRegistry`` per worker app (never the process-global one,
so several apps in one process, e.g. tests, do not collide) and are rendered in the
Prometheus text format by :meth:`WorkerMetrics.render` for ``GET /metrics``.

Everything here is recorded **per micro-batch**, never per event: counters are
incremented by batch totals and the histograms fed with whole arrays (numpy
``searchsorted`` + ``bincount`` into fixed buckets), so the hot loop pays a few
microseconds per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: Content type of :meth:`WorkerMetrics.render`'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
SCORING_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: The worker's stages, in hot-loop order: the labels of ``churn_worker_stage_seconds_total``.
#: ``fetch`` is ``consume`` and the records' coordinates; ``decode`` to ``encode`` are
#: :data:`stream_app.scoring.STAGES`; ``produce`` queues the outputs and serves delivery
#: reports; ``commit`` books acknowledged batches, commits their offsets and records
#: these metrics, the drift window and shadow scores.
WORKER_STAGES = ("fetch", "decode", "validate", "featurise", "predict", "reasons", "encode", "produce", "commit")
END_TO_END_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class BulkHistogram(Collector):
    """A Prometheus histogram fed with arrays: one ``observe_many`` per batch, not one call per value.

    Parameters
    ----------
    name, documentation : str
    buckets : sequence of float
        Upper bounds, increasing; ``+Inf`` is implicit.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()  # the scrape may run in another thread than the loop

    def observe_many(self, values: np.ndarray | Sequence[float] | float) -> None:
        """Count every value (NaN values are ignored)."""
        x = np.atleast_1d(np.asarray(values, dtype=np.float64))
        x = x[~np.isnan(x)]
        if not len(x):
            return
        # Prometheus buckets are "le": a value equal to a bound belongs to that bound's bucket.
        counts = np.bincount(np.searchsorted(self.bounds, x, side="left"), minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(x.sum())

    @property
    def count(self) -> int:
        """Values observed so far."""
        return int(self._counts.sum())

    def collect(self) -> Iterable[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        labels = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets=list(zip(labels, cumulative)), sum_value=total)
        yield family


def event_time_seconds(event_times: Sequence[str]) -> np.ndarray:
    """Unix seconds of UTC ISO 8601 timestamps as written by the scorer (``...+00:00``), float64."""
    if not event_times:
        return np.empty(0)
    stamps = np.array([t[:-6] if t.endswith("+00:00") else t.rstrip("Z") for t in event_times], dtype="datetime64[us]")
    return stamps.astype(np.int64) / 1e6


class WorkerMetrics:
    """Every metric of one scoring worker, in its own registry.

    Attributes
    ----------
    registry : prometheus_client.CollectorRegistry
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events_in = Counter("churn_events_in", "Customer events consumed.", registry=r)
        self.events_out = Counter(
            "churn_events_out", "Records produced and acknowledged, by output.", ["output"], registry=r
        )
        self.scores = Counter("churn_scores", "Customer events scored.", registry=r)
        self.alerts = Counter("churn_alerts", "Churn alerts produced.", registry=r)
        self.dead_letters = Counter(
            "churn_dead_letters", "Dead letters produced, by failing stage.", ["stage"], registry=r
        )
        self.batches = Counter(
            "churn_batches", "Micro-batches completed (outputs acknowledged, offsets committed).", registry=r
        )
        self.batch_size = BulkHistogram("churn_batch_size_events", "Events per micro-batch.", BATCH_SIZE_BUCKETS)
        self.scoring_seconds = BulkHistogram(
            "churn_scoring_seconds", "Seconds score_batch took per micro-batch.", SCORING_SECONDS_BUCKETS
        )
        self.end_to_end_seconds = BulkHistogram(
            "churn_end_to_end_latency_seconds",
            "Seconds from a scored event's event_time to the broker's acknowledgement of its score.",
            END_TO_END_SECONDS_BUCKETS,
        )
        for h in (self.batch_size, self.scoring_seconds, self.end_to_end_seconds):
            r.register(h)
        self.consumer_lag = Gauge(
            "churn_consumer_lag", "Events not yet committed, per input partition.", ["topic", "partition"], registry=r
        )
        self.model_version = Gauge(
            "churn_model_version",
            "Version of the model in service, per model name and role.",
            ["model_name", "role"],
            registry=r,
        )
        self.reloads = Counter(
            "churn_model_reloads", "Hot reloads of announced models, by result.", ["result"], registry=r
        )
        self.feature_psi = Gauge(
            "churn_feature_psi", "PSI of each input feature over the drift window.", ["feature"], registry=r
        )
        self.drift_window = Gauge("churn_drift_window_events", "Events in the drift window.", registry=r)
        self.drift_alert = Gauge("churn_drift_alert", "1 when any feature's PSI exceeds the threshold.", registry=r)
        self.shadow_agreement = Gauge(
            "churn_shadow_agreement",
            "Share of events a shadow model labels like the champion (last batch).",
            ["model_name", "model_version"],
            registry=r,
        )
        self.shadow_mean_score = Gauge(
            "churn_shadow_mean_score",
            "Mean churn probability of the last batch, by role.",
            ["model_name", "model_version", "role"],
            registry=r,
        )
        self.shadow_events = Counter("churn_shadow_events", "Events scored in shadow.", ["model_name"], registry=r)
        self.alerts_suppressed = Counter(
            "churn_alerts_suppressed",
            "Alerts not emitted because their event was alerted on already "
            "(re-scored after a crash, or a re-sent event).",
            registry=r,
        )
        self.alert_recoveries = Counter(
            "churn_alert_ledger_recoveries",
            "Alert ledger read-backs of churn-alerts at partition assignment.",
            registry=r,
        )
        self.alert_recovery_alerts = Gauge(
            "churn_alert_ledger_recovery_alerts", "Alerts read back by the last ledger recovery.", registry=r
        )
        self.alert_recovery_seconds = Gauge(
            "churn_alert_ledger_recovery_seconds", "Seconds the last ledger recovery took.", registry=r
        )
        self.refusals = Counter(
            "churn_model_refusals",
            "Announced or registered models not served, by reason: contract (trained on another data set "
            "contract), features, sha256, error.",
            ["reason"],
            registry=r,
        )
        self.announcements_refused = Counter(
            "churn_model_announcements_refused",
            "model-updated announcements not followed because the registry did not confirm them, by reason: "
            "not_registry_version (the alias names another version), older (the same, and older than the one "
            "in service), no_alias, registry_unreachable (checked again a few seconds later).",
            ["reason"],
            registry=r,
        )
        self.unknown_categories = Counter(
            "churn_unknown_categories",
            "Scored events whose category (after the profile's text normalisation) the model never saw in "
            "training, per field.",
            ["field"],
            registry=r,
        )
        self.stage_seconds = Counter(
            "churn_worker_stage_seconds",
            "Seconds the hot loop spent in each stage (divide by churn_events_in_total for the cost per event).",
            ["stage"],
            registry=r,
        )
        self._stage_children = {stage: self.stage_seconds.labels(stage) for stage in WORKER_STAGES}
        for output in ("scores", "alerts", "dead_letters"):
            self.events_out.labels(output)
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        for reason in ("contract", "features", "sha256", "error"):
            self.refusals.labels(reason)
        for reason in ("not_registry_version", "older", "no_alias", "registry_unreachable"):
            self.announcements_refused.labels(reason)
        self._reloads_seen = {"ok": 0, "failed": 0}
        self._refusals_seen: dict[str, int] = {}
        self._announcement_refusals_seen: dict[str, int] = {}

    def record_batch(self, n_in: int, result, scoring_s: float, acked_at: float) -> None:
        """Count one completed micro-batch.

        Parameters
        ----------
        n_in : int
            Records consumed.
        result : stream_app.scoring.BatchResult
        scoring_s : float
            Seconds ``score_batch`` took.
        acked_at : float
            Unix time at which the broker had acknowledged every output.
        """
        self.events_in.inc(n_in)
        self.batches.inc()
        n_scores, n_alerts, n_dead = len(result.scores), len(result.alerts), len(result.dead_letters)
        self.scores.inc(n_scores)
        self.alerts.inc(n_alerts)
        self.events_out.labels("scores").inc(n_scores)
        self.events_out.labels("alerts").inc(n_alerts)
        self.events_out.labels("dead_letters").inc(n_dead)
        if result.failures:
            by_stage: dict[str, int] = {}
            for f in result.failures:
                by_stage[f.stage] = by_stage.get(f.stage, 0) + 1
            for stage, n in by_stage.items():
                self.dead_letters.labels(stage).inc(n)
        for name, n in getattr(result, "unknown_counts", {}).items():
            self.unknown_categories.labels(name).inc(n)
        self.batch_size.observe_many(float(n_in))
        self.scoring_seconds.observe_many(scoring_s)
        if result.event_times:
            self.end_to_end_seconds.observe_many(acked_at - event_time_seconds(result.event_times))

    def record_stages(self, seconds: Mapping[str, float]) -> None:
        """Add the seconds spent per stage (keys among :data:`WORKER_STAGES`) to ``churn_worker_stage_seconds_total``.

        Raises
        ------
        KeyError
            A key is not one of :data:`WORKER_STAGES`.
        """
        children = self._stage_children
        for stage, s in seconds.items():
            if s:
                children[stage].inc(s)

    def record_alert_recovery(self, alerts_read: int, seconds: float) -> None:
        """One alert ledger recovery at partition assignment (see :mod:`stream_app.alert_ledger`)."""
        self.alert_recoveries.inc()
        self.alert_recovery_alerts.set(alerts_read)
        self.alert_recovery_seconds.set(seconds)

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Replace the per-partition lag gauges (partitions no longer assigned disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)

    def sync_store(self, store) -> None:
        """Model versions in service and the store's reload counters (deltas since the last call)."""
        for role, model in (
            ("champion", store.current),
            ("value", getattr(store, "value_model", None)),
            ("challenger", getattr(store, "challenger", None)),
        ):
            if model is not None:
                try:
                    version = float(model.model_version)
                except ValueError:
                    version = float("nan")
                self.model_version.labels(model.model_name, role).set(version)
        for result, total in (("ok", store.reloads_ok), ("failed", store.reloads_failed)):
            delta = total - self._reloads_seen[result]
            if delta > 0:
                self.reloads.labels(result).inc(delta)
                self._reloads_seen[result] = total
        for reason, total in (getattr(store, "refusals", None) or {}).items():
            delta = total - self._refusals_seen.get(reason, 0)
            if delta > 0:
                self.refusals.labels(reason).inc(delta)
                self._refusals_seen[reason] = total
        for reason, total in (getattr(store, "announcements_refused", None) or {}).items():
            delta = total - self._announcement_refusals_seen.get(reason, 0)
            if delta > 0:
                self.announcements_refused.labels(reason).inc(delta)
                self._announcement_refusals_seen[reason] = total

    def set_drift(self, psi_by_feature: Mapping[str, float], window_size: int, threshold: float) -> None:
        """PSI gauges of the latest drift evaluation."""
        for feature, value in psi_by_feature.items():
            self.feature_psi.labels(feature).set(value)
        self.drift_window.set(window_size)
        self.drift_alert.set(1.0 if any(v > threshold for v in psi_by_feature.values()) else 0.0)

    def record_shadow(self, champion, champion_proba: np.ndarray, shadow, shadow_proba: np.ndarray) -> None:
        """Agreement (share of equal labels) and mean scores of a shadow model on one micro-batch."""
        if not len(champion_proba):
            return
        same = (champion_proba >= champion.threshold) == (shadow_proba >= shadow.threshold)
        self.shadow_agreement.labels(shadow.model_name, shadow.model_version).set(float(same.mean()))
        self.shadow_mean_score.labels(champion.model_name, champion.model_version, "champion").set(
            float(champion_proba.mean())
        )
        self.shadow_mean_score.labels(shadow.model_name, shadow.model_version, "challenger").set(
            float(shadow_proba.mean())
        )
        self.shadow_events.labels(shadow.model_name).inc(len(shadow_proba))

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


# ------------------------------------------------------------------- health
@dataclass
class HealthVerdict:
    """What ``/health`` answers: HTTP status, ``ok``/``starting``/``stalled``/``broker_unreachable`` and why."""

    status_code: int
    status: str
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.status_code == 200


@dataclass
class StallDetector:
    """Decides whether the consumer has stopped making progress while work is waiting.

    ``stalled`` means: lag > 0 has been observed continuously for more than ``stall_s``
    seconds *and* no micro-batch has completed in the last ``stall_s`` seconds. Counting
    from when the lag appeared keeps a worker that was idle for an hour from looking
    stalled in the second between new events arriving and its next batch completing.

    ``broker_unreachable`` means: every lag reading for more than ``stall_s`` seconds
    failed. With the broker gone the lag cannot be measured at all, so without this a
    worker kept answering ``ok`` on its last reading for the whole outage.

    Parameters
    ----------
    stall_s : float, default 15
    clock : callable, default time.monotonic
        Injectable for tests.
    """

    stall_s: float = 15.0
    clock: object = time.monotonic
    lag_since: float | None = None
    last_progress: float | None = None
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    lag_failing_since: float | None = None
    lag_error: str | None = None

    def observe_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Record a fresh per-partition lag reading."""
        self.lag_failing_since = self.lag_error = None
        self.lag = dict(lag)
        if sum(lag.values()) > 0:
            if self.lag_since is None:
                self.lag_since = self.clock()  # type: ignore[operator]
        else:
            self.lag_since = None

    def lag_unreadable(self, error: str) -> None:
        """A lag reading failed (broker unreachable or not answering); ``error`` says how."""
        if self.lag_failing_since is None:
            self.lag_failing_since = self.clock()  # type: ignore[operator]
        self.lag_error = error

    def progressed(self) -> None:
        """A micro-batch completed (outputs acknowledged, offsets committed)."""
        self.last_progress = self.clock()  # type: ignore[operator]

    def evaluate(self, *, model_loaded: bool, assigned_partitions: int) -> HealthVerdict:
        """The health verdict now."""
        # Whatever the assignment: librdkafka gives the partitions up once the group
        # coordinator is unreachable for a session timeout.
        if self.lag_failing_since is not None:
            failing = self.clock() - self.lag_failing_since  # type: ignore[operator]
            if failing > self.stall_s:
                return HealthVerdict(
                    503,
                    "broker_unreachable",
                    f"consumer lag unreadable for {failing:.0f} s (limit {self.stall_s:g} s): {self.lag_error}",
                )
        if not model_loaded:
            return HealthVerdict(503, "starting", "no model loaded")
        if assigned_partitions <= 0:
            return HealthVerdict(503, "starting", "no partitions assigned")
        total = sum(self.lag.values())
        if total > 0 and self.lag_since is not None:
            now = self.clock()  # type: ignore[operator]
            waiting = now - max(self.lag_since, self.last_progress if self.last_progress is not None else -np.inf)
            if waiting > self.stall_s:
                return HealthVerdict(
                    503,
                    "stalled",
                    f"lag {total} events and no micro-batch completed for {waiting:.0f} s (limit {self.stall_s:g} s)",
                )
        return HealthVerdict(200, "ok")
