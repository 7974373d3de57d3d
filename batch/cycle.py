"""One batch cycle: ingest -> features -> train -> evaluate -> register -> announce.

``run_cycle(settings, storage, tracker)`` is a plain function: the CLI and the
scheduler call it the same way, and tests call it against real servers.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch import zoo
from batch.announce import publish_model_updated
from batch.features import classification_data
from batch.ingest import read_source_csv, to_arrow
from batch.promotion import CLASSIFIER_NAME, register_and_promote
from batch.training import TrainedModel, train_classifier
from schemas.profiles import get_profile
from scratch_models.pipeline import ScoringPipeline

logger = logging.getLogger(__name__)

#: The shipped IBM Telco customer churn file.
DEFAULT_SOURCES = {"telco": Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"}


@dataclass
class CycleResult:
    """What one cycle did.

    Attributes
    ----------
    cycle_id : str
    models : list of TrainedModel
    champion : dict
        ``name``, ``version``, ``alias`` (``champion`` or ``challenger``), metrics.
    announced : bool
        Whether a model-updated event was published.
    timings_s : dict of str to float
        Seconds per stage.
    """

    cycle_id: str
    dataset: str
    rows: int
    models: list[TrainedModel] = field(default_factory=list)
    registered: dict[str, Any] = field(default_factory=dict)
    announced: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary for the CLI."""
        return {
            "cycle_id": self.cycle_id,
            "dataset": self.dataset,
            "rows": self.rows,
            "models": {m.name: {k: round(v, 6) for k, v in m.metrics.items()} for m in self.models},
            "registered": self.registered,
            "announced": self.announced,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
        }


def _put_parquet(storage, bucket: str, key: str, table: pa.Table) -> str:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    size = buf.tell()
    buf.seek(0)
    storage.put_object(bucket, key, buf, size, content_type="application/vnd.apache.parquet")
    return f"s3://{bucket}/{key}"


def run_cycle(settings, storage, tracker, *, dataset: str = "telco", source: str | Path | None = None,
              only: set[str] | None = None, announce: bool = True, margin: float = 0.0) -> CycleResult:
    """Run one batch cycle.

    Parameters
    ----------
    settings : churn_stream.settings.Settings
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

    Returns
    -------
    CycleResult

    Raises
    ------
    batch.ingest.IngestError
        If the source does not match the profile (nothing is trained or promoted).
    """
    from churn_stream.clients import ensure_buckets

    profile = get_profile(dataset)
    src = Path(source) if source is not None else DEFAULT_SOURCES[dataset]
    cycle_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    frame = read_source_csv(src, profile)
    ensure_buckets(storage)
    raw_uri = _put_parquet(storage, "raw-data", f"{dataset}/{cycle_id}/customers.parquet", to_arrow(frame, profile))
    timings["ingest"] = time.perf_counter() - t0
    logger.info("ingested rows=%d to %s", len(frame), raw_uri)

    t0 = time.perf_counter()
    data = classification_data(frame, profile)
    processed = pa.table({name: data.X_train[:, j] for j, name in enumerate(data.feature_names)}
                         | {profile.classification_target: data.y_train})
    processed_uri = _put_parquet(storage, "processed-data", f"{dataset}/{cycle_id}/classification_train.parquet",
                                 processed)
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    experiment = f"churn-{dataset}"
    exp = tracker.get_experiment_by_name(experiment)
    experiment_id = exp.experiment_id if exp else tracker.create_experiment(experiment)
    parent = tracker.create_run(experiment_id, run_name=f"cycle-{cycle_id}",
                                tags={"cycle_id": cycle_id, "dataset": dataset})
    parent_id = parent.info.run_id
    result = CycleResult(cycle_id, dataset, len(frame))
    status = "FAILED"
    try:
        tracker.log_param(parent_id, "source", str(src.name))
        tracker.log_param(parent_id, "raw_uri", raw_uri)
        tracker.log_param(parent_id, "processed_uri", processed_uri)
        best: tuple[TrainedModel, str] | None = None
        with tempfile.TemporaryDirectory() as tmp:
            for name, factory in zoo.classifiers(only).items():
                trained = train_classifier(name, factory, data)
                result.models.append(trained)
                run = tracker.create_run(experiment_id, run_name=name,
                                         tags={"mlflow.parentRunId": parent_id, "model": name,
                                               "task": "classification", "cycle_id": cycle_id})
                run_id = run.info.run_id
                for k, v in trained.params.items():
                    tracker.log_param(run_id, k, v)
                for k, v in trained.metrics.items():
                    tracker.log_metric(run_id, k, v)
                pipeline = ScoringPipeline(
                    data.preprocessor, trained.model, trained.threshold,
                    metadata={"dataset": dataset, "model": name, "cycle_id": cycle_id,
                              "metrics": trained.metrics},
                )
                path = pipeline.save(Path(tmp) / name / "pipeline.npz")
                tracker.log_artifact(run_id, str(path), artifact_path="model")
                tracker.set_terminated(run_id, "FINISHED")
                if best is None or trained.metrics["roc_auc"] > best[0].metrics["roc_auc"]:
                    best = (trained, run_id)
                    best_path = path
            timings["train"] = time.perf_counter() - t0
            if best is None:
                raise ValueError(f"no model trained (only={only})")
            t0 = time.perf_counter()
            trained, run_id = best
            registered = register_and_promote(
                tracker, CLASSIFIER_NAME, run_id, best_path, trained.metrics,
                feature_names=list(data.preprocessor.feature_names_in_),
                margin=margin,
            )
            result.registered = registered
            timings["register"] = time.perf_counter() - t0
            tracker.log_dict(parent_id, result.summary(), "cycle_summary.json")
        if announce and registered["alias"] == "champion":
            t0 = time.perf_counter()
            publish_model_updated(settings, registered)
            result.announced = True
            timings["announce"] = time.perf_counter() - t0
        status = "FINISHED"
    finally:
        tracker.set_terminated(parent_id, status)
    result.timings_s = timings
    logger.info("cycle done cycle_id=%s registered=%s", cycle_id, json.dumps(result.registered))
    return result
