"""One batch cycle: ingest -> features -> quality gate -> train -> register -> promote -> announce.

``run_cycle(settings, storage, tracker)`` is a plain function: the CLI and the
scheduler call it the same way, and tests call it against real servers. Any dataset
profile trains, a shipped name or a profile file (``dataset``): its registered model
names come from its namespace (:class:`schemas.namespace.Namespace`), every version is
tagged with its ``dataset`` and ``contract_sha256``, and a profile without a value target
trains and registers the classifier only.

The stages live beside this module: :mod:`batch.cycle_input` (source, rows per class,
content hash, S3 objects), :mod:`batch.cycle_train` (tasks, training, registration,
promotion), :mod:`batch.run_log` (MLflow runs and artifacts) and :mod:`batch.cycle_report`
(the result and its summary).

A cycle's S3 data objects are keyed by the SHA-256 of its typed input
(:func:`input_sha256`), not by its cycle id: a re-run on the same input overwrites
them. With ``skip_unchanged`` a cycle on the same input and models as the last
accepted one (``processed-data/<dataset>/last_accepted.json``) trains and registers
nothing and says "unchanged input".
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from batch import quality
from batch.announce import publish_model_updated
from batch.cycle_input import (
    DEFAULT_SOURCES,
    LAST_ACCEPTED_KEY,
    UNCHANGED_INPUT,
    InsufficientRowsError,
    MissingSourceError,
    check_min_rows_per_class,
    class_counts,
    default_source,
    input_sha256,
    put_parquet,
    read_last_accepted,
    write_last_accepted,
)
from batch.cycle_report import NO_VALUE_TARGET, CycleResult, comparison_report
from batch.cycle_train import blas_threads, model_set, plan_cycle_tasks, promote_candidates, train_and_register
from batch.features import classification_data, with_derived
from batch.ingest import IngestError, read_source_csv, to_arrow
from batch.run_log import reference_profile, start_parent_run
from batch.training import VALIDATION_SHARE
from plumbing.progress import Progress
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile, get_profile
from schemas.registry import CHAMPION, COMPARISON_REPORT_PATH, CYCLE_SUMMARY_PATH

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SOURCES",
    "LAST_ACCEPTED_KEY",
    "NO_VALUE_TARGET",
    "UNCHANGED_INPUT",
    "CycleError",
    "CycleResult",
    "InsufficientRowsError",
    "MissingSourceError",
    "blas_threads",
    "check_min_rows_per_class",
    "class_counts",
    "comparison_report",
    "input_sha256",
    "reference_profile",
    "run_cycle",
    "unreachable_services",
]


class CycleError(RuntimeError):
    """A cycle failed because S3 or MLflow could not be reached; nothing of it was promoted.

    Attributes
    ----------
    service : str
        ``"S3"`` or ``"MLflow"``.
    endpoint : str
    stage : str
        The stage that was running (``ingest``, ``features``, ``quality``, ``train_classification``, ...).
    """

    def __init__(self, service: str, endpoint: str, stage: str, cause: BaseException) -> None:
        self.service, self.endpoint, self.stage = service, endpoint, stage
        super().__init__(f"{service} unreachable at {endpoint} during {stage}: {type(cause).__name__}: {cause}")


def unreachable_services(settings, timeout_s: float = 3.0) -> list[tuple[str, str]]:
    """``(service, endpoint)`` of S3 and MLflow when they do not answer HTTP within ``timeout_s``.

    Any HTTP answer, even an error status, counts as reachable: the question is whether the
    server is there, not whether the request was right.
    """
    down = []
    for service, url in (
        ("S3", settings.s3_endpoint_url),
        ("MLflow", settings.mlflow_tracking_uri.rstrip("/") + "/health"),
    ):
        try:
            urllib.request.urlopen(url, timeout=timeout_s).close()
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError):
            down.append((service, url.removesuffix("/health")))
    return down


def run_cycle(
    settings,
    storage,
    tracker,
    *,
    dataset: str | Path | DatasetProfile = "telco",
    source: str | Path | None = None,
    only: set[str] | None = None,
    announce: bool = True,
    margin: float = 0.0,
    quality_config: quality.QualityConfig | None = None,
    frame: pd.DataFrame | None = None,
    source_time: datetime | None = None,
    skip_unchanged: bool = False,
) -> CycleResult:
    """Run one batch cycle.

    Parameters
    ----------
    settings : plumbing.settings.Settings
    storage : minio.Minio
        S3 client (buckets ``raw-data``, ``processed-data`` are created when missing).
    tracker : mlflow.MlflowClient
    dataset : str or DatasetProfile, default "telco"
        A shipped profile's name, a path to a profile file, or a loaded profile.
    source : path, optional
        CSV to ingest; default: the shipped file for ``dataset`` (only telco ships one).
    only : set of str, optional
        Train only these zoo models.
    announce : bool, default True
        Publish a model-updated event when a new champion is promoted.
    margin : float, default 0.0
        ROC-AUC by which the best new model must beat the champion to replace it.
    quality_config : batch.quality.QualityConfig, optional
        Thresholds of the data-quality gate; default from ``settings``.
    frame : DataFrame, optional
        An input already read and validated by :func:`batch.ingest.read_source_csv` (the
        incoming watcher's accepted files); ``source`` then only names it in reports.
    source_time : datetime, optional
        Time of the input for the freshness check; default the source file's mtime.
    skip_unchanged : bool, default False
        Train nothing when the input (:func:`input_sha256`) and the model set equal the
        last accepted cycle's: the result has ``unchanged_since`` set and nothing is
        written to S3 or MLflow. ``churn batch serve`` sets it.

    Returns
    -------
    CycleResult

    Raises
    ------
    KeyError, schemas.profiles.ProfileError
        If ``dataset`` is neither a shipped name nor a valid profile file (nothing is written).
    MissingSourceError
        If neither ``source`` nor ``frame`` is given and the dataset ships no file.
    batch.quality.DataQualityError
        If the data-quality gate fails, including a source that does not match the
        profile (its report is in S3 and MLflow; nothing is trained or promoted).
    InsufficientRowsError
        If a class has fewer than ``settings.batch_min_rows_per_class`` rows (nothing is
        written).
    CycleError
        If S3 or MLflow cannot be reached during a stage (no alias moves).
    """
    profile = dataset if isinstance(dataset, DatasetProfile) else get_profile(dataset)
    src = default_source(profile.name, source) if frame is None else Path(source or "<frame>")
    # A bar (or a line every few seconds) naming the running stage; the models have their own.
    bar = Progress(f"{profile.name} cycle", 5 + (profile.regression_target is not None) + announce, unit="stage")
    progress = _Stages(bar)
    try:
        return _run_cycle(
            settings,
            storage,
            tracker,
            profile=profile,
            src=src,
            only=only,
            announce=announce,
            margin=margin,
            quality_config=quality_config,
            frame=frame,
            source_time=source_time,
            skip_unchanged=skip_unchanged,
            progress=progress,
        )
    except (quality.DataQualityError, CycleError, InsufficientRowsError):
        raise
    except Exception as exc:
        down = unreachable_services(settings)
        if not down:
            raise
        logger.error("cycle failed stage=%s unreachable=%s", progress["stage"], down)
        raise CycleError(down[0][0], down[0][1], progress["stage"], exc) from exc
    finally:
        bar.close()


class _Stages(dict[str, str]):
    """``progress["stage"]``, the running stage, also shown on the cycle's progress bar."""

    def __init__(self, bar: Progress) -> None:
        super().__init__(stage="start")
        self._bar = bar

    def __setitem__(self, key: str, value: str) -> None:
        if key == "stage" and self.get("stage") not in ("start", value):
            self._bar.update()  # the previous stage is done
        super().__setitem__(key, value)
        if key == "stage":
            self._bar.set_postfix(value)


def _run_cycle(
    settings,
    storage,
    tracker,
    *,
    profile: DatasetProfile,
    src: Path,
    only: set[str] | None,
    announce: bool,
    margin: float,
    quality_config: quality.QualityConfig | None,
    frame: pd.DataFrame | None,
    source_time: datetime | None,
    skip_unchanged: bool,
    progress: dict[str, str],
) -> CycleResult:
    from plumbing.clients import ensure_buckets

    dataset = profile.name
    cycle_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    timings: dict[str, float] = {}
    dq_config = quality_config or quality.QualityConfig.from_settings(settings)
    if source_time is None and src.exists():
        source_time = datetime.fromtimestamp(src.stat().st_mtime, UTC)
    gate: dict[str, Any] = dict(
        profile=profile, cycle_id=cycle_id, source=src.name, source_time=source_time, config=dq_config
    )

    t0 = time.perf_counter()
    progress["stage"] = "ingest"
    if frame is None:
        try:
            frame = read_source_csv(src, profile)
        except IngestError as exc:
            # The schema check's verdict: the report goes to S3 and MLflow like any other gate failure.
            ensure_buckets(storage)
            _, parent_id = start_parent_run(tracker, profile, cycle_id)
            try:
                quality.gate(storage, tracker, parent_id, None, schema_error=exc, **gate)
            finally:
                tracker.set_terminated(parent_id, "FAILED")
            raise AssertionError("unreachable: the gate raises on a schema error") from exc
    counts = check_min_rows_per_class(frame, profile.classification_target, settings.batch_min_rows_per_class)
    digest = input_sha256(frame)
    models = model_set(profile, only)
    if skip_unchanged:
        last = read_last_accepted(storage, dataset)
        if last and last.get("input_sha256") == digest and last.get("models") == models:
            logger.info(
                "cycle skipped: %s cycle_id=%s sha256=%s same as cycle_id=%s; nothing registered",
                UNCHANGED_INPUT,
                cycle_id,
                digest[:16],
                last.get("cycle_id"),
            )
            return CycleResult(
                cycle_id,
                dataset,
                len(frame),
                input_sha256=digest,
                unchanged_since=str(last.get("cycle_id")),
                timings_s={"ingest": time.perf_counter() - t0},
                contract_sha256=profile.digest,
                value_target=profile.regression_target,
            )
    logger.info("input rows=%d per_class=%s sha256=%s", len(frame), counts, digest[:16])
    ensure_buckets(storage)
    # Keyed by content, not by cycle: a re-run on the same input overwrites its objects.
    data_key = f"{dataset}/{digest[:16]}"
    raw_uri = put_parquet(storage, "raw-data", f"{data_key}/customers.parquet", to_arrow(frame, profile))
    # Derived features (retail's ratios, ...) stay in the frame: the champion is re-scored on its rows.
    frame = with_derived(frame, profile)
    timings["ingest"] = time.perf_counter() - t0
    logger.info("ingested rows=%d to %s", len(frame), raw_uri)

    t0 = time.perf_counter()
    progress["stage"] = "features"
    data = classification_data(frame, profile)
    processed = pa.table(
        {name: data.X_train[:, j] for j, name in enumerate(data.feature_names)}
        | {profile.classification_target: data.y_train}
    )
    processed_uri = put_parquet(storage, "processed-data", f"{data_key}/classification_train.parquet", processed)
    del processed
    tasks, cls_plan = plan_cycle_tasks(frame, profile, data, settings, only)
    timings["features"] = time.perf_counter() - t0
    if profile.regression_target is None:
        logger.info("dataset=%s has %s: training and registering the classifier only", dataset, NO_VALUE_TARGET)

    experiment_id, parent_id = start_parent_run(tracker, profile, cycle_id)
    result = CycleResult(
        cycle_id,
        dataset,
        len(frame),
        input_sha256=digest,
        raw_uri=raw_uri,
        processed_uri=processed_uri,
        contract_sha256=profile.digest,
        value_target=profile.regression_target,
    )
    status = "FAILED"
    try:
        tracker.log_param(parent_id, "source", str(src.name))
        tracker.log_param(parent_id, "raw_uri", raw_uri)
        tracker.log_param(parent_id, "processed_uri", processed_uri)
        tracker.set_tag(parent_id, "input_sha256", digest)
        # How this cycle scaled its training, so the run says what it did.
        for key, value in {
            "rows": len(frame),
            "train_rows": int(data.y_train.shape[0]),
            "value_target": profile.regression_target or NO_VALUE_TARGET,
            "threshold_method": cls_plan.threshold_method,
            "validation_share": VALIDATION_SHARE if cls_plan.X_val is not None else 0.0,
            "batch_oof_max_rows": settings.batch_oof_max_rows,
            "batch_sample_max_rows": settings.batch_sample_max_rows,
            "batch_poly_max_rows": settings.batch_poly_max_rows,
            "batch_fit_max_rows": settings.batch_fit_max_rows,
            "batch_ensemble_max_rows": settings.batch_ensemble_max_rows,
            "batch_blas_threads": settings.batch_blas_threads,
        }.items():
            tracker.log_param(parent_id, key, value)
        t0 = time.perf_counter()
        progress["stage"] = "quality"
        result.quality = quality.gate(storage, tracker, parent_id, frame, raw_key=raw_uri.split("/", 3)[3], **gate)
        timings["quality"] = time.perf_counter() - t0
        frame = None  # the tasks hold the hold-out rows; the featurised matrices are all training needs
        with blas_threads(settings.batch_blas_threads):
            candidates = train_and_register(
                tracker,
                tasks,
                profile=profile,
                experiment_id=experiment_id,
                parent_id=parent_id,
                cycle_id=cycle_id,
                models=result.models,
                timings=timings,
                progress=progress,
            )
            # Aliases move only once every model of every task is trained, logged and
            # verified: a failure anywhere above leaves every champion as it was.
            t0 = time.perf_counter()
            progress["stage"] = "promote"
            result.promoted = promote_candidates(tracker, candidates, settings, margin)
            timings["promote"] = time.perf_counter() - t0
        if not result.promoted:
            raise ValueError(f"no model trained (only={only})")
        result.registered = result.promoted.get(Namespace.for_dataset(dataset).classifier_name, {})
        result.report = comparison_report(result.models, profile.regression_target)
        tracker.log_dict(parent_id, result.summary(), CYCLE_SUMMARY_PATH)
        tracker.log_text(parent_id, result.report, COMPARISON_REPORT_PATH)
        for promoted in result.promoted.values():
            if announce and promoted["alias"] == CHAMPION:
                t0 = time.perf_counter()
                progress["stage"] = "announce"
                publish_model_updated(settings, promoted, Namespace.for_dataset(dataset).model_updated)
                result.announced = True
                timings["announce"] = timings.get("announce", 0.0) + time.perf_counter() - t0
        # Accepted: the next cycle with skip_unchanged compares its input with this one.
        write_last_accepted(storage, dataset, digest, models, cycle_id)
        status = "FINISHED"
    finally:
        # With MLflow gone, marking the run would only wait out the client's retries.
        if status == "FINISHED" or not any(s == "MLflow" for s, _ in unreachable_services(settings)):
            tracker.set_terminated(parent_id, status)
    result.timings_s = timings
    logger.info(
        "cycle done cycle_id=%s dataset=%s champions=%s challengers=%s",
        cycle_id,
        dataset,
        {k: (v["model"], v["model_version"]) for k, v in result.promoted.items() if v["alias"] == CHAMPION},
        {k: (v["model"], v["model_version"]) for k, v in result.promoted.items() if v["alias"] != CHAMPION},
    )
    return result
