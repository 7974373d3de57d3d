"""One batch cycle: ingest -> features -> train -> evaluate -> register -> announce.

``run_cycle(settings, storage, tracker)`` is a plain function: the CLI and the
scheduler call it the same way, and tests call it against real servers.

A cycle's S3 data objects are keyed by the SHA-256 of its typed input
(:func:`input_sha256`), not by its cycle id: a re-run on the same input overwrites
them. With ``skip_unchanged`` a cycle on the same input and models as the last
accepted one (``processed-data/<dataset>/last_accepted.json``) trains and registers
nothing and says "unchanged input".
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from batch import quality, zoo
from batch.announce import publish_model_updated
from batch.evaluation_artifacts import log_classifier_artifacts, log_loss_curve, log_regressor_artifacts
from batch.features import classification_data, regression_data
from batch.ingest import IngestError, read_source_csv, to_arrow
from batch.promotion import CLASSIFIER_NAME, REGRESSOR_NAME, promote, register_version
from batch.training import (
    VALIDATION_SHARE,
    TrainedModel,
    plan_tasks,
    predict_in_chunks,
    train_classifier,
    train_regressor,
)
from schemas.events import contract_metadata
from schemas.profiles import get_profile
from scratch_models.drift import FeatureReference, profile_from_features
from scratch_models.pipeline import ScoringPipeline

logger = logging.getLogger(__name__)

#: The shipped IBM Telco customer churn file.
DEFAULT_SOURCES = {"telco": Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"}
#: The last accepted (trained) input of a data set, in the ``processed-data`` bucket.
LAST_ACCEPTED_KEY = "{dataset}/last_accepted.json"
UNCHANGED_INPUT = "unchanged input"


class InsufficientRowsError(ValueError):
    """The input has fewer rows of a class than ``CHURN_BATCH_MIN_ROWS_PER_CLASS``; nothing was trained.

    Attributes
    ----------
    counts : dict of str to int
        Rows per class (``churned``, ``retained``).
    minimum : int
    """

    def __init__(self, counts: dict[str, int], minimum: int) -> None:
        self.counts, self.minimum = counts, minimum
        listed = ", ".join(f"{k}={v}" for k, v in counts.items())
        super().__init__(f"too few rows per class to train: {listed}; CHURN_BATCH_MIN_ROWS_PER_CLASS={minimum}")


def class_counts(frame: pd.DataFrame, target: str) -> dict[str, int]:
    """Rows per churn class: ``{"churned": n, "retained": n}``.

    Parameters
    ----------
    frame : DataFrame
        Typed frame from :func:`batch.ingest.read_source_csv`.
    target : str
        The profile's ``classification_target`` (bool column).
    """
    churned = int(frame[target].to_numpy(dtype=bool).sum())
    return {"churned": churned, "retained": len(frame) - churned}


def check_min_rows_per_class(frame: pd.DataFrame, target: str, minimum: int) -> dict[str, int]:
    """Class counts of ``frame``, or :class:`InsufficientRowsError` when one is below ``minimum``.

    Parameters
    ----------
    frame : DataFrame
    target : str
        Label column (bool).
    minimum : int
        Least rows per class; 0 or less disables the check.

    Returns
    -------
    dict of str to int

    Raises
    ------
    InsufficientRowsError
    """
    counts = class_counts(frame, target)
    if minimum > 0 and min(counts.values()) < minimum:
        raise InsufficientRowsError(counts, minimum)
    return counts


def input_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of a typed input frame: column names, dtypes and every value, in row order.

    The same customers give the same digest whether they came in one file or several,
    with or without a byte-order mark or CRLF line ends (the typed frame is hashed, not
    the bytes). pandas' row hash uses a fixed key, so the digest is stable across
    processes and runs.

    Parameters
    ----------
    frame : DataFrame

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _read_json(storage, bucket: str, key: str) -> dict[str, Any] | None:
    from minio.error import S3Error

    try:
        resp = storage.get_object(bucket, key)
    except S3Error as err:
        if err.code in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise
    try:
        return json.loads(resp.read())
    except ValueError:
        return None
    finally:
        resp.close()
        resp.release_conn()


def _put_json(storage, bucket: str, key: str, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, sort_keys=True).encode()
    storage.put_object(bucket, key, io.BytesIO(body), len(body), content_type="application/json")


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


@dataclass
class CycleResult:
    """What one cycle did.

    Attributes
    ----------
    cycle_id : str
    models : list of TrainedModel
    registered : dict
        The classifier version promoted this cycle (``model_version``, ``alias``
        ``champion`` or ``challenger``, ``artifact_uri``, ``sha256``, metrics).
    promoted : dict of str to dict
        The same per registered model name (``churn-classifier``, ``sales-regressor``).
    report : str
        Markdown comparison of every model's hold-out metrics.
    announced : bool
        Whether a model-updated event was published.
    quality : batch.quality.DataQualityReport or None
        The data-quality gate's report.
    timings_s : dict of str to float
        Seconds per stage.
    input_sha256 : str
        :func:`input_sha256` of the typed input; it names the cycle's data objects in S3.
    unchanged_since : str or None
        Set when nothing was trained because the input (and model set) equals the last
        accepted cycle's: that cycle's id.
    raw_uri, processed_uri : str
        The raw typed frame and the processed training set in S3 (empty when unchanged).
    """

    cycle_id: str
    dataset: str
    rows: int
    models: list[TrainedModel] = field(default_factory=list)
    registered: dict[str, Any] = field(default_factory=dict)
    promoted: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: str = ""
    announced: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    quality: quality.DataQualityReport | None = None
    input_sha256: str = ""
    unchanged_since: str | None = None
    raw_uri: str = ""
    processed_uri: str = ""

    @property
    def status(self) -> str:
        """``"trained"``, or ``"unchanged input"`` when the cycle skipped an input it had already trained on."""
        return UNCHANGED_INPUT if self.unchanged_since else "trained"

    def summary(self) -> dict[str, Any]:
        """JSON-able summary for the CLI."""
        return {
            "cycle_id": self.cycle_id,
            "status": self.status,
            "unchanged_since": self.unchanged_since,
            "input_sha256": self.input_sha256,
            "dataset": self.dataset,
            "rows": self.rows,
            "models": {m.name: {k: round(v, 6) for k, v in m.metrics.items()} for m in self.models},
            "registered": self.registered,
            "promoted": {
                k: {kk: vv for kk, vv in v.items() if kk != "feature_names"} for k, v in self.promoted.items()
            },
            "announced": self.announced,
            "dq_status": self.quality.status if self.quality else None,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
        }


def _put_parquet(storage, bucket: str, key: str, table: pa.Table) -> str:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    size = buf.tell()
    buf.seek(0)
    storage.put_object(bucket, key, buf, size, content_type="application/vnd.apache.parquet")
    return f"s3://{bucket}/{key}"


def run_cycle(
    settings,
    storage,
    tracker,
    *,
    dataset: str = "telco",
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
    dataset : str, default "telco"
    source : path, optional
        CSV to ingest; default: the shipped file for ``dataset``.
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
    batch.quality.DataQualityError
        If the data-quality gate fails, including a source that does not match the
        profile (its report is in S3 and MLflow; nothing is trained or promoted).
    InsufficientRowsError
        If a class has fewer than ``settings.batch_min_rows_per_class`` rows (nothing is
        written).
    CycleError
        If S3 or MLflow cannot be reached during a stage (no alias moves).
    """
    progress = {"stage": "start"}
    try:
        return _run_cycle(
            settings,
            storage,
            tracker,
            dataset=dataset,
            source=source,
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


def _start_parent_run(tracker, dataset: str, cycle_id: str) -> tuple[str, str]:
    experiment = f"churn-{dataset}"
    exp = tracker.get_experiment_by_name(experiment)
    experiment_id = exp.experiment_id if exp else tracker.create_experiment(experiment)
    parent = tracker.create_run(
        experiment_id, run_name=f"cycle-{cycle_id}", tags={"cycle_id": cycle_id, "dataset": dataset}
    )
    return experiment_id, parent.info.run_id


def _run_cycle(
    settings,
    storage,
    tracker,
    *,
    dataset,
    source,
    only,
    announce,
    margin,
    quality_config,
    frame,
    source_time,
    skip_unchanged,
    progress,
) -> CycleResult:
    from plumbing.clients import ensure_buckets

    profile = get_profile(dataset)
    src = Path(source) if source is not None else DEFAULT_SOURCES[dataset]
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
            _, parent_id = _start_parent_run(tracker, dataset, cycle_id)
            try:
                quality.gate(storage, tracker, parent_id, None, schema_error=exc, **gate)
            finally:
                tracker.set_terminated(parent_id, "FAILED")
            raise AssertionError("unreachable: the gate raises on a schema error") from exc
    counts = check_min_rows_per_class(frame, profile.classification_target, settings.batch_min_rows_per_class)
    digest = input_sha256(frame)
    model_set = sorted(zoo.classifiers(only)) + sorted(zoo.regressors(only))
    if skip_unchanged:
        last = _read_json(storage, "processed-data", LAST_ACCEPTED_KEY.format(dataset=dataset))
        if last and last.get("input_sha256") == digest and last.get("models") == model_set:
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
            )
    logger.info("input rows=%d per_class=%s sha256=%s", len(frame), counts, digest[:16])
    ensure_buckets(storage)
    # Keyed by content, not by cycle: a re-run on the same input overwrites its objects.
    data_key = f"{dataset}/{digest[:16]}"
    raw_uri = _put_parquet(storage, "raw-data", f"{data_key}/customers.parquet", to_arrow(frame, profile))
    if dataset == "retail":
        from batch.retail import engineer_features

        frame = engineer_features(frame)
    timings["ingest"] = time.perf_counter() - t0
    logger.info("ingested rows=%d to %s", len(frame), raw_uri)

    t0 = time.perf_counter()
    progress["stage"] = "features"
    data = classification_data(frame, profile)
    processed = pa.table(
        {name: data.X_train[:, j] for j, name in enumerate(data.feature_names)}
        | {profile.classification_target: data.y_train}
    )
    processed_uri = _put_parquet(storage, "processed-data", f"{data_key}/classification_train.parquet", processed)
    del processed
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reg_data = regression_data(frame, profile)
    timings["features"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    # The stream's drift reference: computed once per task from the whole training part.
    references = {
        "classification": reference_profile(data.preprocessor, data.X_train),
        "regression": reference_profile(reg_data.preprocessor, reg_data.X_train),
    }
    caps = zoo.sample_caps(settings)
    cls_plan, reg_plan = plan_tasks(data, reg_data, oof_max_rows=settings.batch_oof_max_rows, sample_caps=caps)
    timings["features"] += time.perf_counter() - t0

    experiment_id, parent_id = _start_parent_run(tracker, dataset, cycle_id)
    result = CycleResult(
        cycle_id, dataset, len(frame), input_sha256=digest, raw_uri=raw_uri, processed_uri=processed_uri
    )
    status = "FAILED"
    # Telco models serve the stream; other data sets register under their own names so
    # their champions never compete with (or hot-reload over) the Telco ones.
    prefix = "" if dataset == "telco" else f"{dataset}-"
    tasks = [
        (
            "classification",
            prefix + CLASSIFIER_NAME,
            "roc_auc",
            data,
            zoo.classifiers(only),
            lambda name, factory, d: train_classifier(name, factory, d, plan=cls_plan),
        ),
        (
            "regression",
            prefix + REGRESSOR_NAME,
            "r2",
            reg_data,
            zoo.regressors(only),
            lambda name, factory, d: train_regressor(name, factory, d, plan=reg_plan),
        ),
    ]
    try:
        tracker.log_param(parent_id, "source", str(src.name))
        tracker.log_param(parent_id, "raw_uri", raw_uri)
        tracker.log_param(parent_id, "processed_uri", processed_uri)
        tracker.set_tag(parent_id, "input_sha256", digest)
        # How this cycle scaled its training, so the run says what it did.
        for key, value in {
            "rows": len(frame),
            "train_rows": int(data.y_train.shape[0]),
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
        # The hold-out rows as read: the current champions are re-scored on them before promotion.
        holdout_frame = frame.iloc[data.test_idx]
        holdouts = {
            prefix + CLASSIFIER_NAME: (holdout_frame, data.y_test),
            prefix + REGRESSOR_NAME: (holdout_frame, reg_data.y_test),
        }
        frame = None  # the featurised matrices are all training needs from here on
        for key in ("fit", "tune_threshold", "evaluate", "log_models"):
            timings[key] = 0.0
        with tempfile.TemporaryDirectory() as tmp, blas_threads(settings.batch_blas_threads):
            candidates: list[tuple[str, str, list[dict[str, Any]]]] = []
            for task, registered_name, metric, task_data, factories, train in tasks:
                t0 = time.perf_counter()
                progress["stage"] = f"train_{task}"
                versions = []
                bar = tqdm(
                    factories.items(),
                    desc=f"{dataset} {task}",
                    unit="model",
                    file=sys.stderr,
                    disable=not sys.stderr.isatty(),
                    leave=False,
                )
                for name, factory in bar:
                    bar.set_postfix_str(name)
                    trained = train(name, factory, task_data)
                    result.models.append(trained)
                    timings["fit"] += trained.metrics["fit_s"]
                    timings["tune_threshold"] += trained.metrics.get("tune_s", 0.0)
                    timings["evaluate"] += trained.metrics["eval_s"]
                    t1 = time.perf_counter()
                    run_id, path = _log_model_run(
                        tracker,
                        experiment_id,
                        parent_id,
                        cycle_id,
                        dataset,
                        task,
                        trained,
                        task_data,
                        Path(tmp),
                        references[task],
                    )
                    versions.append(
                        register_version(
                            tracker,
                            registered_name,
                            run_id,
                            path,
                            trained.metrics,
                            feature_names=list(task_data.preprocessor.feature_names_in_),
                            model=name,
                            metric=metric,
                        )
                    )
                    trained.holdout_pred = None  # logged; keep the result small
                    timings["log_models"] += time.perf_counter() - t1
                timings[f"train_{task}"] = time.perf_counter() - t0
                if versions:
                    candidates.append((registered_name, metric, versions))
            # Aliases move only once every model of every task is trained, logged and
            # verified: a failure anywhere above leaves every champion as it was.
            t0 = time.perf_counter()
            progress["stage"] = "promote"
            for registered_name, metric, versions in candidates:
                best = max(versions, key=lambda v: v["metrics"][metric])
                result.promoted[registered_name] = promote(
                    tracker,
                    best,
                    metric,
                    margin,
                    holdout=holdouts[registered_name],
                    max_champion_drop=settings.promotion_max_champion_drop,
                    min_recall_ratio=settings.promotion_min_recall_ratio,
                )
            timings["promote"] = time.perf_counter() - t0
            if not result.promoted:
                raise ValueError(f"no model trained (only={only})")
            result.registered = result.promoted.get(prefix + CLASSIFIER_NAME, {})
            result.report = comparison_report(result.models)
            tracker.log_dict(parent_id, result.summary(), "cycle_summary.json")
            tracker.log_text(parent_id, result.report, "comparison_report.md")
        for promoted in result.promoted.values():
            if announce and promoted["alias"] == "champion":
                t0 = time.perf_counter()
                progress["stage"] = "announce"
                publish_model_updated(settings, promoted)
                result.announced = True
                timings["announce"] = timings.get("announce", 0.0) + time.perf_counter() - t0
        # Accepted: the next cycle with skip_unchanged compares its input with this one.
        _put_json(
            storage,
            "processed-data",
            LAST_ACCEPTED_KEY.format(dataset=dataset),
            {"input_sha256": digest, "models": model_set, "cycle_id": cycle_id, "at": datetime.now(UTC).isoformat()},
        )
        status = "FINISHED"
    finally:
        # With MLflow gone, marking the run would only wait out the client's retries.
        if status == "FINISHED" or not any(s == "MLflow" for s, _ in unreachable_services(settings)):
            tracker.set_terminated(parent_id, status)
    result.timings_s = timings
    logger.info(
        "cycle done cycle_id=%s champions=%s challengers=%s",
        cycle_id,
        {k: (v["model"], v["model_version"]) for k, v in result.promoted.items() if v["alias"] == "champion"},
        {k: (v["model"], v["model_version"]) for k, v in result.promoted.items() if v["alias"] != "champion"},
    )
    return result


def blas_threads(n: int):
    """Context manager capping the BLAS libraries' threads at ``n`` (0: leave them alone).

    The zoo's numpy models make many small matrix products; with one OpenBLAS thread per
    core each product's hand-off between threads costs more than the product when the cores
    are shared. ``churn bench batch --dataset telco`` at load average 2.3-2.8 on 2 cores:
    full cycle 109.9 s with the default threads (k-means fit + threshold folds 58 s), 49.3 s
    with one (k-means 6.9 s), same hold-out metrics. See ``Settings.batch_blas_threads``.

    Parameters
    ----------
    n : int
        Threads; 0 means no limit.

    Raises
    ------
    ValueError
        If ``n`` is negative.
    """
    import contextlib

    from threadpoolctl import threadpool_limits

    if n < 0:
        raise ValueError(f"batch_blas_threads: expected >= 0, got {n!r}")
    return threadpool_limits(limits=n, user_api="blas") if n else contextlib.nullcontext()


def _log_model_run(
    tracker,
    experiment_id: str,
    parent_id: str,
    cycle_id: str,
    dataset: str,
    task: str,
    trained: TrainedModel,
    data,
    tmp: Path,
    reference: dict[str, Any],
) -> tuple[str, Path]:
    """One nested MLflow run per model: params, hold-out metrics and the pipeline artifact."""
    run = tracker.create_run(
        experiment_id,
        run_name=trained.name,
        tags={"mlflow.parentRunId": parent_id, "model": trained.name, "task": task, "cycle_id": cycle_id},
    )
    run_id = run.info.run_id
    for k, v in trained.params.items():
        tracker.log_param(run_id, k, v)
    for k, v in trained.metrics.items():
        tracker.log_metric(run_id, k, v)
    pipeline = ScoringPipeline(
        data.preprocessor,
        trained.model,
        trained.threshold,
        metadata={
            "dataset": dataset,
            "model": trained.name,
            "task": task,
            "cycle_id": cycle_id,
            "metrics": trained.metrics,
            "reference_profile": reference,
            # The contract the model serves (profile name and digest): workers and the API
            # refuse a champion whose contract is not the one they serve.
            **contract_metadata(get_profile(dataset)),
        },
    )
    path = pipeline.save(tmp / task / trained.name / "pipeline.npz")
    tracker.log_artifact(run_id, str(path), artifact_path="model")
    # The hold-out predictions of training's evaluation: the hold-out is not scored twice.
    pred = trained.holdout_pred
    model: Any = trained.model  # a classifier or regressor of the zoo; the base type has neither method
    if task == "classification":
        if pred is None:
            pred = predict_in_chunks(lambda X: model.predict_proba(X)[:, 1], data.X_test)
        log_classifier_artifacts(tracker, run_id, trained.name, data.y_test, pred, trained.threshold)
    else:
        if pred is None:
            pred = predict_in_chunks(model.predict, data.X_test)
        log_regressor_artifacts(tracker, run_id, data.y_test, pred)
    log_loss_curve(tracker, run_id, trained.model)
    tracker.set_terminated(run_id, "FINISHED")
    return run_id, path


def reference_profile(preprocessor, X_train) -> dict[str, Any]:
    """Training distribution of each raw input feature, for the stream's PSI drift monitor.

    Bins and shares are :class:`scratch_models.drift.FeatureReference`'s. Numeric columns: the
    distinct decile cut points (``edges``, at most 9) and the share of training rows in each of
    the ``len(edges) + 1`` bins. Categorical columns: each training category's share. Recovered
    from the featurised training matrix (numerics un-scaled and rounded to 1e-6, one-hot column
    means), so no raw frame is needed.

    Parameters
    ----------
    preprocessor : scratch_models.preprocessing.TabularPreprocessor
        Fitted.
    X_train : ndarray of shape (n_samples, n_features_out), float64
        ``preprocessor``'s output on the training rows.

    Returns
    -------
    dict
        JSON-able ``{"n_rows", "numeric": {name: {"edges", "proportions"}},
        "categorical": {name: {"categories", "proportions"}}}``.
    """
    import numpy as np

    X = np.asarray(X_train, dtype=np.float64)
    features = []
    for j, name in enumerate(preprocessor.numeric_features):
        x = np.round(X[:, j] * preprocessor.scale_[j] + preprocessor.mean_[j], 6)
        features.append(FeatureReference.numeric_from_values(name, x))
    col = len(preprocessor.numeric_features)
    for name, cats in zip(preprocessor.categorical_features, preprocessor.categories_):
        features.append(FeatureReference.categorical(name, cats, X[:, col : col + len(cats)].mean(axis=0)))
        col += len(cats)
    return profile_from_features(features, X.shape[0])


def comparison_report(models: list[TrainedModel]) -> str:
    """Markdown table of every model's hold-out metrics, best per task first."""
    cls = sorted((m for m in models if "roc_auc" in m.metrics), key=lambda m: -m.metrics["roc_auc"])
    reg = sorted((m for m in models if "r2" in m.metrics), key=lambda m: -m.metrics["r2"])
    lines = [
        "## Classifiers (hold-out)",
        "",
        "| model | ROC-AUC | F1 @0.5 | F1 tuned | threshold | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for m in cls:
        x = m.metrics
        lines.append(
            f"| {m.name} | {x['roc_auc']:.4f} | {x['f1']:.4f} | {x['f1_tuned']:.4f} | "
            f"{x['threshold']:.3f} | {x['fit_s']:.2f} |"
        )
    lines += [
        "",
        "## Regressors of TotalCharges (hold-out)",
        "",
        "| model | R^2 | RMSE | MAE | MAPE % | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for m in reg:
        x = m.metrics
        lines.append(
            f"| {m.name} | {x['r2']:.5f} | {x['rmse']:.2f} | {x['mae']:.2f} | {x['mape']:.2f} | {x['fit_s']:.2f} |"
        )
    if cls:
        lines += ["", f"Best classifier: **{cls[0].name}**."]
    if reg:
        lines += [f"Best regressor: **{reg[0].name}**."]
    return "\n".join(lines) + "\n"
